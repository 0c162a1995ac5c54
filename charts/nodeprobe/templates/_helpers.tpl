{{/* Names and labels: one helper each, so no label is ever copied by hand. */}}

{{- define "nodeprobe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nodeprobe.fullname" -}}
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

{{/* Usage: include "nodeprobe.selectorLabels" (dict "ctx" $ "component" "agent") */}}
{{- define "nodeprobe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nodeprobe.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Usage: include "nodeprobe.labels" (dict "ctx" $ "component" "agent") */}}
{{- define "nodeprobe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{ include "nodeprobe.selectorLabels" . }}
app.kubernetes.io/part-of: nodeprobe
{{- with .ctx.Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "nodeprobe.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "nodeprobe.agent.fullname" -}}
{{- printf "%s-agent" (include "nodeprobe.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nodeprobe.operator.fullname" -}}
{{- printf "%s-operator" (include "nodeprobe.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nodeprobe.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create -}}
{{- default (include "nodeprobe.agent.fullname" .) .Values.agent.serviceAccount.name -}}
{{- else -}}
{{- required "agent.serviceAccount.name is required when agent.serviceAccount.create is false" .Values.agent.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "nodeprobe.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "nodeprobe.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The agent's config file: the user's agent.config with the keys the chart owns set on top
(`set`, not a merge: a merge would not let `false` override `true`).
*/}}
{{- define "nodeprobe.agent.config" -}}
{{- $sockets := (include "nodeprobe.agent.runtimePaths" . | fromYaml).sockets -}}
{{- $cfg := deepCopy .Values.agent.config -}}
{{- $docker := deepCopy (default dict $cfg.docker) -}}
{{- $_ := set $docker "enabled" .Values.agent.docker.enabled -}}
{{- $_ := set $docker "socket" (default .Values.agent.docker.socket $sockets.docker) -}}
{{- $containerd := deepCopy (default dict $cfg.containerd) -}}
{{- $_ := set $containerd "enabled" .Values.agent.containerd.enabled -}}
{{- $_ := set $containerd "socket" (default .Values.agent.containerd.socket $sockets.containerd) -}}
{{- $metrics := deepCopy (default dict $cfg.metrics) -}}
{{- $_ := set $metrics "port" .Values.agent.metricsPort -}}
{{- $repair := deepCopy (default dict $cfg.repair) -}}
{{- $_ := set $repair "enabled" .Values.agent.repair.enabled -}}
{{- $_ := set $repair "dumpDir" .Values.agent.repair.dumpDir -}}
{{- if .Values.agent.repair.enabled -}}
{{- $_ := set $repair "dockerdPidfile" "/host/run/docker.pid" -}}
{{- $_ := set $repair "dockerdExecRoot" "/host/run/docker" -}}
{{- end -}}
{{- $_ := set $cfg "docker" $docker -}}
{{- $_ := set $cfg "containerd" $containerd -}}
{{- $_ := set $cfg "metrics" $metrics -}}
{{- $_ := set $cfg "repair" $repair -}}
{{- $disk := deepCopy (default dict $cfg.disk) -}}
{{- if .Values.agent.docker.root -}}
{{- $_ := set $disk "dockerRoot" .Values.agent.docker.root -}}
{{- end -}}
{{- if .Values.agent.containerd.root -}}
{{- $_ := set $disk "containerdRoot" .Values.agent.containerd.root -}}
{{- end -}}
{{- $_ := set $cfg "disk" $disk -}}
{{- $paths := deepCopy (default dict $cfg.paths) -}}
{{- $_ := set $paths "hostRoot" "/host" -}}
{{- $_ := set $cfg "paths" $paths -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
Where the runtime sockets (and roots, for the disk check) come from: {mounts: [{name, hostPath, mountPath, type}], sockets:
{docker, containerd}} with the sockets' paths in the pod. A `socket` mount keeps the host path;
a `directory` mount goes under /host, never over the pod's own /run (the service account token
is mounted under /var/run/secrets). Repair mode mounts the host's /run at /host/run instead of
the sockets under it: a restart must not leave the agent holding a stale socket, and the
executor reads dockerd's pidfile and goroutine dumps there.
*/}}
{{- define "nodeprobe.agent.runtimePaths" -}}
{{- $repair := .Values.agent.repair.enabled -}}
{{- $mounts := list -}}
{{- $sockets := dict -}}
{{- if $repair -}}
{{- $mounts = append $mounts (dict "name" "host-run" "hostPath" "/run" "mountPath" "/host/run" "type" "Directory") -}}
{{- end -}}
{{- range $name := list "docker" "containerd" -}}
{{- $rt := index $.Values.agent $name -}}
{{- if $rt.enabled -}}
{{- $inRun := regexReplaceAll "^/var/run/" $rt.socket "/run/" -}}
{{- if and $repair (hasPrefix "/run/" $inRun) -}}
{{- $_ := set $sockets $name (printf "/host%s" $inRun) -}}
{{- else if eq $rt.mount "directory" -}}
{{- $mounts = append $mounts (dict "name" (printf "%s-dir" $name) "hostPath" (dir $rt.socket) "mountPath" (printf "/host%s" (dir $rt.socket)) "type" "Directory") -}}
{{- $_ := set $sockets $name (printf "/host%s" $rt.socket) -}}
{{- else -}}
{{- $mounts = append $mounts (dict "name" (printf "%s-sock" $name) "hostPath" $rt.socket "mountPath" $rt.socket "type" "Socket") -}}
{{- $_ := set $sockets $name $rt.socket -}}
{{- end -}}
{{- if $rt.root -}}
{{- $mounts = append $mounts (dict "name" (printf "%s-root" $name) "hostPath" $rt.root "mountPath" (printf "/host%s" $rt.root) "type" "Directory") -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "mounts" $mounts "sockets" $sockets) -}}
{{- end -}}
