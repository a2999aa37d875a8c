"""Pod runner: the part of the kubelet that runs containers, for the images this machine has binaries for.

A stand-in for kubelet + a container runtime (there is no image, registry or CRI runtime here). The
kubelet stand-in (kubelet/) registers the Node and hands every pod bound to it to `PodRunner.sync`;
the pods whose every container image is in `images` run here as real processes (the controllers osk8s
deploys: OCCM, cinder-csi, octavia-ingress-controller, k8s-keystone-auth; kube-proxy's stand-in), the
others stay with kwok.

    runner = PodRunner("node-1", "198.18.0.2", Path("/etc/kubernetes/kubelet.conf"),
                       {"registry.k8s.io/provider-os/k8s-keystone-auth": Path(".../k8s-keystone-auth"),
                        "registry.k8s.io/kube-proxy": proxy.ARGV}, Path("/var/lib/osk8s-pods"))
    runner.handles(pod)        # every container's image repository mapped, tag = the binary's version
    runner.sync(pods)          # start new pods, stop gone/deleted ones, restart with backoff, patch status
    runner.stop()              # every container stopped; no process and no mount left

What it follows, file by file (k8s.io/kubernetes v1.37.2 unless named otherwise; read, not guessed):
- credentials: it acts as the node (its kubelet.conf: system:node:<name>), so the Node authorizer and
  NodeRestriction decide what it may read. Secrets and ConfigMaps are read per pod; the projected
  `kube-api-access-*` token comes from the TokenRequest API bound to the pod (audience: the API
  server's default), refreshed at 80% of its TTL or after 24 h (pkg/kubelet/token/token_manager.go).
  The container then talks to the API with THAT token, so the real RBAC of our manifests applies.
- volumes (pkg/volume/secret/secret.go MakePayload, pkg/volume/projected/projected.go collectData,
  pkg/volume/configmap, pkg/volume/downwardapi, pkg/volume/hostpath, pkg/volume/emptydir): files
  written the AtomicWriter way (pkg/volume/util/atomic_writer.go: `..<timestamp>` dir, `..data`
  symlink swapped by rename, user-visible symlinks), items/defaultMode/optional honoured, the token
  file 0600 and owned by the pod's single runAsUser (FsUserFrom), re-read every minute (syncFrequency).
- environment (pkg/kubelet/kubelet_pods.go makeEnvironmentVariables, pkg/kubelet/envvars/envvars.go,
  third_party/forked/golang/expansion): envFrom, then env in order with `$(VAR)` expansion, fieldRef /
  resourceFieldRef / configMapKeyRef / secretKeyRef, then the service links (the `kubernetes` Service
  always: KUBERNETES_SERVICE_HOST/PORT); command/args expanded with the result
  (pkg/kubelet/container/helpers.go ExpandContainerCommandAndArgs).
- argv: containerd's CRI merge of command/args with the image's ENTRYPOINT/CMD (WithProcessArgs), with
  the image configs of the upstream Dockerfiles (IMAGES below). The CPO images run under go-runner
  (registry.k8s.io/build-image/go-runner; same program as k8s.io/component-base logs/kube-log-runner):
  its flags, its "Running command" lines, stderr folded into stdout, any failure of the child exit 1.
  The binary sits at the path the image has it; an argv[0] naming another path fails as it would.
- isolation: each container in its own mount and UTS namespace (`unshare --mount --uts`), chrooted into
  a tmpfs mounted (inside that namespace only) on state_dir/pods/<uid>/root, holding the binary, the
  volumes at their mountPaths (propagation None/HostToContainer/Bidirectional), /etc/{hosts,resolv.conf,
  passwd,group,ssl/certs}, /dev basics, /proc, /sys (ro), /tmp; runAsUser/runAsGroup/fsGroup/
  supplementalGroups, runAsNonRoot (kubelet's verifyRunAsNonRoot), containerd's default capability set
  unless privileged (plus capabilities add/drop), no_new_privs when allowPrivilegeEscalation is false,
  readOnlyRootFilesystem. /etc/hosts as kubelet writes it (managedHostsFileContent /
  nodeHostsFileContent); /etc/resolv.conf the node's (dnsPolicy ClusterFirst falls back to Default when
  the kubelet has no clusterDNS, pkg/kubelet/network/dns/dns.go: there is no cluster DNS here).
- restarts (pkg/kubelet/kuberuntime/kuberuntime_manager.go doBackOff, client-go util/flowcontrol
  backoff.go, pkg/kubelet/kubelet.go): first restart at once, then 10 s doubling to 300 s, reset after
  10 minutes of running; waiting reason CrashLoopBackOff with kubelet's message; restartPolicy honoured.
- status (pkg/kubelet/status/generate.go, kubelet_pods.go getPhase/convertToAPIContainerStatuses,
  pkg/kubelet/status/status_manager.go): phase, PodReadyToStartContainers/Initialized/ContainersReady/
  Ready (PodScheduled and foreign conditions kept), observedGeneration, containerStatuses (state,
  lastState, ready, started, restartCount, image, imageID, containerID, volumeMounts, user), podIP(s),
  hostIP(s), startTime; patched with the node's credentials, resourceVersion as precondition. A pod
  being deleted is stopped within its grace period, then deleted with grace 0 and a UID precondition.
- probes (pkg/kubelet/prober/worker.go, prober.go, pkg/probe/{tcp,http,exec}): readiness starts False,
  liveness and startup as upstream; tcpSocket, httpGet (http/https, TLS unchecked, 200-399, kube-probe
  User-Agent), exec inside the container (nsenter into its mount namespace and root); thresholds,
  initialDelaySeconds, periodSeconds, timeoutSeconds; liveness failure restarts the container.
- logs: CRI format (`<RFC3339Nano> <stream> <F|P> <line>`) in log_dir/<ns>_<pod>_<uid>/<container>/
  <restartCount>.log (pkg/kubelet/kuberuntime/helpers.go BuildContainerLogsDirectory, the CRI spec).

What it does not do (there is nothing here to do it with): no image or rootfs beyond the binary and the
files above; no cgroups (resources are not enforced), seccomp or AppArmor; no PID namespace (the
container sees the node's processes in /proc); no pod network: every pod shares the node's network
namespace (the kubelet stand-in runs inside it) and its podIP is the node IP, as with hostNetwork: there
is no CNI data plane here. No kubectl exec/attach/port-forward, no log rotation, no lifecycle hooks
(preStop/postStart are refused, not skipped), emptyDir medium Memory is a directory, only the volume
types above (others fail the mount, visibly). On start a runner kills the containers a previous runner
of the same state_dir left (by recorded PID and start time): kubelet would adopt them instead.

Python stand-ins (an argv prefix in `images`) run with the host's /usr and the repository mounted read-only
(their "image"): `python_standin(path)` builds such a prefix.

The modules (each docstring names the upstream files it follows):
- runner.py: the pods bound to the node handed to their workers, acting as the node (kubelet.go, pod_workers.go)
- worker.py: one pod's sync, restarts, stop and final delete (pod_workers.go, kuberuntime_manager.go)
- containers.py: what a container starts with: argv, user, capabilities, mounts, /etc/hosts
  (containerd WithProcessArgs and pkg/oci/spec.go, go-runner, kubelet_pods.go)
- envvars.py: the environment (kubelet_pods.go makeEnvironmentVariables, envvars.go, expansion)
- volumes.py: secret, configMap, projected (TokenRequest), downwardAPI, hostPath, emptyDir, CSI claims
  (pkg/volume/..., atomic_writer.go, token_manager.go)
- probes.py: readiness, liveness, startup (pkg/kubelet/prober, pkg/probe)
- status.py: phase, conditions, containerStatuses, patched as the node (status/generate.go, status_manager.go)
- logs.py: CRI log files; state.py: per-container records and the crash-loop back-off (flowcontrol backoff.go)
- images.py: where each upstream image has its program (their Dockerfiles); client.py: the API client
- enter.py: inside the container's namespaces: the root, the user, the capabilities, exec (runc)
"""

from __future__ import annotations

from tests.peers.k8s.pods.client import ApiError, KubeClient, parse_time, rfc3339
from tests.peers.k8s.pods.envvars import expand, quantity, service_env
from tests.peers.k8s.pods.errors import ConfigError, MountError
from tests.peers.k8s.pods.images import IMAGES, ImageConfig, binary_version, python_standin, split_image
from tests.peers.k8s.pods.runner import PodRunner
from tests.peers.k8s.pods.state import Backoff

__all__ = [
    "IMAGES",
    "ApiError",
    "Backoff",
    "ConfigError",
    "ImageConfig",
    "KubeClient",
    "MountError",
    "PodRunner",
    "binary_version",
    "expand",
    "parse_time",
    "python_standin",
    "quantity",
    "rfc3339",
    "service_env",
    "split_image",
]
