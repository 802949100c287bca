{{/* Labels every object of the chart carries. */}}
{{- define "sluice.labels" -}}
app.kubernetes.io/part-of: sluice
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of one component: sluice.selector (dict "root" . "component" "controller"). */}}
{{- define "sluice.selector" -}}
app.kubernetes.io/name: sluice-{{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* image reference: registry/repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "sluice.image" -}}
{{- $img := index .root.Values.image .component -}}
{{- $registry := .root.Values.image.registry -}}
{{- printf "%s%s:%s" (ternary "" (printf "%s/" $registry) (empty $registry)) $img.repository (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}

{{/* The controller's gRPC address the node agents dial. */}}
{{- define "sluice.controllerAddress" -}}
sluice-controller.{{ .Release.Namespace }}.svc:{{ .Values.controller.ports.grpc }}
{{- end -}}
