{{/*
Helpers, scoped by component as in cert-manager's chart: `kinflow.*` for the
release as a whole, `operator.*` for the operator, `task.*` for task pods.
*/}}

{{/* The chart name, overridable with nameOverride. */}}
{{- define "kinflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's resource name prefix, overridable with fullnameOverride. */}}
{{- define "kinflow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "kinflow.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "kinflow.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kinflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object of the release carries. */}}
{{- define "kinflow.labels" -}}
app.kubernetes.io/name: {{ include "kinflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "kinflow.chart" . }}
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* ---- operator ---- */}}

{{- define "operator.fullname" -}}
{{- printf "%s-operator" (include "kinflow.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kinflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "operator.labels" -}}
{{ include "kinflow.labels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest; the tag defaults to the chart's appVersion. */}}
{{- define "kinflow.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "operator.image" -}}
{{- include "kinflow.image" (list .Values.operator.image .) -}}
{{- end -}}

{{/* The operator's arguments after `kinflow operator`. */}}
{{- define "operator.args" -}}
{{- if .Values.operator.watchNamespaces }}
{{- range .Values.operator.watchNamespaces }}
- --namespace={{ . }}
{{- end }}
{{- else }}
- --all-namespaces
{{- end }}
- --task-image={{ include "task.image" . }}
- --liveness=http://0.0.0.0:{{ .Values.operator.healthPort }}/healthz
{{- if .Values.operator.metrics.enabled }}
- --metrics-port={{ .Values.operator.metrics.port }}
{{- end }}
{{- range .Values.operator.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* ---- task pods ---- */}}

{{/* The namespaces that run tasks: tasks.namespaces, else the release namespace. */}}
{{- define "task.namespaces" -}}
{{- if .Values.tasks.namespaces -}}
{{- toJson .Values.tasks.namespaces -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{- define "task.labels" -}}
{{ include "kinflow.labels" . }}
app.kubernetes.io/component: task
{{- end -}}

{{- define "task.image" -}}
{{- include "kinflow.image" (list .Values.tasks.image .) -}}
{{- end -}}

{{/*
What task pods may do, and nothing else: create child runs, read and watch
runs to join them, patch their own run's status. Must equal TASK_RULES in
devcluster/kinflow_dev/bootstrap.py (tests/unit/chart checks it).
*/}}
{{- define "task.rules" -}}
- apiGroups: ["kinflow.io"]
  resources: ["workflowruns"]
  verbs: ["create", "get", "list", "watch"]
- apiGroups: ["kinflow.io"]
  resources: ["workflowruns/status"]
  verbs: ["patch"]
{{- end -}}

{{/*
What the operator needs in each namespace it watches (Role in namespace mode,
part of the ClusterRole otherwise).
*/}}
{{- define "operator.namespacedRules" -}}
# Reconcile runs: kopf reads and watches them, patches its annotations and finalizer.
- apiGroups: ["kinflow.io"]
  resources: ["workflowruns"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["kinflow.io"]
  resources: ["workflowruns/status"]
  verbs: ["get", "patch", "update"]
# Jobs carry an ownerReference with blockOwnerDeletion to their run; clusters
# with the OwnerReferencesPermissionEnforcement admission plugin require this.
- apiGroups: ["kinflow.io"]
  resources: ["workflowruns/finalizers"]
  verbs: ["update"]
# One Job per task attempt.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete", "patch"]
# Read pods to report exit codes and reasons of failed attempts.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# kopf posts Kubernetes Events on the runs it handles; the operator also lists and
# watches the Events `kinflow event send` creates, to resume durable tasks.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch", "get", "list", "watch"]
{{- end -}}

{{/*
Cluster-scoped reads kopf makes in every mode: it scans CRDs to notice
resources appear, and observes namespaces even when given exact names
(without this it retries for about a minute at startup, then carries on).
*/}}
{{- define "operator.discoveryRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end -}}
