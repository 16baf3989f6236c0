{{/* Names, labels and the per-service facts every template shares. */}}

{{- define "mentorstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mentorstream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mentorstream.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "mentorstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mentorstream
{{- end -}}

{{- define "mentorstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mentorstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mentorstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mentorstream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mentorstream.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The four services: values key, component name, binary, configuration section, and which
secrets each reads (least privilege: a service gets only the credentials it uses).
*/}}
{{- define "mentorstream.services" -}}
ingest:
  key: ingest
  binary: mentorstream-ingest
  section: ingest
  redis: true
  databases: []
  consumes: false
mentorship:
  key: mentorship
  binary: mentorstream-mentorship
  section: mentorship
  redis: false
  databases: [mentorship]
  consumes: true
kpi-aggregator:
  key: kpiAggregator
  binary: mentorstream-kpi-aggregator
  section: kpi
  redis: true
  databases: []
  consumes: true
notifier:
  key: notifier
  binary: mentorstream-notifier
  section: notifier
  redis: false
  databases: [notifier]
  consumes: true
{{- end -}}

{{- define "mentorstream.scheme" -}}
{{- if .Values.tls.enabled }}https{{ else }}http{{ end -}}
{{- end -}}

{{/* A secretKeyRef environment variable: name, secret ({name, key}). */}}
{{- define "mentorstream.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret.name }}
      key: {{ .secret.key }}
{{- end -}}

{{/* Environment every Mentorstream process gets: the credentials it needs, by secret. */}}
{{- define "mentorstream.credentialsEnv" -}}
{{- $root := .root -}}
{{- include "mentorstream.secretEnv" (dict "name" "MENTORSTREAM__POSTGRES__URL" "secret" $root.Values.postgres.controlUrlSecret) }}
{{- if .redis }}
{{ include "mentorstream.secretEnv" (dict "name" "MENTORSTREAM__REDIS__URL" "secret" $root.Values.redis.urlSecret) }}
{{- end }}
{{- if has "mentorship" .databases }}
{{ include "mentorstream.secretEnv" (dict "name" "MENTORSTREAM__MENTORSHIP__DATABASE_URL" "secret" $root.Values.postgres.mentorshipUrlSecret) }}
{{- end }}
{{- if has "notifier" .databases }}
{{ include "mentorstream.secretEnv" (dict "name" "MENTORSTREAM__NOTIFIER__DATABASE_URL" "secret" $root.Values.postgres.notifierUrlSecret) }}
{{- end }}
{{- if or (has "mentorship" .databases) (has "notifier" .databases) }}
{{ include "mentorstream.secretEnv" (dict "name" "MENTORSTREAM__ACTIONS__SIGNING_KEY" "secret" $root.Values.actions.signingKeySecret) }}
{{- end }}
{{- if and $root.Values.secrets.keysSecret.name (has "notifier" .databases) }}
{{ include "mentorstream.secretEnv" (dict "name" "MENTORSTREAM__SECRETS__KEYS" "secret" $root.Values.secrets.keysSecret) }}
{{- end }}
{{- if .kafka }}
{{- if $root.Values.kafka.saslPasswordSecret.name }}
{{ include "mentorstream.secretEnv" (dict "name" "MENTORSTREAM_KAFKA_PROPERTY_SASL_PASSWORD" "secret" $root.Values.kafka.saslPasswordSecret) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The security context of every container: non-root, read-only, nothing extra. */}}
{{- define "mentorstream.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "mentorstream.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Volumes shared by service and job pods: configuration, temp, and the optional certs. */}}
{{- define "mentorstream.volumes" -}}
- name: config
  configMap:
    name: {{ include "mentorstream.fullname" . }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
{{- end }}
{{- if .Values.kafka.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.caSecret }}
{{- end }}
{{- end -}}

{{- define "mentorstream.volumeMounts" -}}
- name: config
  mountPath: /etc/mentorstream
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/mentorstream-tls
  readOnly: true
{{- end }}
{{- if .Values.kafka.caSecret }}
- name: kafka-ca
  mountPath: /etc/kafka-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* Refusals that a JSON schema cannot express (relations between values). */}}
{{- define "mentorstream.validate" -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.secretName: required when tls.enabled is true" -}}
{{- end -}}
{{- if and (eq .Values.topics.provisioner "strimzi") (not .Values.topics.strimziCluster) -}}
{{- fail "topics.strimziCluster: required when topics.provisioner is \"strimzi\"" -}}
{{- end -}}
{{- $partitions := int .Values.kafka.partitions -}}
{{- range $component, $service := include "mentorstream.services" . | fromYaml -}}
{{- $values := index $.Values $service.key -}}
{{- $key := $service.key -}}
{{- if and $values.autoscaling.enabled (gt (int $values.autoscaling.minReplicas) (int $values.autoscaling.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%v) must not exceed maxReplicas (%v)" $key $values.autoscaling.minReplicas $values.autoscaling.maxReplicas) -}}
{{- end -}}
{{- if $service.consumes -}}
{{- if gt (int $values.replicas) $partitions -}}
{{- fail (printf "%s.replicas (%v) exceeds kafka.partitions (%d): the extra consumers would get no partition" $key $values.replicas $partitions) -}}
{{- end -}}
{{- if and $values.autoscaling.enabled (gt (int $values.autoscaling.maxReplicas) $partitions) -}}
{{- fail (printf "%s.autoscaling.maxReplicas (%v) exceeds kafka.partitions (%d): the extra consumers would get no partition" $key $values.autoscaling.maxReplicas $partitions) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.kpiAggregator.keda.enabled -}}
{{- if .Values.kpiAggregator.autoscaling.enabled -}}
{{- fail "kpiAggregator: keda.enabled and autoscaling.enabled both scale the aggregator; enable one" -}}
{{- end -}}
{{- if gt (int .Values.kpiAggregator.keda.maxReplicas) $partitions -}}
{{- fail (printf "kpiAggregator.keda.maxReplicas (%v) exceeds kafka.partitions (%d): the extra consumers would get no partition" .Values.kpiAggregator.keda.maxReplicas $partitions) -}}
{{- end -}}
{{- end -}}
{{- end -}}
