{{/* What the operator needs where Workloads live: cluster-wide (ClusterRole) or per watched namespace (Role). */}}
{{- define "weft.operatorWorkloadRules" -}}
# Workload controller: watch Workloads and keep their finalizer; Host controller: find the Workloads
# placed on a Host that went away; WorkloadReplicaSet controller: create and remove replicas.
- apiGroups: ["runtime.wasmcloud.dev"]
  resources: ["workloads"]
  verbs: ["get", "list", "watch", "patch", "create", "delete"]
# Workload controller: conditions and placement; Host controller: hand Workloads back.
- apiGroups: ["runtime.wasmcloud.dev"]
  resources: ["workloads/status"]
  verbs: ["get", "patch"]
# WorkloadDeployment controller: create, scale and remove replica sets; WorkloadReplicaSet controller:
# watch them and write their status.
- apiGroups: ["runtime.wasmcloud.dev"]
  resources: ["workloadreplicasets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# WorkloadDeployment controller: watch deployments (also read by the Artifact finalizer); the /scale
# subresource is served by the apiserver from spec and status.
- apiGroups: ["runtime.wasmcloud.dev"]
  resources: ["workloaddeployments"]
  verbs: ["get", "list", "watch"]
# Artifact controller: watch Artifacts and keep their finalizer.
- apiGroups: ["runtime.wasmcloud.dev"]
  resources: ["artifacts"]
  verbs: ["get", "list", "watch", "patch"]
# Status of replica sets, deployments and Artifacts.
- apiGroups: ["runtime.wasmcloud.dev"]
  resources: ["workloadreplicasets/status", "workloaddeployments/status", "artifacts/status"]
  verbs: ["get", "patch"]
# Owner references with blockOwnerDeletion (so a foreground deletion waits for the children) need
# update on the owner's finalizers subresource; nothing else of the owner is written.
- apiGroups: ["runtime.wasmcloud.dev"]
  resources: ["workloaddeployments/finalizers", "workloadreplicasets/finalizers"]
  verbs: ["update"]
# Workload controller: the ConfigMaps and Secrets a Workload names (watched metadata-only; read when
# it is placed).
- apiGroups: [""]
  resources: ["configmaps", "secrets"]
  verbs: ["get", "list", "watch"]
# Workload route controller: the Services Workloads name (metadata only), and the EndpointSlices it
# keeps for them (labelled wasmcloud.dev/route-manager=true, owned by the Service).
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Events on those Workloads, in their namespaces.
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* What the operator needs in an extra host namespace: the pod finalizer on host pods, and Events. */}}
{{- define "weft.operatorHostPodRules" -}}
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
