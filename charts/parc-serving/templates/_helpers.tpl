{{/*
Mirrors compiler/parc/targets/kubernetes.py::objects; a test renders this chart with real
Helm for every example and compares the objects with parc's manifests.
*/}}

{{/*
The values with the release's defaults filled in, written into the dict given as the second
argument: (list $ $v). `name` "" is the release name, `namespace` "" the release namespace
(`helm -n`), a group's `name` "" is `name` for a single group, else `<name>-<pool>` (parc's
rule). Names must be DNS-1123 labels: object names and label values at once.
*/}}
{{- define "parc.resolve" -}}
{{- $ := index . 0 -}}
{{- $v := index . 1 -}}
{{- $_ := set $v "name" ($.Values.name | default $.Release.Name) -}}
{{- $_ := set $v "namespace" ($.Values.namespace | default $.Release.Namespace) -}}
{{- $groups := list -}}
{{- $names := list $v.name -}}
{{- range $g := $.Values.groups -}}
{{- $fallback := ternary $v.name (printf "%s-%s" $v.name $g.pool) (eq (len $.Values.groups) 1) -}}
{{- $name := $g.name | default $fallback -}}
{{- $groups = append $groups (merge (dict "name" $name) $g) -}}
{{- $names = append $names $name -}}
{{- end -}}
{{- $_ := set $v "groups" $groups -}}
{{- $_ := merge $v $.Values -}}
{{- range $n := $names -}}
{{- if or (gt (len $n) 63) (not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $n)) -}}
{{- fail (printf "parc-serving: name %q is not a DNS-1123 label of at most 63 characters (lower-case letters, digits, '-'); set `name` in the values or choose another release name" $n) -}}
{{- end -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $v.namespace) -}}
{{- fail (printf "parc-serving: namespace %q is not a DNS-1123 label; set `namespace` in the values or pass another `helm -n`" $v.namespace) -}}
{{- end -}}
{{- end -}}

{{- define "parc.labels" -}}
{{- $v := index . 0 -}}
{{- $ours := dict "app.kubernetes.io/name" $v.name "app.kubernetes.io/instance" (index . 1) "app.kubernetes.io/component" (index . 2) "app.kubernetes.io/managed-by" "parc" -}}
{{- toYaml (merge $ours (deepCopy $v.labels)) -}}
{{- end -}}

{{- define "parc.meta" -}}
{{- $v := index . 0 -}}
name: {{ index . 1 | toJson }}
namespace: {{ $v.namespace | toJson }}
labels:
  {{- include "parc.labels" (list $v (index . 2) (index . 3)) | nindent 2 }}
{{- end -}}

{{- define "parc.serving" -}}
app.kubernetes.io/name: {{ .name | toJson }}
parc.dev/serving: "true"
{{- end -}}

{{/* A pod template. Argument: (list $values $group $role $process). */}}
{{- define "parc.pod" -}}
{{- $v := index . 0 -}}
{{- $g := index . 1 -}}
{{- $role := index . 2 -}}
{{- $proc := index . 3 -}}
{{- $serving := or (eq $role "server") (eq $role "leader") -}}
metadata:
  labels:
    {{- include "parc.labels" (list $v $g.name $role) | nindent 4 }}
    {{- $phase := $g.phase | default "both" }}
    {{- if and $serving (eq $phase "both") }}
    parc.dev/serving: "true"
    {{- else if $serving }}
    parc.dev/phase: {{ $phase | toJson }}
    {{- end }}
  {{- $annotations := merge (deepCopy ($g.annotations | default dict)) (deepCopy ($v.podAnnotations | default dict)) }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  {{- if $v.hostNetwork }}
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  {{- end }}
  {{- $selector := merge (deepCopy $g.nodeSelector) (deepCopy $v.nodeSelector) }}
  {{- with $selector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: engine
      image: {{ $v.image | toJson }}
      imagePullPolicy: {{ $v.imagePullPolicy | toJson }}
      command:
        {{- toYaml $proc.command | nindent 8 }}
      env:
        {{- with $proc.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- if $v.hfTokenSecret }}
        - name: HF_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ $v.hfTokenSecret | toJson }}
              key: HF_TOKEN
              optional: true
        {{- end }}
      {{- if $serving }}
      ports:
        - name: http
          containerPort: {{ $v.port }}
          protocol: TCP
      {{- end }}
      resources:
        requests:
          cpu: {{ $g.cpu | toJson }}
          memory: {{ $g.memory | toJson }}
          {{ $g.gpuResource }}: {{ $g.gpusPerPod | toString | toJson }}
          {{- range $k, $n := $g.extraResources }}
          {{ $k }}: {{ $n | toJson }}
          {{- end }}
        limits:
          {{ $g.gpuResource }}: {{ $g.gpusPerPod | toString | toJson }}
          {{- range $k, $n := $g.extraResources }}
          {{ $k }}: {{ $n | toJson }}
          {{- end }}
      volumeMounts:
        - name: shm
          mountPath: /dev/shm
        - name: model-cache
          mountPath: /var/cache/parc/huggingface
        {{- if $v.files }}
        - name: parc-files
          mountPath: /etc/parc
          readOnly: true
        {{- end }}
      {{- if $serving }}
      startupProbe:
        httpGet:
          path: {{ $v.healthPath | toJson }}
          port: http
        periodSeconds: 10
        failureThreshold: {{ div $g.startupSeconds 10 }}
      readinessProbe:
        httpGet:
          path: {{ $v.healthPath | toJson }}
          port: http
        periodSeconds: 10
        failureThreshold: 3
      livenessProbe:
        httpGet:
          path: {{ $v.healthPath | toJson }}
          port: http
        periodSeconds: 30
        timeoutSeconds: 5
        failureThreshold: 3
      {{- end }}
      securityContext:
        allowPrivilegeEscalation: false
        privileged: false
        capabilities:
          drop: [ALL]
          {{- with $g.capabilities }}
          add:
            {{- toYaml . | nindent 12 }}
          {{- end }}
        seccompProfile:
          type: RuntimeDefault
  volumes:
    - name: shm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $v.shmSize | toJson }}
    - name: model-cache
      {{- if $v.modelCache.pvc }}
      persistentVolumeClaim:
        claimName: {{ $v.modelCache.pvc | toJson }}
      {{- else if $v.modelCache.hostPath }}
      hostPath:
        path: {{ $v.modelCache.hostPath | toJson }}
        type: DirectoryOrCreate
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- if $v.files }}
    - name: parc-files
      configMap:
        name: {{ printf "%s-parc" $v.name | toJson }}
        defaultMode: 365
    {{- end }}
{{- end -}}
