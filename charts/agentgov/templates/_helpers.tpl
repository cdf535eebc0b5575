{{/* Names. */}}
{{- define "agentgov.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentgov.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "agentgov.operator.name" -}}{{ include "agentgov.fullname" . }}-operator{{- end }}
{{- define "agentgov.webhook.name" -}}{{ include "agentgov.fullname" . }}-webhook{{- end }}
{{- define "agentgov.webhook.tlsSecret" -}}{{ include "agentgov.fullname" . }}-webhook-tls{{- end }}
{{- define "agentgov.webhook.clientCAConfigMap" -}}
{{- .Values.webhook.clientCA.existingConfigMap | default (printf "%s-webhook-client-ca" (include "agentgov.fullname" .)) }}
{{- end }}

{{/* Labels; call with (dict "root" $ "component" "operator"). */}}
{{- define "agentgov.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentgov.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "agentgov.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "agentgov.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: agentgov
{{- end }}

{{/* An image reference; call with (dict "root" $ "image" .Values.operator.image). */}}
{{- define "agentgov.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* Secret names of the two key rings. */}}
{{- define "agentgov.signingSecret" -}}
{{- if .Values.signingKeys.create }}{{ include "agentgov.fullname" . }}-signing-keys
{{- else }}{{ .Values.signingKeys.existingSecret }}{{ end }}
{{- end }}
{{- define "agentgov.verificationSecret" -}}
{{- if .Values.signingKeys.create }}{{ include "agentgov.fullname" . }}-verification-keys
{{- else }}{{ .Values.signingKeys.existingVerificationSecret }}{{ end }}
{{- end }}

{{/* The Secret of the public policy-signing ring (policy.requireSignedBundles). */}}
{{- define "agentgov.bundleKeysSecret" -}}
{{- if .Values.policy.bundleKeys.ring }}{{ include "agentgov.fullname" . }}-bundle-keys
{{- else }}{{ .Values.policy.bundleKeys.existingSecret }}{{ end }}
{{- end }}

{{/* --require-signed-bundles for a container: env, and the ring's mount and volume. */}}
{{- define "agentgov.bundleKeys.env" -}}
{{- if .Values.policy.requireSignedBundles }}
- name: AGENTGOV_REQUIRE_SIGNED_BUNDLES
  value: "true"
- name: AGENTGOV_BUNDLE_KEYS_FILE
  value: /etc/agentgov/bundle-keys/{{ .Values.policy.bundleKeys.secretKey }}
{{- end }}
{{- end }}
{{- define "agentgov.bundleKeys.mount" -}}
{{- if .Values.policy.requireSignedBundles }}
- name: bundle-keys
  mountPath: /etc/agentgov/bundle-keys
  readOnly: true
{{- end }}
{{- end }}
{{- define "agentgov.bundleKeys.volume" -}}
{{- if .Values.policy.requireSignedBundles }}
- name: bundle-keys
  secret:
    secretName: {{ include "agentgov.bundleKeysSecret" . }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/* Settings that must agree with each other; included by every Deployment. */}}
{{- define "agentgov.validate" -}}
{{- $bundleKeys := .Values.policy.bundleKeys }}
{{- if and $bundleKeys.ring $bundleKeys.existingSecret }}
{{- fail "policy.bundleKeys: set either ring or existingSecret, not both" }}
{{- end }}
{{- if and .Values.policy.requireSignedBundles (not $bundleKeys.ring) (not $bundleKeys.existingSecret) }}
{{- fail "policy.requireSignedBundles needs the public policy-signing ring: set policy.bundleKeys.ring to the output of `keygen public policy-ring.json`, or policy.bundleKeys.existingSecret (docs/install.md#signed-policy-bundles)" }}
{{- end }}
{{- $keys := .Values.signingKeys }}
{{- if and $keys.create $keys.existingSecret }}
{{- fail "signingKeys: set either create: true (with keyring) or existingSecret, not both" }}
{{- end }}
{{- if $keys.create }}
{{- if not $keys.keyring }}
{{- fail "signingKeys.create is true but signingKeys.keyring is empty: set it to the output of `cargo run -p agentgov-api --bin keygen -- new` (docs/install.md)" }}
{{- end }}
{{- else }}
{{- if not $keys.existingSecret }}
{{- fail "signing keys are required: set signingKeys.existingSecret (and existingVerificationSecret) to Secrets holding the key ring, or signingKeys.create=true with signingKeys.keyring (docs/install.md#signing-keys)" }}
{{- end }}
{{- if not $keys.existingVerificationSecret }}
{{- fail "signingKeys.existingVerificationSecret is required with existingSecret: the webhook gets only the verification ring (`keygen public keyring.json`), never the signing keys" }}
{{- end }}
{{- end }}
{{- if and (ne .Values.webhook.clientAuth "none") (not .Values.webhook.clientCA.pem) (not .Values.webhook.clientCA.existingConfigMap) }}
{{- fail (printf "webhook.clientAuth=%s needs the CA of the API server's webhook client certificate: set webhook.clientCA.pem or webhook.clientCA.existingConfigMap, or use clientAuth=none (docs/install.md#api-server-client-certificate)" .Values.webhook.clientAuth) }}
{{- end }}
{{- end }}

{{/* The verification-only ring: the signing ring without private keys or active key. */}}
{{- define "agentgov.verificationKeyring" -}}
{{- $ring := fromJson .Values.signingKeys.keyring }}
{{- if hasKey $ring "Error" }}
{{- fail (printf "signingKeys.keyring is not JSON (%s): give the output of `keygen new` as is" $ring.Error) }}
{{- end }}
{{- $keys := list }}
{{- range $ring.keys }}
{{- if and (eq .algorithm "Ed25519") (not .publicKey) }}
{{- fail (printf "signingKeys.keyring: Ed25519 key %s has no publicKey; regenerate the ring with keygen, or use existingSecret with a `keygen public` ring" .id) }}
{{- end }}
{{- $keys = append $keys (omit . "privateKey") }}
{{- end }}
{{- $public := dict "keys" $keys }}
{{- with $ring.revoked }}{{ $_ := set $public "revoked" . }}{{ end }}
{{- toPrettyJson $public }}
{{- end }}

{{/* Pod anti-affinity spreading the replicas of one component over nodes. */}}
{{- define "agentgov.antiAffinity" -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "agentgov.selectorLabels" (dict "root" .root "component" .component) | fromYaml)) -}}
podAntiAffinity:
{{- if eq .mode "required" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    {{- list $term | toYaml | nindent 4 }}
{{- else }}
  preferredDuringSchedulingIgnoredDuringExecution:
    {{- list (dict "weight" 100 "podAffinityTerm" $term) | toYaml | nindent 4 }}
{{- end }}
{{- end }}

{{/* The namespaceSelector of both webhooks. */}}
{{- define "agentgov.webhook.namespaceSelector" -}}
matchExpressions:
{{- if .Values.watchNamespace }}
  - key: kubernetes.io/metadata.name
    operator: In
    values: [{{ .Values.watchNamespace | quote }}]
{{- end }}
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- uniq (append (.Values.webhook.excludedNamespaces | default list) .Release.Namespace) | toYaml | nindent 6 }}
{{- with .Values.webhook.namespaceSelectorExpressions }}
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
