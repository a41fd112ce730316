{{/* The release's name for every object, shortened to what Kubernetes accepts. */}}
{{- define "falco-ingest.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "falco-ingest.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component (agent, consumer, setup, ...). */}}
{{- define "falco-ingest.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* repository@digest when a digest is given (what production should pin), else the tag. */}}
{{- define "falco-ingest.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the certificates: the existing one, or the chart's if given PEMs. */}}
{{- define "falco-ingest.tlsSecret" -}}
{{- if .Values.tls.existingSecret -}}
{{- .Values.tls.existingSecret -}}
{{- else if .Values.tls.caPem -}}
{{- printf "%s-tls" (include "falco-ingest.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "falco-ingest.credentialsSecret" -}}
{{- .Values.credentials.existingSecret | default (printf "%s-credentials" (include "falco-ingest.fullname" .)) -}}
{{- end -}}

{{/* A setting's value as the environment holds it: YAML numbers reach templates as
floats, and 1073741824 must not become 1.073741824e+09. */}}
{{- define "falco-ingest.settingValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}{{ . | int64 }}{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{/* The settings of values.settings as INGEST_* variables (null: the product's default),
and the password files of a Secret the chart makes. Inline in each pod, so a changed
setting rolls the pods that read it. */}}
{{- define "falco-ingest.env" -}}
{{- range $name, $value := .Values.settings }}
{{- if not (kindIs "invalid" $value) }}
- name: INGEST_{{ $name }}
  value: {{ include "falco-ingest.settingValue" $value | quote }}
{{- end }}
{{- end }}
{{- if and (not .Values.credentials.existingSecret) .Values.credentials.opensearchPassword }}
- name: INGEST_OPENSEARCH__PASSWORD_FILE
  value: /etc/falco-ingest/secrets/opensearch-password
{{- end }}
{{- if and (not .Values.credentials.existingSecret) .Values.credentials.kafkaPassword }}
- name: INGEST_KAFKA__SASL_PASSWORD_FILE
  value: /etc/falco-ingest/secrets/kafka-password
{{- end }}
{{- end -}}

{{/* What every falco-ingest container shares: image, security context, secrets. */}}
{{- define "falco-ingest.container" -}}
image: {{ include "falco-ingest.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  readOnlyRootFilesystem: true
  allowPrivilegeEscalation: false
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "falco-ingest.mounts" -}}
- name: credentials
  mountPath: /etc/falco-ingest/secrets
  readOnly: true
{{- if include "falco-ingest.tlsSecret" . }}
- name: tls
  mountPath: /etc/falco-ingest/tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "falco-ingest.volumes" -}}
- name: credentials
  secret:
    secretName: {{ include "falco-ingest.credentialsSecret" . }}
{{- with include "falco-ingest.tlsSecret" . }}
- name: tls
  secret:
    secretName: {{ . }}
{{- end }}
{{- end -}}

{{- define "falco-ingest.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
