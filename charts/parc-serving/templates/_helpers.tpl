{{/*
Mirrors compiler/parc/targets/kubernetes.py::objects; a test renders this chart with real
Helm for every example and compares the objects with parc's manifests.
*/}}

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
    {{- if $serving }}
    parc.dev/serving: "true"
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
