{{/* The prefix of every cluster-unique name: the release name if it says weft, else <release>-weft. */}}
{{- define "weft.fullname" -}}
{{- if contains "weft" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-weft" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object of a component: (dict "root" $ "component" "operator"). */}}
{{- define "weft.labels" -}}
app.kubernetes.io/name: weft-{{ .component }}
app.kubernetes.io/part-of: weft
{{- if not .root.Values.plainManifests }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}
{{- end -}}

{{/* Labels that select a component's pods: (dict "root" $ "component" "operator"). */}}
{{- define "weft.selectorLabels" -}}
app.kubernetes.io/name: weft-{{ .component }}
{{- if not .root.Values.plainManifests }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}
{{- end -}}

{{/* A component's image: (dict "root" $ "image" .Values.operator.image). */}}
{{- define "weft.image" -}}
{{- $g := .root.Values.global -}}
{{- $tag := .image.tag | default $g.imageTag | default .root.Chart.AppVersion -}}
{{- if $g.imageRegistry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $g.imageRegistry) .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The control-plane NATS URL. */}}
{{- define "weft.natsUrl" -}}
{{- .Values.global.nats.schedulerUrl | default (printf "nats://nats.%s.svc.cluster.local:4222" .Release.Namespace) -}}
{{- end -}}

{{/* The namespace of a host group. */}}
{{- define "weft.hostGroupNamespace" -}}
{{- .group.namespace | default .root.Release.Namespace -}}
{{- end -}}

{{/* Extra host namespaces, comma-separated: operator.hostNamespaces and hostGroups[].namespace, without the release namespace. */}}
{{- define "weft.extraHostNamespaces" -}}
{{- $out := list -}}
{{- range .Values.operator.hostNamespaces -}}
{{- $out = append $out . -}}
{{- end -}}
{{- range .Values.runtime.hostGroups -}}
{{- if .namespace -}}
{{- $out = append $out .namespace -}}
{{- end -}}
{{- end -}}
{{- without ($out | uniq) .Release.Namespace | join "," -}}
{{- end -}}

{{/* Pod-level fields shared by the components: image pull secrets, scheduling constraints. (dict "root" $ "c" .Values.operator) */}}
{{- define "weft.podPlacement" -}}
{{- with .root.Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* NATS TLS and credentials flags for the operator and the hosts. */}}
{{- define "weft.natsSecurityArgs" -}}
{{- if .Values.global.tls.enabled }}
- --nats-tls-ca=/etc/weft/nats-tls/ca.crt
- --nats-tls-cert=/etc/weft/nats-tls/tls.crt
- --nats-tls-key=/etc/weft/nats-tls/tls.key
{{- if .Values.global.tls.handshakeFirst }}
- --nats-tls-first
{{- end }}
{{- end }}
{{- if .Values.global.nats.credsSecret }}
- --nats-creds=/etc/weft/nats-creds/nats.creds
{{- end }}
{{- end -}}

{{- define "weft.natsSecurityMounts" -}}
{{- if .Values.global.tls.enabled }}
- name: nats-tls
  mountPath: /etc/weft/nats-tls
  readOnly: true
{{- end }}
{{- if .Values.global.nats.credsSecret }}
- name: nats-creds
  mountPath: /etc/weft/nats-creds
  readOnly: true
{{- end }}
{{- end -}}

{{- define "weft.natsSecurityVolumes" -}}
{{- if .Values.global.tls.enabled }}
- name: nats-tls
  secret:
    secretName: {{ .Values.global.tls.secretName }}
{{- end }}
{{- if .Values.global.nats.credsSecret }}
- name: nats-creds
  secret:
    secretName: {{ .Values.global.nats.credsSecret }}
{{- end }}
{{- end -}}

{{/* The restricted container security context every component runs with. */}}
{{- define "weft.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "weft.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The address listeners bind: 0.0.0.0, or $(POD_IP) with global.listenOnPodIP (the container sets POD_IP). */}}
{{- define "weft.listenHost" -}}
{{- if .Values.global.listenOnPodIP -}}$(POD_IP){{- else -}}0.0.0.0{{- end -}}
{{- end -}}

{{/* The POD_IP variable weft.listenHost needs. */}}
{{- define "weft.podIPEnv" -}}
{{- if .Values.global.listenOnPodIP }}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end }}
{{- end -}}
