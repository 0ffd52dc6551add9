// Command template-hash computes wasmCloud's WorkloadReplicaTemplate hash for every case in cases/
// and writes expected.json, which Weft's `crds/tests/template_hash.rs` checks its own encoding and
// hash against.
//
// The types below are copied verbatim (types and tags only, no methods) from wasmCloud's
// runtime-operator/api/runtime/v1alpha1/workload_types.go, and Hash from
// workload_replicaset_types.go, at wasmCloud commit 7cd553cc57cfb5a64717d76b11ddeea2cd8c0a8b.
package main

import (
	"bytes"
	stdjson "encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/rand"
)

// ---- Copied from workload_types.go ----

// EphemeralVolume represents a temporary directory that shares a workload's lifetime.
type EphemeralVolume struct{}

// HostPathVolume represents a pre-existing file or directory on the host machine.
type HostPathVolume struct {
	// Path of the file or directory on the host.
	// +kubebuilder:validation:Required
	Path string `json:"path"`
}

// Volume represents a named volume that can be mounted by components.
type Volume struct {
	// Name of the volume. Must be a DNS_LABEL and unique within the Workload.
	// +kubebuilder:validation:Required
	Name string `json:"name"`
	// EphemeralVolume represents a temporary directory that shares a workload's lifetime.
	// +kubebuilder:validation:Optional
	EphemeralVolume *EphemeralVolume `json:"ephemeral,omitempty"`
	// HostPathVolume represents a pre-existing file or directory on the host machine.
	// +kubebuilder:validation:Optional
	HostPathVolume *HostPathVolume `json:"hostPath,omitempty"`
}

// VolumeMount describes a mounting of a Volume within a component.
type VolumeMount struct {
	// Name must match the Name of a Volume defined in the WorkloadSpec.Volumes field.
	// +kubebuilder:validation:Required
	Name string `json:"name"`
	// MountPath is the path within the component where the volume should be mounted.
	// +kubebuilder:validation:Required
	MountPath string `json:"mountPath"`
	// ReadOnly indicates whether the volume should be mounted as read-only.
	// +kubebuilder:validation:Optional
	ReadOnly bool `json:"readOnly,omitempty"`
}

type ConfigLayer struct {
	// +kubebuilder:validation:Optional
	// ConfigFrom is a list of references to ConfigMaps that will be provided to the workload.
	// The keys and values of all referenced ConfigMaps will be merged. In case of key conflicts,
	// the last ConfigMap in the list wins.
	// +kubebuilder:validation:Optional
	ConfigFrom []corev1.LocalObjectReference `json:"configFrom,omitempty"`
	// The keys and values of all referenced Secrets will be merged. In case of key conflicts,
	// the last Secret in the list wins.
	// The values of the Secrets will be base64-decoded, utf-8 decoded before being provided to the workload.
	// +kubebuilder:validation:Optional
	SecretFrom []corev1.LocalObjectReference `json:"secretFrom,omitempty"`
	// +kubebuilder:validation:Optional
	Config map[string]string `json:"config,omitempty"`
}

// LocalResources describes resources that will be made available to a workload component.
type LocalResources struct {
	// VolumeMounts is a list of volume mounts that will be mounted into the workload component.
	// The volumes must be defined in the WorkloadSpec.Volumes field.
	// +kubebuilder:validation:Optional
	VolumeMounts []VolumeMount `json:"volumeMounts,omitempty"`
	// +kubebuilder:validation:Optional
	Environment *ConfigLayer `json:"environment,omitempty"`
	// +kubebuilder:validation:Optional
	Config map[string]string `json:"config,omitempty"`
	// AllowedHosts is the outbound egress allowlist for this component.
	//
	// Each entry must match one of:
	//   - "*"                       (allow all)
	//   - "host[:port]"             e.g. "example.com" or "example.com:8443"
	//   - "scheme://host[:port][/]" e.g. "https://api.example.com" or "https://api.example.com/"
	//   - "*.suffix[:port]"         e.g. "*.example.com" or "*.example.com:8443"
	//   - "scheme://*.suffix[:port][/]" e.g. "https://*.example.com"
	//
	// This is a hosts policy, not a URL policy: entries must not include a
	// path (beyond bare `/`), query string, or fragment. The wildcard must
	// be `*.<rest>` (leading dot required); a bare `*foo` is rejected.
	//
	// Empty or absent allowedHosts denies all outgoing requests
	// (fail-closed). To opt into unrestricted egress, set `allowedHosts:
	// ["*"]` explicitly. Final validation runs in the runtime. This regex
	// is an admission-time guard, not the source of truth.
	// +kubebuilder:validation:Optional
	// +kubebuilder:validation:items:Pattern=`^\*$|^([A-Za-z][A-Za-z0-9+.-]*://)(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:[0-9]{1,5})?/?$|^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:[0-9]{1,5})?$`
	AllowedHosts []string `json:"allowedHosts,omitempty"`
	// AllowedIPNameLookups is the set of names this component may resolve
	// through wasi:sockets/ip-name-lookup (resolve-addresses).
	//
	// Each entry must match one of:
	//   - "*"                (resolve any name)
	//   - "*.suffix"         e.g. "*.wasmcloud.io"
	//   - "host"             e.g. "api.wasmcloud.io"
	//   - a literal IP address, e.g. "10.0.0.1" or "::1"
	//
	// A name is not a URL: entries must not carry a scheme, port, path,
	// query string, or fragment. The wildcard must be "*.<rest>" with a
	// leading dot; a bare "*foo" is rejected.
	//
	// Empty or absent allowedIpNameLookups denies every lookup, reported to
	// the component as permanent-resolver-failure. To resolve any name,
	// set allowedIpNameLookups: ["*"] explicitly. Resolution is granted
	// separately from allowedHosts, which governs outbound connections
	// rather than name lookups. Final validation runs in the runtime.
	// This regex is an admission-time guard, not the source of truth.
	// +kubebuilder:validation:Optional
	// +kubebuilder:validation:items:Pattern=`^\*$|^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$|^[0-9A-Fa-f:.]+$`
	AllowedIPNameLookups []string `json:"allowedIpNameLookups,omitempty"`
	// AllowedHostLoopbackPorts lists ports on the machine's own loopback this
	// component may reach through the reserved name
	// `host.wasmcloud.internal`.
	//
	// Each entry is a port with an optional protocol:
	//   - "5432"      TCP port 5432 (the default)
	//   - "5432/tcp"  TCP port 5432
	//   - "53/udp"    UDP port 53
	//
	// Deliberately narrow: no ranges, no wildcards, no names. Reaching the
	// host's own loopback is the most privileged grant here, and the set of
	// local ports a component legitimately needs is small and knowable.
	//
	// An empty or absent list denies every host-loopback connection. A
	// non-empty list is still inert unless the host itself runs with
	// --allow-host-loopback, so neither the workload author nor the operator
	// can open this door alone. Note that "127.0.0.1" keeps meaning the
	// workload's own virtual loopback; only the reserved name reaches the
	// machine. Final validation runs in the runtime. This regex is an
	// admission-time guard, not the source of truth.
	// +kubebuilder:validation:Optional
	// +kubebuilder:validation:items:Pattern=`^[0-9]{1,5}(/(tcp|udp|TCP|UDP))?$`
	AllowedHostLoopbackPorts []string `json:"allowedHostLoopbackPorts,omitempty"`
}

// WorkloadComponent represents a component of a workload.
// Components are stateless, invocation-driven units of computation.
// Components are isolated from each other and can be scaled independently.
// Each Component has a Root WIT World, representing the Components imports/exports. The combined
// list of all Components' Root WIT Worlds within a workload must be compatible with the Host's WIT World.
// All components within a workload are guaranteed to be placed on the same Wasm Host.
type WorkloadComponent struct {
	// +kubebuilder:validation:Required
	Name string `json:"name"`
	// +kubebuilder:validation:Required
	Image string `json:"image"`
	// +kubebuilder:validation:Optional
	ImagePullSecret *corev1.LocalObjectReference `json:"imagePullSecret,omitempty"`
	// +kubebuilder:validation:Optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// PoolSize is how many instances of this component are kept warm between
	// calls. Unset means none are: every call gets a fresh instance, and the
	// component's state stays ephemeral.
	// +kubebuilder:validation:Optional
	// +kubebuilder:validation:Minimum=0
	PoolSize int32 `json:"poolSize,omitempty"`
	// MaxInvocations retires a warm instance once it has served this many
	// calls, and a fresh one takes its place. Unset means an instance serves
	// calls indefinitely. Only meaningful alongside PoolSize.
	// +kubebuilder:validation:Optional
	// +kubebuilder:validation:Minimum=0
	MaxInvocations int32 `json:"maxInvocations,omitempty"`
	// MaxConcurrency is how many calls one warm instance may serve at the same
	// time. Unset means one, which is what a component gets without asking.
	// Raising it lets an instance overlap calls while it awaits I/O, and is
	// only safe for a guest that yields rather than blocks. Only meaningful
	// alongside PoolSize.
	// +kubebuilder:validation:Optional
	// +kubebuilder:validation:Minimum=0
	MaxConcurrency int32 `json:"maxConcurrency,omitempty"`
	// +kubebuilder:validation:Optional
	LocalResources *LocalResources `json:"localResources,omitempty"`
}

// WorkloadService represents a long-running service that is part of the workload.
// It is also sometimes referred to as a "sidecar" and is optional.
// A Service differs from a Component in that it is long-running and represents the Workload's "localhost".
// Services can bind to TCP & UDP ports, which are accessible by Components within the same workload via "localhost" or "127.0.0.1".
// Services export a single WIT interface, shaped as wasi:cli/run.
// Services can import interfaces from any Component within the same workload, or from the Host.
type WorkloadService struct {
	// +kubebuilder:validation:Required
	Image string `json:"image"`
	// +kubebuilder:validation:Optional
	ImagePullSecret *corev1.LocalObjectReference `json:"imagePullSecret,omitempty"`
	// +kubebuilder:validation:Optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// +kubebuilder:validation:Optional
	MaxRestarts int32 `json:"maxRestarts"`
	// +kubebuilder:validation:Optional
	LocalResources *LocalResources `json:"localResources,omitempty"`
}

type HostInterface struct {
	// Provides the config / configmap / secret references for this host interface
	ConfigLayer `json:",inline"`

	// Name uniquely identifies this interface instance when multiple entries
	// share the same namespace+package. It is the `(implements <name>)` id the
	// host uses to route a component's named import to this interface's backend,
	// so two imports of the same namespace:package can resolve to different
	// backends.
	// Required when multiple entries of the same namespace:package exist.
	// +kubebuilder:validation:Optional
	// +kubebuilder:validation:Pattern=`^[a-z0-9][a-z0-9-]*$`
	// +kubebuilder:validation:MaxLength=64
	Name string `json:"name,omitempty"`

	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MaxLength=128
	Namespace string `json:"namespace"`
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MaxLength=128
	Package string `json:"package"`
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MinItems=1
	Interfaces []string `json:"interfaces,omitempty"`
	// +kubebuilder:validation:Optional
	// +kubebuilder:validation:MaxLength=64
	Version string `json:"version,omitempty"`
}

// KubernetesServiceRef references an existing Kubernetes Service that the
// operator will manage an EndpointSlice for, pointing to the host pods that
// are running this workload.
type KubernetesServiceRef struct {
	// Name is the name of the Kubernetes Service in the same namespace.
	// +kubebuilder:validation:Required
	Name string `json:"name"`
}

// KubernetesSpec groups Kubernetes-specific configuration for a workload.
type KubernetesSpec struct {
	// Service references an existing Kubernetes Service that the operator will
	// maintain an EndpointSlice for, pointing to the host pods running this
	// workload. When set, the operator also registers DNS aliases for the
	// service (e.g. service-name, service-name.namespace.svc.cluster.local)
	// with the host so cluster-internal callers can reach the workload via
	// Service DNS without going through an external gateway.
	// +kubebuilder:validation:Optional
	Service *KubernetesServiceRef `json:"service,omitempty"`
}

// WorkloadSpec defines the desired state of Workload.
type WorkloadSpec struct {
	// +kubebuilder:validation:Optional
	HostSelector map[string]string `json:"hostSelector,omitempty"`
	// +kubebuilder:validation:Optional
	HostID string `json:"hostId,omitempty"`

	// Environment, if set, scopes scheduling to Hosts whose Environment
	// matches this value, regardless of the Workload's own namespace.
	// The value is matched against Host.Environment — typically a
	// Kubernetes namespace for in-cluster host pods, or any
	// operator-defined identifier for out-of-cluster hosts (e.g. a
	// region or data center). Only honored when the operator is started
	// with allowSharedHosts=true, or when Environment equals the
	// Workload's namespace.
	// +kubebuilder:validation:Optional
	Environment string `json:"environment,omitempty"`

	// +kubebuilder:validation:Optional
	Components []WorkloadComponent `json:"components,omitempty"`

	// HostInterfaces declares the host-provided interfaces this workload needs.
	// Two routing invariants are enforced at admission, complementing the
	// host-side checks:
	//   1. No two entries may be exact duplicates (same namespace, package,
	//      name, and version).
	//   2. At most one entry of a given namespace:package may be unnamed — the
	//      unnamed entry is the default route and cannot be shared. Declare
	//      distinct `name`s to route multiple imports of the same package to
	//      different backends. Semver-incompatible versions of the same package
	//      may coexist (they are distinct interfaces).
	// +kubebuilder:validation:Optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(x, self.exists_one(y, y.__namespace__ == x.__namespace__ && y.__package__ == x.__package__ && (has(y.name) ? y.name : '') == (has(x.name) ? x.name : '') && (has(y.version) ? y.version : '') == (has(x.version) ? x.version : '')))",message="hostInterfaces must not contain duplicate entries with the same namespace, package, name, and version"
	// +kubebuilder:validation:XValidation:rule="self.all(x, (has(x.name) && x.name != '') || self.filter(y, y.__namespace__ == x.__namespace__ && y.__package__ == x.__package__ && !(has(y.name) && y.name != '')).size() == 1)",message="at most one unnamed hostInterface is allowed per namespace:package; set a unique name to disambiguate multiple imports of the same package"
	HostInterfaces []HostInterface `json:"hostInterfaces,omitempty"`
	// +kubebuilder:validation:Optional
	Service *WorkloadService `json:"service,omitempty"`
	// +kubebuilder:validation:Optional
	Volumes []Volume `json:"volumes,omitempty"`

	// Kubernetes groups Kubernetes-specific configuration such as Service
	// references and endpoint management.
	// +kubebuilder:validation:Optional
	Kubernetes *KubernetesSpec `json:"kubernetes,omitempty"`
}

// ---- Copied from workload_replicaset_types.go ----

type WorkloadReplicaTemplate struct {
	// +kubebuilder:validation:Optional
	Annotations map[string]string `json:"annotations,omitempty"`
	// +kubebuilder:validation:Optional
	Labels map[string]string `json:"labels,omitempty"`
	// +kubebuilder:validation:Required
	Spec WorkloadSpec `json:"spec,omitempty"`
}

func (w *WorkloadReplicaTemplate) Hash() string {
	h := fnv.New32a()
	rawSpec, _ := json.Marshal(w.Spec)
	_, _ = h.Write(rawSpec)
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// ---- Generator ----

type expected struct {
	Case   string `json:"case"`
	GoJSON string `json:"goJson"`
	Hash   string `json:"hash"`
}

func main() {
	files, err := filepath.Glob(filepath.Join("cases", "*.json"))
	if err != nil {
		fail(err)
	}
	sort.Strings(files)
	if len(files) == 0 {
		fail(fmt.Errorf("no cases/*.json"))
	}
	out := make([]expected, 0, len(files))
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			fail(err)
		}
		var spec WorkloadSpec
		decoder := stdjson.NewDecoder(bytes.NewReader(raw))
		decoder.DisallowUnknownFields()
		if err := decoder.Decode(&spec); err != nil {
			fail(fmt.Errorf("%s: %w", file, err))
		}
		rawSpec, err := json.Marshal(spec)
		if err != nil {
			fail(fmt.Errorf("%s: %w", file, err))
		}
		template := WorkloadReplicaTemplate{Spec: spec}
		out = append(out, expected{Case: filepath.Base(file), GoJSON: string(rawSpec), Hash: template.Hash()})
	}
	encoded, err := stdjson.MarshalIndent(out, "", "  ")
	if err != nil {
		fail(err)
	}
	encoded = append(encoded, '\n')
	if err := os.WriteFile("expected.json", encoded, 0o644); err != nil {
		fail(err)
	}
	os.Stdout.Write(encoded)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "template-hash:", err)
	os.Exit(1)
}
