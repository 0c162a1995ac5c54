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

{{/* The image. A registry (global.imageRegistry, which a parent chart sets for every subchart,
else image.registry) replaces the registry host that leads the repository, or is put in front
of a repository without one: ghcr.io/nodeprobe/nodeprobe -> mirror.example.com/nodeprobe/nodeprobe. */}}
{{- define "nodeprobe.repository" -}}
{{- $repo := .Values.image.repository -}}
{{- $registry := (dig "imageRegistry" "" (.Values.global | default dict)) | default .Values.image.registry -}}
{{- if $registry -}}
{{- $parts := splitList "/" $repo -}}
{{- $head := first $parts -}}
{{- if and (gt (len $parts) 1) (or (contains "." $head) (contains ":" $head) (eq $head "localhost")) -}}
{{- $repo = join "/" (rest $parts) -}}
{{- end -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" $registry) $repo -}}
{{- end -}}
{{- $repo -}}
{{- end -}}

{{- define "nodeprobe.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" (include "nodeprobe.repository" .) .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" (include "nodeprobe.repository" .) (default .Chart.AppVersion .Values.image.tag) -}}
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
(`set`, not a merge: a merge would not let `false` override `true`). Paths point into the
pod's view of the host: /host/run, /host/proc, /host/sys/fs/cgroup.
*/}}
{{- define "nodeprobe.agent.config" -}}
{{- $sockets := (include "nodeprobe.agent.runtimePaths" . | fromYaml).sockets -}}
{{- $cfg := deepCopy .Values.agent.config -}}
{{- $docker := deepCopy (default dict $cfg.docker) -}}
{{- $_ := set $docker "enabled" .Values.agent.docker.enabled -}}
{{- $_ := set $docker "socket" $sockets.docker -}}
{{- $containerd := deepCopy (default dict $cfg.containerd) -}}
{{- $_ := set $containerd "enabled" .Values.agent.containerd.enabled -}}
{{- $_ := set $containerd "socket" $sockets.containerd -}}
{{- $metrics := deepCopy (default dict $cfg.metrics) -}}
{{- $_ := set $metrics "port" .Values.agent.metricsPort -}}
{{- $repair := deepCopy (default dict $cfg.repair) -}}
{{- $_ := set $repair "enabled" .Values.agent.repair.enabled -}}
{{- $_ := set $repair "dumpDir" .Values.agent.repair.dumpDir -}}
{{- $_ := set $repair "admissionGuard" (printf "%s-noderemediations" (include "nodeprobe.fullname" .)) -}}
{{- if .Values.agent.repair.enabled -}}
{{- $_ := set $repair "dockerdPidfile" "/host/run/docker.pid" -}}
{{- $_ := set $repair "dockerdExecRoot" "/host/run/docker" -}}
{{- $_ := set $repair "executorSocket" "/run/nodeprobe-repair/executor.sock" -}}
{{- $_ := set $repair "ledger" (printf "%s/repair-ledger.json" .Values.agent.repair.dumpDir) -}}
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
{{- $_ := set $paths "procRoot" "/host/proc" -}}
{{- $_ := set $paths "cgroupRoot" "/host/sys/fs/cgroup" -}}
{{- $_ := set $cfg "paths" $paths -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
Where the runtime sockets come from: {mounts: [{name, hostPath, mountPath}], sockets: {docker,
containerd}} with each socket's path in the pod (`auto`: the agent looks under /host).
The host's /run is always mounted read-only at /host/run (never over the pod's own /run, where
the service account token is); a socket given under /run or /var/run is reached there. Only a
socket elsewhere adds a mount: its directory, read-only, type Directory. No hostPath ever names
a socket or a directory a runtime creates, so kubelet cannot create one in its place.
The runtime roots (`agent.<runtime>.root`, for the disk check) are opt-in: a root is mounted
read-only under /host, type Directory, only when set, since a Directory hostPath keeps the pod
from starting on a node without that runtime.
*/}}
{{- define "nodeprobe.agent.runtimePaths" -}}
{{- $mounts := list (dict "name" "host-run" "hostPath" "/run" "mountPath" "/host/run") -}}
{{- $sockets := dict -}}
{{- range $name := list "docker" "containerd" -}}
{{- $socket := (index $.Values.agent $name).socket -}}
{{- $inRun := regexReplaceAll "^/var/run/" $socket "/run/" -}}
{{- if or (eq $socket "auto") (not (index $.Values.agent $name).enabled) -}}
{{- $_ := set $sockets $name "auto" -}}
{{- else if hasPrefix "/run/" $inRun -}}
{{- $_ := set $sockets $name (printf "/host%s" $inRun) -}}
{{- else -}}
{{- $mounts = append $mounts (dict "name" (printf "%s-dir" $name) "hostPath" (dir $socket) "mountPath" (printf "/host%s" (dir $socket))) -}}
{{- $_ := set $sockets $name (printf "/host%s" $socket) -}}
{{- end -}}
{{- if (index $.Values.agent $name).root -}}
{{- $root := (index $.Values.agent $name).root -}}
{{- $mounts = append $mounts (dict "name" (printf "%s-root" $name) "hostPath" $root "mountPath" (printf "/host%s" $root)) -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "mounts" $mounts "sockets" $sockets) -}}
{{- end -}}
