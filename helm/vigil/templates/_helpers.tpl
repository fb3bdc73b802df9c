{{/*
Names, labels and small computed values shared by the templates.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The base name of every resource: fullnameOverride, else the release name when it already
contains the chart's name (a release called "vigil" gives "vigil", not "vigil-vigil"), else
"<release>-<name>". Kubernetes names are at most 63 characters.
*/}}
{{- define "vigil.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "vigil.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "vigil-0.1.0", for the helm.sh/chart label. */}}
{{- define "vigil.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels that select the agent's pods; they never change across upgrades. */}}
{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The labels of every resource. */}}
{{- define "vigil.labels" -}}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/component: agent
app.kubernetes.io/part-of: vigil
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "vigil.chart" . }}
{{- end -}}

{{- define "vigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vigil.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap mounted at /etc/vigil/policies: the user's own, or the chart's. */}}
{{- define "vigil.policyConfigMapName" -}}
{{- if .Values.existingPolicyConfigMap -}}
{{- .Values.existingPolicyConfigMap -}}
{{- else -}}
{{- printf "%s-policies" (include "vigil.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "vigil.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/*
HOST:PORT for a listen flag, from a dict with "address" and "port". An IPv6 address gets
brackets ("[::]:9610"); "$(HOST_IP)" is left for Kubernetes to expand.
*/}}
{{- define "vigil.hostPort" -}}
{{- $addr := toString .address -}}
{{- if and (contains ":" $addr) (not (hasPrefix "[" $addr)) -}}
{{- printf "[%s]:%d" $addr (int .port) -}}
{{- else -}}
{{- printf "%s:%d" $addr (int .port) -}}
{{- end -}}
{{- end -}}
