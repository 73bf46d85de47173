{{/* Names and labels. */}}
{{- define "llm-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "llm-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "llm-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "llm-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "llm-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llm-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Label matchers of this release's series in the alert expressions: metrics.prometheusRule.selector if set,
else the namespace and job a ServiceMonitor gives them, else none (a plain scrape config).
*/}}
{{- define "llm-gateway.promSelector" -}}
{{- $rule := .Values.metrics.prometheusRule }}
{{- if $rule.selector }}
{{- $rule.selector }}
{{- else if .Values.metrics.serviceMonitor.enabled }}
{{- printf "namespace=%q, job=%q" .Release.Namespace (include "llm-gateway.fullname" .) }}
{{- end }}
{{- end }}

{{/* A series selector: (list metric selector extra-matchers...) -> metric{matchers} (no braces when empty). */}}
{{- define "llm-gateway.series" -}}
{{- $matchers := compact (rest . ) }}
{{- if $matchers }}
{{- printf "%s{%s}" (first .) (join ", " $matchers) }}
{{- else }}
{{- first . }}
{{- end }}
{{- end }}

{{/* "true" when the autoscaler runs as the sidecar (autoscaler.enabled, mode sidecar); empty otherwise. */}}
{{- define "llm-gateway.sidecar" -}}
{{- if and .Values.autoscaler.enabled (eq .Values.autoscaler.mode "sidecar") }}true{{ end }}
{{- end }}

{{/* "true" when KEDA scales the targets (autoscaler.enabled, mode keda); empty otherwise. */}}
{{- define "llm-gateway.keda" -}}
{{- if and .Values.autoscaler.enabled (eq .Values.autoscaler.mode "keda") }}true{{ end }}
{{- end }}

{{/*
The policy file: values.policy with its autoscaler section built from values.autoscaler (and store.tls.ca_file
from redis.tls.caSecret). Each target's `deployment`/`namespace`/`dryRun` become the actuator the policy
schema expects.
*/}}
{{- define "llm-gateway.policy" -}}
{{- if hasKey .Values.policy "autoscaler" }}
{{- fail "policy.autoscaler is written by the chart: configure autoscaler.settings and autoscaler.targets" }}
{{- end }}
{{- $policy := deepCopy .Values.policy }}
{{- with include "llm-gateway.redisCaFile" . }}
{{- $store := get $policy "store" | default dict }}
{{- $tls := get $store "tls" | default dict }}
{{- if get $tls "ca_file" }}
{{- fail "policy.store.tls.ca_file is written by the chart from redis.tls.caSecret: set one of them" }}
{{- end }}
{{- $_ := set $tls "ca_file" . }}
{{- $_ = set $store "tls" $tls }}
{{- $_ = set $policy "store" $store }}
{{- end }}
{{- if include "llm-gateway.sidecar" . }}
{{- $targets := list }}
{{- range .Values.autoscaler.targets }}
{{- $target := omit . "deployment" "namespace" "dryRun" }}
{{- if .dryRun }}
{{- $_ := set $target "actuator" (dict "type" "dry-run") }}
{{- else }}
{{- $actuator := dict "type" "kubernetes" "resource" "deployment" "name" .deployment "namespace" (default $.Release.Namespace .namespace) }}
{{- $_ := set $target "actuator" $actuator }}
{{- end }}
{{- $targets = append $targets $target }}
{{- end }}
{{- $section := merge (dict "enabled" true "listen_host" "0.0.0.0" "listen_port" .Values.autoscaler.port) (deepCopy .Values.autoscaler.settings) }}
{{- if $targets }}
{{- $_ := set $section "targets" $targets }}
{{- end }}{{/* none: the policy's default, a dry-run target on tasks:stream */}}
{{- $_ := set $policy "autoscaler" $section }}
{{- else }}
{{- $_ := set $policy "autoscaler" (dict "enabled" false) }}
{{- end }}
{{- toYaml $policy }}
{{- end }}

{{/* Worker Deployments the autoscaler may scale, grouped by namespace: {namespace: [names]}. */}}
{{- define "llm-gateway.scaleTargets" -}}
{{- $byNamespace := dict }}
{{- if include "llm-gateway.sidecar" . }}
{{- range .Values.autoscaler.targets }}
{{- if not .dryRun }}
{{- $ns := default $.Release.Namespace .namespace }}
{{- $names := get $byNamespace $ns | default list }}
{{- if not (has .deployment $names) }}
{{- $_ := set $byNamespace $ns (append $names .deployment) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $byNamespace }}
{{- end }}

{{/*
The REDIS_URL, REDIS_USERNAME and REDIS_PASSWORD environment entries. REDIS_URL carries no credentials (the
policy's store.username / store.password read the other two, so a password needs no URL-escaping): the
chart's own Redis when redisServer.enabled, else redis.urlSecret, redis.url, or one built from redis.mode.
*/}}
{{- define "llm-gateway.redisEnv" -}}
{{- $r := .Values.redis }}
{{- if .Values.redisServer.enabled }}
{{- if or $r.url $r.urlSecret.name }}
{{- fail "redisServer.enabled: the gateway uses the chart's own Redis; leave redis.url and redis.urlSecret.name empty" }}
{{- end }}
{{- include "llm-gateway.redisPasswordEnv" . }}
- name: REDIS_URL
  value: {{ printf "redis://%s:6379/0" (include "llm-gateway.redisServerName" .) | quote }}
{{- else }}
{{- with $r.username }}
- name: REDIS_USERNAME
  value: {{ . | quote }}
{{- end }}
{{- include "llm-gateway.redisPasswordEnv" . }}
{{- if $r.urlSecret.name }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ $r.urlSecret.name | quote }}, key: {{ $r.urlSecret.key | quote }}}
{{- else if $r.url }}
- name: REDIS_URL
  value: {{ $r.url | quote }}
{{- else }}
- name: REDIS_URL
  value: {{ include "llm-gateway.redisUrl" . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The store URL redis.mode describes (no credentials): one server, a Sentinel group or a Cluster. */}}
{{- define "llm-gateway.redisUrl" -}}
{{- $r := .Values.redis }}
{{- $scheme := ternary "rediss" "redis" $r.tls.enabled }}
{{- if eq $r.mode "sentinel" }}
{{- if not $r.sentinel.masterName }}
{{- fail "redis.mode sentinel: set redis.sentinel.masterName (the master's name the sentinels know)" }}
{{- end }}
{{- printf "%s+sentinel://%s/%s/%d" $scheme (include "llm-gateway.redisAddresses" .) $r.sentinel.masterName (int $r.db) }}
{{- else if eq $r.mode "cluster" }}
{{- if ne (int $r.db) 0 }}
{{- fail "redis.mode cluster: Redis Cluster has only database 0 (leave redis.db 0)" }}
{{- end }}
{{- printf "%s+cluster://%s" $scheme (include "llm-gateway.redisAddresses" .) }}
{{- else }}
{{- printf "%s://%s/%d" $scheme (include "llm-gateway.redisAddresses" .) (int $r.db) }}
{{- end }}
{{- end }}

{{/*
The addresses of redis.mode, comma-separated host:port: redis.host:port, redis.sentinel.hosts or
redis.cluster.nodes (what the gateway's URL and KEDA's trigger both need).
*/}}
{{- define "llm-gateway.redisAddresses" -}}
{{- $r := .Values.redis }}
{{- if eq $r.mode "sentinel" }}
{{- if not $r.sentinel.hosts }}
{{- fail "redis.mode sentinel: list the sentinels in redis.sentinel.hosts (host:26379, ...)" }}
{{- end }}
{{- join "," $r.sentinel.hosts }}
{{- else if eq $r.mode "cluster" }}
{{- if not $r.cluster.nodes }}
{{- fail "redis.mode cluster: list some cluster nodes in redis.cluster.nodes (host:6379, ...)" }}
{{- end }}
{{- join "," $r.cluster.nodes }}
{{- else }}
{{- if not $r.host }}
{{- fail "redis: set redis.urlSecret.name, redis.url or redis.host (Redis is required: replicas and the autoscaler share it)" }}
{{- end }}
{{- printf "%s:%d" $r.host (int $r.port) }}
{{- end }}
{{- end }}

{{/* Where the Redis CA bundle (redis.tls.caSecret) is mounted in the gateway and sidecar; empty: none. */}}
{{- define "llm-gateway.redisCaFile" -}}
{{- if and .Values.redis.tls.caSecret.name (not .Values.redisServer.enabled) }}/etc/llm-gateway-redis-tls/ca.crt{{ end }}
{{- end }}

{{/* Probe timing keys of a values block. */}}
{{- define "llm-gateway.probeTiming" -}}
{{- range $key := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" "successThreshold" }}
{{- if hasKey $ $key }}
{{ $key }}: {{ get $ $key }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of the chart's own single-node Redis (StatefulSet and Service), when redisServer.enabled. */}}
{{- define "llm-gateway.redisServerName" -}}
{{- printf "%s-redis" (include "llm-gateway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The REDIS_PASSWORD entry, from redis.password's Secret (the chart's own Redis requires it too). */}}
{{- define "llm-gateway.redisPasswordEnv" -}}
{{- with .Values.redis.password }}
{{- if .secretName }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .secretName | quote }}, key: {{ .secretKey | quote }}}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of the chart's own Redis pods. */}}
{{- define "llm-gateway.redisServerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-gateway.name" . }}-redis
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of the `helm test` pod (the NetworkPolicy lets it reach the gateway). */}}
{{- define "llm-gateway.testLabels" -}}
app.kubernetes.io/name: {{ include "llm-gateway.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
