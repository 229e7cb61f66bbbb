{{/* Chart name, overridable. */}}
{{- define "dbconn-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name, the prefix of every resource: RELEASE-dbconn-operator, or RELEASE when it already
contains the chart name. Truncated to 63 characters (the DNS label limit).
*/}}
{{- define "dbconn-operator.fullname" -}}
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

{{- define "dbconn-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The recommended labels (app.kubernetes.io/*, helm.sh/chart) on every object, with component
"operator"; objects of another component use commonLabels and add their own.
*/}}
{{- define "dbconn-operator.labels" -}}
{{ include "dbconn-operator.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "dbconn-operator.commonLabels" -}}
helm.sh/chart: {{ include "dbconn-operator.chart" . }}
{{ include "dbconn-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: dbconn-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The labels that select the operator pods; never change them in an upgrade. */}}
{{- define "dbconn-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dbconn-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dbconn-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dbconn-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "dbconn-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
"true" or "false": whether the pods elect a leader. leaderElection.enabled is auto, true or
false; auto means "more than one replica". Two replicas without election would both reconcile
(double probes, racing status writes), so that combination is refused.
*/}}
{{- define "dbconn-operator.leaderElection" -}}
{{- $setting := toString .Values.leaderElection.enabled }}
{{- $replicas := int .Values.replicaCount }}
{{- $sharded := gt (int .Values.sharding.shards) 0 }}
{{- $enabled := false }}
{{- if eq $setting "auto" }}
{{- $enabled = and (gt $replicas 1) (not $sharded) }}
{{- else if eq $setting "true" }}
{{- if $sharded }}
{{- fail "leaderElection.enabled=true with sharding.shards > 0: choose one; sharded replicas are all active, each on its own shards" }}
{{- end }}
{{- $enabled = true }}
{{- else if eq $setting "false" }}
{{- if and (gt $replicas 1) (not $sharded) }}
{{- fail (printf "leaderElection.enabled=false with replicaCount=%d: every replica would reconcile every connection; enable leader election, set sharding.shards, or use one replica" $replicas) }}
{{- end }}
{{- else }}
{{- fail (printf "leaderElection.enabled must be auto, true or false, not %q" $setting) }}
{{- end }}
{{- $enabled }}
{{- end }}

{{/* "true" when the pods take Leases: to elect a leader, or to split the connections in shards. */}}
{{- define "dbconn-operator.takesLeases" -}}
{{- or (eq (include "dbconn-operator.leaderElection" .) "true") (gt (int .Values.sharding.shards) 0) }}
{{- end }}

{{/*
The Lease the operator takes (LEASE_NAME): leaderElection.leaseName, or the full name, so two
releases in one namespace each elect their own leader.
*/}}
{{- define "dbconn-operator.leaseName" -}}
{{- default (include "dbconn-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The job label Prometheus gives the metrics Service's targets (the Service's name). */}}
{{- define "dbconn-operator.metricsJob" -}}
{{- default (printf "%s-metrics" (include "dbconn-operator.fullname" .)) .Values.prometheusRule.job }}
{{- end }}

{{/*
What the operator may do in the namespaces it watches; the same rules go into the ClusterRole
(all namespaces) or the Role (one namespace).
*/}}
{{- define "dbconn-operator.watchRules" -}}
# Exactly the calls the operator makes (src/): the controller lists and watches connections
# (a re-read lists by name) and writes only their status, with a PATCH.
- apiGroups: ["dbconn.dev"]
  resources: ["databaseconnections"]
  verbs: ["list", "watch"]
- apiGroups: ["dbconn.dev"]
  resources: ["databaseconnections/status"]
  verbs: ["patch"]
# Login and CA Secrets referenced by connections: read, and watched so rotations apply at once.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
{{- if .Values.binding.enabled }}
# binding.enabled: spec.binding writes one Secret per connection with server-side apply (create
# for a new one, patch after) and deletes it when spec.binding goes. Off: no Secret can change.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "patch", "delete"]
{{- end }}
# Events on DatabaseConnections: kube's recorder writes events.k8s.io/v1 only (create, and patch
# to count repeats).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
