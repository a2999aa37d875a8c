"""The kubelet of the test nodes: the one stand-in for kubelet (a real kubelet needs a container
runtime, cgroups and images, none of which exist on the sshd test hosts). Everything around it
is real: kubeadm writes its configuration, the real control plane runs from kubeadm's static pod
manifests, the real API server authorizes it as a node (Node authorizer, NodeRestriction), the
real kube-controller-manager approves and signs its certificate, kwok reports its Node's and its
ordinary Pods' status.

Followed upstream (k8s.io/kubernetes v1.37.2 unless named otherwise):
- flags and files: the kubeadm drop-in of the kubelet package (10-kubeadm.conf: --bootstrap-kubeconfig
  /etc/kubernetes/bootstrap-kubelet.conf, --kubeconfig /etc/kubernetes/kubelet.conf, --config
  /var/lib/kubelet/config.yaml, $KUBELET_KUBEADM_ARGS from /var/lib/kubelet/kubeadm-flags.env,
  $KUBELET_EXTRA_ARGS from /etc/default/kubelet); an unknown flag is refused, as kubelet's pflag does.
- healthz: http://<healthzBindAddress>:<healthzPort>/healthz (kubeadm's wait-control-plane and
  kubelet-wait-bootstrap ask it: cmd/kubeadm/app/util/apiclient/wait.go WaitForKubelet).
- client certificate: cmd/kubelet/app/server.go buildKubeletClientConfig (rotateCertificates: true,
  as kubeadm configures it), pkg/kubelet/certificate/bootstrap/bootstrap.go LoadClientConfig,
  staging/src/k8s.io/client-go/util/certificate/certificate_manager.go (getCurrentCertificateOrBootstrap,
  rotateCerts), certificate_store.go (kubelet-client-<time>.pem + the kubelet-client-current.pem
  symlink, 0600), util/certificate/csr/csr.go. So: with a valid kubelet.conf carrying a certificate
  (the control plane after kubeadm init) that certificate goes into the store and is rotated out at
  once with a CSR made as the node ("selfnodeclient"); without a valid kubelet.conf and with
  bootstrap-kubelet.conf (a worker after kubeadm join) kubelet.conf is written pointing at the
  store, and a CSR is made with the bootstrap token. Either way: ECDSA P-256 key, CN
  system:node:<name>, O system:nodes, signer kubernetes.io/kube-apiserver-client-kubelet, usages
  digital signature + client auth, generateName csr-; the real kube-controller-manager approves
  and signs it (kubeadm made the RBAC bindings).
- the Node: pkg/kubelet/kubelet_node_status.go (initialNode, registerWithAPIServer,
  tryRegisterWithAPIServer, updateDefaultLabels) and pkg/kubelet/nodestatus/setters.go
  (NodeAddress, MachineInfo, NodeInfo): labels kubernetes.io/hostname, kubernetes.io/os,
  kubernetes.io/arch (and the beta.* pair); annotation volumes.kubernetes.io/controller-managed-attach-detach;
  with --cloud-provider=external the taint node.cloudprovider.kubernetes.io/uninitialized=true:NoSchedule
  at creation only, the alpha.kubernetes.io/provided-node-ip annotation when --node-ip is given, and
  addresses: Hostname only unless --node-ip (the cloud provider sets them); capacity from the machine,
  allocatable minus the default hard eviction thresholds (memory.available 100Mi, nodefs 10%).
  kwok is told the node by name (--manage-single-node; no kwok annotation is involved then).
- the node Lease: staging/src/k8s.io/component-helpers/apimachinery/lease/controller.go, with the
  kubelet's defaults (nodeLeaseDurationSeconds 40, renewed every quarter of it, owned by the Node).
- static pods: pkg/kubelet/config/file.go (every regular file of staticPodPath not starting with
  ".", one Pod each, re-read continually) and config/common.go (name "<name>-<node>", namespace
  default "default", UID an FNV-128a hash of the manifest's bytes, node and file (kubelet hashes
  the decoded Go object), so an edited manifest is a new pod whose containers replace the old
  ones; a file younger than half a second is read again later, as it may be half-written);
  pkg/kubelet/kuberuntime for the rest: restartPolicy
  Always with the crash-loop back-off (10 s doubling to 300 s, first restart immediate; reset after
  10 minutes of running), the grace period on stop (terminationGracePeriodSeconds, default 30),
  hostPath types (pkg/volume/hostpath: DirectoryOrCreate, Directory, FileOrCreate, File, ""),
  logs /var/log/pods/<ns>_<pod>_<uid>/<container>/<restartCount>.log (pkg/kubelet/kuberuntime/
  kuberuntime_container.go BuildContainerLogsDirectory), with the previous container's log kept.
  The translation: an image is a binary built by osk8s_tasks/embedded/build.py, and only these:
  registry.k8s.io/{kube-apiserver,kube-controller-manager,kube-scheduler}:<the built Kubernetes
  version> and registry.k8s.io/etcd:<the built etcd version>-<n>; any other image, another tag, a
  command[0] that is not the binary, a pod without hostNetwork or a non-hostPath volume is refused
  (logged in kubelet.log, as kubelet logs ErrImagePull and friends). The process runs with the
  container's command + args exactly; mountPath != hostPath and readOnly mounts get a private
  mount namespace; env is the container's (plus PATH, HOSTNAME, HOME). Containers run under
  tests/peers/k8s/runtime.py and survive a kubelet restart (kubeadm's kubelet-finalize restarts
  the kubelet while the control plane runs); on stop, the kubelet stops only its own parts.
- node and pod status: kwok (tests/peers/k8s/kwok.py), one process for this node only, reaching the
  API as this node through kwok.NodeScopedProxy (kwok's start-up lists all Nodes, which the Node
  authorizer refuses a node); kwok leaves alone the mirror pods and the pod runner's pods.
- pods of the programs built here: handed to the pod runner (POD RUNNER HOOK below).
- the cinder-csi node plugin pod: not run (node-driver-registrar cannot be built, the node service needs
  instance metadata and mounts); its registration with the kubelet (pluginmanager, nodeinfomanager:
  CSINode, the nodeid annotation, topology labels) is done by tests/peers/k8s/csinode.py, which says why.
- mirror pods: pkg/kubelet/pod/mirror_client.go (the static pod with annotations kubernetes.io/config.
  {hash,mirror,seen,source}, spec.nodeName, the NoExecute toleration, owned by the Node, as
  NodeRestriction requires), recreated when outdated, orphans deleted (grace 0, UID precondition);
  their status is the static pod's real containers (pkg/kubelet/status), patched as the node. kubeadm
  reads them: `kubeadm reset` finds etcd's client URL in the etcd mirror pod's annotation
  (cmd/kubeadm/app/util/etcd/etcd.go getRawEtcdEndpointsFromPodAnnotation; without it, a minute of
  retries and "Failed to remove etcd member").
- the HTTPS server on 10250 for `kubectl logs` (pods/log): tests/peers/k8s/kubeletserver.py.

Not done (no test needs them yet): probes for static pods (a running container counts as ready),
resource limits (no cgroups), seccomp, exec/attach/port-forward through 10250, image pulls,
pod sandboxes, volumes other than hostPath for static pods, the kubelet's
node status updates beyond registration (kwok's stages do them).

    python -m tests.peers.k8s.kubelet run [kubelet flags]    # the daemon (what /usr/local/bin/kubelet runs)
    python -m tests.peers.k8s.kubelet start|stop|restart|status  # the service (the systemctl stand-in)

The modules: flags.py (flags, config, the node's state directory), certs.py (client certificate),
node.py (Node, Lease), staticpods.py (static and mirror pods), daemon.py (the loop, healthz, kwok,
the pod runner hook), service.py (the systemd unit, as the systemctl stand-in calls it); the HTTPS
server on 10250 is tests/peers/k8s/kubeletserver.py, the pod runner tests/peers/k8s/pods/.
"""

from __future__ import annotations

from tests.peers.k8s.kubelet.daemon import POD_SYNC_SECONDS, RUNNER_IMAGES, Kubelet
from tests.peers.k8s.kubelet.flags import STATE, Flags, load_config, log, parse_flags, parse_taints, peers
from tests.peers.k8s.kubelet.node import initial_node, register
from tests.peers.k8s.kubelet.service import Status, main, start, status, stop, unit_argv
from tests.peers.k8s.kubelet.staticpods import STATIC_IMAGES, StaticPod, StaticPods, container_argv

__all__ = [
    "POD_SYNC_SECONDS",
    "RUNNER_IMAGES",
    "STATE",
    "STATIC_IMAGES",
    "Flags",
    "Kubelet",
    "StaticPod",
    "StaticPods",
    "Status",
    "container_argv",
    "initial_node",
    "load_config",
    "log",
    "main",
    "parse_flags",
    "parse_taints",
    "peers",
    "register",
    "start",
    "status",
    "stop",
    "unit_argv",
]
