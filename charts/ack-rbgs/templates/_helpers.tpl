{{- /* The chart's short name; nameOverride replaces it. */}}
{{- define "ack-rbgs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* Prefix of every object's name: fullnameOverride, else the release name (with the chart's
name appended unless the release name already contains it). */}}
{{- define "ack-rbgs.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "ack-rbgs.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ack-rbgs.labels" -}}
{{ include "ack-rbgs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- /* Labels that never change across upgrades: selectors (Deployment, Services, PDB,
ServiceMonitor) use only these, since a selector of a Deployment is immutable. */}}
{{- define "ack-rbgs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ack-rbgs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ack-rbgs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ack-rbgs.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /* repository:tag, or repository@digest when a digest is given (a digest pins the exact image). */}}
{{- define "ack-rbgs.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "ack-rbgs.webhookSecretName" -}}
{{- printf "%s-webhook-cert" (include "ack-rbgs.fullname" .) -}}
{{- end -}}

{{- /* Rules on namespaced resources: in a ClusterRole when the operator watches every namespace,
in a Role in each watched namespace otherwise. Every verb and resource is named; no wildcards. */}}
{{- define "ack-rbgs.namespacedRules" -}}
# The API it serves.
- apiGroups: ["workloads.x-k8s.io"]
  resources: ["rolebasedgroups", "rolebasedgroupsets", "rolebasedgroupscalingadapters"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["workloads.x-k8s.io"]
  resources: ["rolebasedgroups/status", "rolebasedgroupsets/status", "rolebasedgroupscalingadapters/status"]
  verbs: ["get", "update", "patch"]
# RoleInstanceSets (the v1alpha2 role workload) and their RoleInstances (one replica each).
- apiGroups: ["workloads.x-k8s.io"]
  resources: ["roleinstancesets", "roleinstances"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["workloads.x-k8s.io"]
  resources: ["roleinstancesets/status", "roleinstances/status"]
  verbs: ["get", "update", "patch"]
# Warmups: read, their status written, and deleted once their ttlSecondsAfterFinished has passed.
- apiGroups: ["workloads.x-k8s.io"]
  resources: ["rolebasedgroupwarmups"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: ["workloads.x-k8s.io"]
  resources: ["rolebasedgroupwarmups/status"]
  verbs: ["get", "update", "patch"]
# CoordinatedPolicies are read: each paces the group of its own name.
- apiGroups: ["workloads.x-k8s.io"]
  resources: ["coordinatedpolicies"]
  verbs: ["get", "list", "watch"]
# Children carry blockOwnerDeletion; clusters running the OwnerReferencesPermissionEnforcement
# admission plugin allow setting it only to who may update the owner's finalizers.
- apiGroups: ["workloads.x-k8s.io"]
  resources: ["rolebasedgroups/finalizers", "rolebasedgroupsets/finalizers", "roleinstancesets/finalizers",
              "roleinstances/finalizers", "rolebasedgroupwarmups/finalizers"]
  verbs: ["update"]
# Role workloads, their revisions and discovery objects.
- apiGroups: ["apps"]
  resources: ["statefulsets", "deployments", "controllerrevisions"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["leaderworkerset.x-k8s.io"]
  resources: ["leaderworkersets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Pods: watched for restart policies and rollout pacing; deleted to recreate them; a
# RoleInstance's pods are made by the operator and get new images in place; so are warmup pods.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# Gang scheduling backends.
- apiGroups: ["scheduling.x-k8s.io", "scheduling.volcano.sh"]
  resources: ["podgroups"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["scheduling.k8s.io"]
  resources: ["workloads", "podgroups", "compositepodgroups"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
{{- end -}}

{{- /* The webhook's CA and serving certificate as JSON {ca, cert, key}, base64-encoded: the stored
Secret's on upgrades, else generated. Generated once per render and kept in .Values, so the Secret,
the caBundle and the pods' checksum all see the same certificate. */}}
{{- define "ack-rbgs.webhookCert" -}}
{{- if not (hasKey .Values "generatedWebhookCert") -}}
{{- $fullname := include "ack-rbgs.fullname" . -}}
{{- $service := printf "%s-webhook" $fullname -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "ack-rbgs.webhookSecretName" .) -}}
{{- $pem := dict -}}
{{- if and $existing $existing.data -}}
{{- $pem = dict "ca" (index $existing.data "ca.crt") "cert" (index $existing.data "tls.crt") "key" (index $existing.data "tls.key") -}}
{{- else -}}
{{- $days := int .Values.webhook.certValidityDays -}}
{{- $authority := genCA (printf "%s-ca" $fullname) $days -}}
{{- $names := list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) -}}
{{- $signed := genSignedCert (printf "%s.%s.svc" $service .Release.Namespace) nil $names $days $authority -}}
{{- $pem = dict "ca" ($authority.Cert | b64enc) "cert" ($signed.Cert | b64enc) "key" ($signed.Key | b64enc) -}}
{{- end -}}
{{- $_ := set .Values "generatedWebhookCert" ($pem | toJson) -}}
{{- end -}}
{{- index .Values "generatedWebhookCert" -}}
{{- end -}}
