{{/* Names and labels. */}}
{{- define "changeprop.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "changeprop.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "changeprop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "changeprop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "changeprop.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "changeprop.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "changeprop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "changeprop.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
changeprop.config is the config file: .Values.config with listen set to
0.0.0.0:<port> and, when config.rules is empty, .Values.sampleRules.
*/}}
{{- define "changeprop.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $listen := printf "0.0.0.0:%d" (int .Values.port) -}}
{{- if and (hasKey $cfg "listen") (ne (toString (index $cfg "listen")) $listen) -}}
{{- fail (printf "config.listen is %v: the pod must listen on %s (set port instead)" (index $cfg "listen") $listen) -}}
{{- end -}}
{{- $_ := set $cfg "listen" $listen -}}
{{- if not (index $cfg "rules") -}}
{{- $_ := set $cfg "rules" (deepCopy .Values.sampleRules) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
changeprop.shutdownSeconds is config.shutdown_timeout in whole seconds,
rounded up: an integer is milliseconds (as changeprop reads it), a string a
Go duration ("45s", "1m30s", "500ms"). Absent: 30.
*/}}
{{- define "changeprop.shutdownSeconds" -}}
{{- $v := index (.Values.config | default dict) "shutdown_timeout" -}}
{{- if kindIs "invalid" $v -}}
30
{{- else if kindIs "string" $v -}}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$" $v) -}}
{{- fail (printf "config.shutdown_timeout %q: want a Go duration such as 30s or an integer of milliseconds" $v) -}}
{{- end -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h)" $v -1 -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" . -}}
{{- $unit := trimPrefix $num . -}}
{{- $scale := get (dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0) $unit -}}
{{- $total = addf $total (mulf (float64 $num) $scale) -}}
{{- end -}}
{{- ceil $total | int -}}
{{- else -}}
{{- ceil (divf $v 1000) | int -}}
{{- end -}}
{{- end -}}
