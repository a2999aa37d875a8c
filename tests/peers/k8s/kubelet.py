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
  ones; a file younger than half a second is read again later, as it may be half-written); pkg/kubelet/kuberuntime for the rest: restartPolicy
  Always with the crash-loop back-off (10 s doubling to 300 s, first restart immediate; reset after
  10 minutes of running), the grace period on stop (terminationGracePeriodSeconds, default 30),
  hostPath types (pkg/volume/hostpath: DirectoryOrCreate, Directory, FileOrCreate, File, ""),
  logs /var/log/pods/<ns>_<pod>_<uid>/<container>/<restartCount>.log (pkg/kubelet/kuberuntime/
  kuberuntime_container.go BuildContainerLogsDirectory), with the previous container's log kept.
  The translation: an image is a binary built by tests/peers/k8s/build.py, and only these:
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
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.peers.k8s import kwok as kwokmod
from tests.peers.k8s.apiclient import ApiError, Client, Kubeconfig
from tests.peers.k8s.runtime import Container, Runtime

STATE = Path(os.environ.get("OSK8S_STANDIN_STATE", "/var/lib/osk8s-standin"))
LAUNCHER = "/usr/local/bin/kubelet"
# the kubeadm drop-in of the kubelet package (10-kubeadm.conf), as the systemd unit runs it
UNIT_KUBECONFIG_ARGS = ["--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
                        "--kubeconfig=/etc/kubernetes/kubelet.conf"]
UNIT_CONFIG_ARGS = ["--config=/var/lib/kubelet/config.yaml"]
UNIT_ENV_FILES = ["/var/lib/kubelet/kubeadm-flags.env", "/etc/default/kubelet"]

# static pods: image repository -> binary (the only translation), and which version it must carry
STATIC_IMAGES = {"registry.k8s.io/kube-apiserver": "kube-apiserver",
                 "registry.k8s.io/kube-controller-manager": "kube-controller-manager",
                 "registry.k8s.io/kube-scheduler": "kube-scheduler",
                 "registry.k8s.io/etcd": "etcd"}

# ---- POD RUNNER HOOK ------------------------------------------------------------------------------
# Pods with a container (or init container) whose image repository is a key here are left to the
# pod runner (tests/peers/k8s/pods/, written separately), never to kwok: kwok's pod stages skip
# them (kwok.RUNNER_SELECTOR_KEY), so kwok neither marks them Running nor deletes them. The runner
# takes a pod when every one of its images is mapped (and the tag is the binary's version); a pod it
# does not take stays Pending, with its reason in kubelet.log, rather than being faked Running. The
# contract, as this kubelet calls it:
#   runner = pods.PodRunner(<node name>, <node IP>, Path(<--kubeconfig, i.e. /etc/kubernetes/kubelet.conf>),
#                           {image repository: Path of the built binary}, STATE / "pods",
#                           log_dir=Path("/var/log/pods"))
#                       once the Node is registered (the kubeconfig then holds the node's certificate);
#   runner.sync(pods)   every POD_SYNC_SECONDS with every Pod bound to this node (the API's list with
#                       fieldSelector spec.nodeName=<node>, as the Node authorizer allows), as JSON dicts,
#                       deleted ones included (metadata.deletionTimestamp set); it picks its own
#                       (runner.explain(pod) == "") and owns their status and final deletion;
#   runner.stop()       when this kubelet stops: its containers stop with it (unlike the static pods').
# Binaries not built are left out of the map (their pods then stay Pending).
# A value is a built binary's name, or ("standin", <file of this repository>): a Python stand-in the
# runner starts with pods.python_standin (kube-proxy: proxy.py; livenessprobe: livenessprobe.py, which
# cannot be built, see README.md).
RUNNER_IMAGES = {
    "registry.k8s.io/provider-os/k8s-keystone-auth": "k8s-keystone-auth",
    "registry.k8s.io/provider-os/openstack-cloud-controller-manager": "openstack-cloud-controller-manager",
    "registry.k8s.io/provider-os/cinder-csi-plugin": "cinder-csi-plugin",
    "registry.k8s.io/provider-os/octavia-ingress-controller": "octavia-ingress-controller",
    "registry.k8s.io/sig-storage/csi-provisioner": "csi-provisioner",
    "registry.k8s.io/sig-storage/csi-attacher": "csi-attacher",
    "registry.k8s.io/sig-storage/csi-resizer": "csi-resizer",
    "registry.k8s.io/e2e-test-images/busybox": "busybox",  # Debian's busybox (pods.IMAGES says how)
    "registry.k8s.io/kube-proxy": ("standin", "tests/peers/k8s/proxy.py"),
    "registry.k8s.io/sig-storage/livenessprobe": ("standin", "tests/peers/k8s/livenessprobe.py"),
}
POD_SYNC_SECONDS = 2.0
# ---------------------------------------------------------------------------------------------------

CRASH_BACKOFF_INITIAL, CRASH_BACKOFF_MAX, CRASH_BACKOFF_RESET = 10.0, 300.0, 600.0
LEASE_DURATION = 40
SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"


def log(msg: str) -> None:
    t = time.time()
    print(f"{time.strftime('%m%d %H:%M:%S', time.localtime(t))}.{int(t % 1 * 1e6):06d} kubelet-standin] {msg}",
          flush=True)


def peers(state: Path = STATE) -> dict[str, str]:
    """KEY=value lines node_hosts wrote: the real binaries, their versions, the project's Python."""
    out = {}
    for line in (state / "peers.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = shlex.split(v)[0] if v.strip() else ""
    return out


# ---- flags and configuration ------------------------------------------------------------------------

@dataclass
class Flags:
    kubeconfig: str = ""
    bootstrap_kubeconfig: str = ""
    config: str = ""
    config_dir: str = ""
    hostname_override: str = ""
    node_ip: str = ""
    cloud_provider: str = ""
    register_with_taints: str = ""
    node_labels: str = ""
    cert_dir: str = "/var/lib/kubelet/pki"
    root_dir: str = "/var/lib/kubelet"
    container_runtime_endpoint: str = ""
    pod_infra_container_image: str = ""
    v: str = ""


def parse_flags(argv: list[str]) -> Flags:
    """kubelet's flags as pflag takes them (--name=value or --name value); unknown ones refused."""
    f, known = Flags(), {k.replace("_", "-") for k in Flags.__dataclass_fields__}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--"):
            raise SystemExit(f"kubelet: unexpected argument {a!r}")
        name, eq, value = a[2:].partition("=")
        if name not in known:
            raise SystemExit(f"kubelet: unknown flag: --{name}")
        if not eq:
            i += 1
            if i >= len(argv):
                raise SystemExit(f"kubelet: flag needs an argument: --{name}")
            value = argv[i]
        setattr(f, name.replace("-", "_"), value)
        i += 1
    return f


def load_config(path: str, config_dir: str = "") -> dict:
    """KubeletConfiguration (kubelet.config.k8s.io/v1beta1), drop-ins of --config-dir merged over it."""
    import yaml

    doc = yaml.safe_load(Path(path).read_text()) or {}
    if doc.get("kind") != "KubeletConfiguration" or doc.get("apiVersion") != "kubelet.config.k8s.io/v1beta1":
        raise ValueError(f"{path}: not a kubelet.config.k8s.io/v1beta1 KubeletConfiguration")
    if config_dir and Path(config_dir).is_dir():
        for drop in sorted(Path(config_dir).glob("*.conf")):
            doc.update(yaml.safe_load(drop.read_text()) or {})
    return doc


def parse_taints(text: str) -> list[dict]:
    """--register-with-taints: key=value:Effect,key:Effect."""
    out = []
    for t in filter(None, text.split(",")):
        kv, _, effect = t.rpartition(":")
        key, eq, value = kv.partition("=")
        out.append({"key": key, "effect": effect, **({"value": value} if eq else {})})
    return out


# ---- client certificate ---------------------------------------------------------------------------

def _x509():
    from cryptography import x509

    return x509


def cert_valid(pem: bytes | None) -> bool:
    """Parses as certificates, none of them expired (bootstrap.go isClientConfigStillValid)."""
    if not pem:
        return False
    from datetime import datetime, timezone

    try:
        certs = _x509().load_pem_x509_certificates(pem)
    except ValueError:
        return False
    now = datetime.now(timezone.utc)
    return bool(certs) and all(c.not_valid_after_utc > now for c in certs)


def kubeconfig_valid(path: str) -> bool:
    if not path or not os.path.exists(path):
        return False
    try:
        kc = Kubeconfig.load(path)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return cert_valid(kc.client_cert_pem()) and kc.client_key_pem() is not None


class CertStore:
    """client-go util/certificate/certificate_store.go, pair file prefix "kubelet-client"."""

    def __init__(self, cert_dir: str, prefix: str = "kubelet-client"):
        self.dir, self.prefix = Path(cert_dir), prefix

    @property
    def current_path(self) -> Path:
        return self.dir / f"{self.prefix}-current.pem"

    def current(self) -> bytes | None:
        """The current pair (PEM: certificates then key) when it is valid."""
        try:
            data = self.current_path.read_bytes()
        except OSError:
            return None
        return data if cert_valid(data) and b"PRIVATE KEY" in data else None

    def update(self, cert_pem: bytes, key_pem: bytes) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        path = self.dir / f"{self.prefix}-{time.strftime('%Y-%m-%d-%H-%M-%S')}.pem"
        fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert_pem.rstrip(b"\n") + b"\n" + key_pem.rstrip(b"\n") + b"\n")
        tmp = self.dir / f".{self.prefix}-current.pem.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(path, tmp)
        os.replace(tmp, self.current_path)
        return path


def write_kubeconfig_from_bootstrapping(bootstrap: Kubeconfig, path: str, pem_path: str, ca_file: str | None) -> None:
    """bootstrap.go writeKubeconfigFromBootstrapping: the bootstrap server and CA, the store's pair."""
    import yaml

    cluster = {"server": bootstrap.server}
    if ca_file:
        cluster["certificate-authority"] = ca_file
    else:
        cluster["certificate-authority-data"] = base64.b64encode(bootstrap.ca_pem or b"").decode()
    doc = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": "default-cluster", "cluster": cluster}],
           "contexts": [{"name": "default-context", "context": {"cluster": "default-cluster", "namespace": "default",
                                                                "user": "default-auth"}}],
           "current-context": "default-context",
           "users": [{"name": "default-auth", "user": {"client-certificate": pem_path, "client-key": pem_path}}]}
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False))
    os.chmod(path, 0o600)


def new_key_and_csr(node: str) -> tuple[bytes, bytes]:
    """ECDSA P-256 key (SEC1 PEM, as keyutil writes it) and a CSR for the node's client identity."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    x509 = _x509()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def request_client_certificate(client: Client, node: str, stopping: threading.Event, timeout: float = 900) -> tuple[bytes, bytes]:
    """One CSR as certificate_manager.go rotateCerts makes it; waits until it is issued."""
    key_pem, csr_pem = new_key_and_csr(node)
    body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"generateName": "csr-"},
            "spec": {"request": base64.b64encode(csr_pem).decode(), "signerName": SIGNER,
                     "usages": ["digital signature", "client auth"]}}
    created = client.request("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", body)
    name, uid = created["metadata"]["name"], created["metadata"]["uid"]
    log(f"certificate signing request {name} created for system:node:{node} (signer {SIGNER})")
    deadline = time.monotonic() + timeout
    while not stopping.is_set() and time.monotonic() < deadline:
        csr = client.request("GET", f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}")
        if csr["metadata"]["uid"] != uid:
            raise RuntimeError(f"csr {name} was replaced")
        for cond in csr.get("status", {}).get("conditions") or []:
            if cond["type"] in ("Denied", "Failed"):
                raise RuntimeError(f"csr {name} {cond['type']}: {cond.get('reason')}: {cond.get('message')}")
        if csr.get("status", {}).get("certificate"):
            approved = [c for c in csr["status"].get("conditions") or [] if c["type"] == "Approved"]
            log(f"csr {name} approved ({approved[0].get('reason') if approved else '?'}) and issued")
            return base64.b64decode(csr["status"]["certificate"]), key_pem
        stopping.wait(1)
    raise TimeoutError(f"csr {name} not issued in time")


# ---- the node -------------------------------------------------------------------------------------

def goarch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}.get(m, m)


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def machine_status(root_dir: str, max_pods: int, kubelet_version: str) -> dict:
    """capacity/allocatable/nodeInfo as nodestatus.MachineInfo and NodeInfo set them."""
    mem_kib = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal:"))
    st = os.statvfs(root_dir)
    disk_kib = st.f_blocks * st.f_frsize // 1024
    capacity = {"cpu": str(os.cpu_count()), "memory": f"{mem_kib}Ki", "pods": str(max_pods),
                "ephemeral-storage": f"{disk_kib}Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
    allocatable = dict(capacity, memory=f"{mem_kib - 100 * 1024}Ki", **{"ephemeral-storage": str(disk_kib * 1024 * 9 // 10)})
    os_release = dict(ln.split("=", 1) for ln in _read("/etc/os-release").splitlines() if "=" in ln)
    info = {"machineID": _read("/etc/machine-id"), "systemUUID": _read("/sys/class/dmi/id/product_uuid"),
            "bootID": _read("/proc/sys/kernel/random/boot_id"), "kernelVersion": platform.release(),
            "osImage": os_release.get("PRETTY_NAME", "").strip('"'),
            "containerRuntimeVersion": "osk8s-runtime-standin://1", "kubeletVersion": kubelet_version,
            "operatingSystem": "linux", "architecture": goarch()}
    return {"capacity": capacity, "allocatable": allocatable, "nodeInfo": info,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}


def initial_node(name: str, hostname: str, flags: Flags, config: dict, kubelet_version: str) -> dict:
    arch = goarch()
    labels = {"kubernetes.io/hostname": hostname, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
              "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch}
    for kv in filter(None, flags.node_labels.split(",")):
        k, _, v = kv.partition("=")
        labels[k] = v
    for k, v in (config.get("nodeLabels") or {}).items():
        labels[k] = v
    taints = parse_taints(flags.register_with_taints) + list(config.get("registerWithTaints") or [])
    external = flags.cloud_provider == "external"
    if external:
        taints.append({"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"})
    annotations = {"volumes.kubernetes.io/controller-managed-attach-detach": "true"}
    node_ip = flags.node_ip
    if external and node_ip:
        annotations["alpha.kubernetes.io/provided-node-ip"] = node_ip
    status = machine_status(flags.root_dir, int(config.get("maxPods") or 110), kubelet_version)
    if node_ip:
        status["addresses"] = [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": hostname}]
    elif external:  # nodestatus.NodeAddress: wait for the cloud provider to set them
        status["addresses"] = [{"type": "Hostname", "address": hostname}]
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {}, "status": status}
    if taints:
        node["spec"]["taints"] = taints
    return node


def register(client: Client, node: dict) -> dict:
    """tryRegisterWithAPIServer: create; if it exists, reconcile the default labels (never taints)."""
    try:
        return client.request("POST", "/api/v1/nodes", node)
    except ApiError as exc:
        if exc.status != 409:
            raise
    name = node["metadata"]["name"]
    existing = client.request("GET", f"/api/v1/nodes/{name}")
    want = {k: v for k, v in node["metadata"]["labels"].items()
            if k in ("kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch", "beta.kubernetes.io/os",
                     "beta.kubernetes.io/arch") and existing["metadata"].get("labels", {}).get(k) != v}
    if want:
        existing = client.request("PATCH", f"/api/v1/nodes/{name}", {"metadata": {"labels": want}},
                                  content_type="application/strategic-merge-patch+json")
    return existing


def rfc3339nano(t: float | None = None) -> str:
    ns = time.time_ns() if t is None else int(t * 1e9)
    sec, frac = divmod(ns, 1_000_000_000)
    f = f"{frac:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + (f".{f}" if f else "") + "Z"


def rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def micro_time() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def renew_lease(client: Client, name: str, node_uid: str) -> None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
    lease = client.request("GET", path, ok_missing=True)
    owner = [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}]
    if lease is None:
        client.request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease", "ownerReferences": owner},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION, "renewTime": micro_time()}})
        return
    lease["spec"].update(holderIdentity=name, leaseDurationSeconds=LEASE_DURATION, renewTime=micro_time())
    if not lease["metadata"].get("ownerReferences"):
        lease["metadata"]["ownerReferences"] = owner
    client.request("PUT", path, lease)


# ---- static pods ----------------------------------------------------------------------------------

@dataclass
class StaticPod:
    file: str
    uid: str
    name: str
    namespace: str
    spec: dict
    doc: dict = field(default_factory=dict)
    seen: str = ""


def fnv128a(data: bytes) -> str:
    """hash/fnv New128a, hex (the hasher config/common.go uses for a static pod's UID)."""
    h = 0x6C62272E07BB014262B821756295C58D
    for b in data:
        h = ((h ^ b) * 0x0000000001000000000000000000013B) & ((1 << 128) - 1)
    return f"{h:032x}"


def read_static_pods(directory: str, node: str) -> dict[str, StaticPod]:
    """config/file.go + common.go: {uid: pod} of the manifests in `directory`."""
    import yaml

    out = {}
    d = Path(directory)
    if not d.is_dir():
        return out
    for p in sorted(d.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        try:
            raw = p.read_bytes()
            doc = yaml.safe_load(raw)
        except (OSError, yaml.YAMLError) as exc:
            log(f"static pod {p}: cannot read: {exc}")
            continue
        if not isinstance(doc, dict) or doc.get("kind") != "Pod" or doc.get("apiVersion") != "v1":
            log(f"static pod {p}: not a v1 Pod: skipped")
            continue
        meta = doc.get("metadata") or {}
        # kubelet hashes the decoded Pod (DeepHashObject, a spew dump of the Go struct, which Python
        # cannot reproduce); the file's bytes stand in for it: same file, same UID; any edit, a new one
        uid = meta.get("uid") or fnv128a(raw + f"host:{node}".encode() + f"file:{p}".encode())
        out[uid] = StaticPod(str(p), uid, f"{meta.get('name', '')}-{node}", meta.get("namespace") or "default",
                             doc.get("spec") or {}, doc, rfc3339nano())
    return out


def container_argv(pod: StaticPod, container: dict, binaries: dict[str, str], versions: dict[str, str]) -> list[str]:
    """The process for a container: the built binary for its image, with command[1:] + args."""
    image = container.get("image", "")
    repo = kwokmod.image_repository(image)
    tag = image[len(repo) + 1:] if image.startswith(repo + ":") else ""
    binary = STATIC_IMAGES.get(repo)
    if binary is None:
        raise ValueError(f"image {image!r}: no such image here (only {', '.join(sorted(STATIC_IMAGES))})")
    want = versions["etcd"] if binary == "etcd" else versions["kubernetes"]
    have = tag.split("-", 1)[0] if binary == "etcd" else tag
    if have != want:
        raise ValueError(f"image {image!r}: tag {tag!r} is not the built {binary} {want!r}")
    command = list(container.get("command") or [])
    if command and os.path.basename(command[0]) != binary:
        raise ValueError(f"container {container['name']}: command {command[0]!r} is not {binary} (image {image})")
    return [binaries[binary], *command[1:], *(container.get("args") or [])]


def prepare_volumes(pod: StaticPod, container: dict) -> list[tuple[str, str, bool]]:
    """Check/create the hostPath volumes the container mounts; [(hostPath, mountPath, readOnly)]."""
    volumes = {v["name"]: v for v in pod.spec.get("volumes") or []}
    mounts = []
    for m in container.get("volumeMounts") or []:
        v = volumes.get(m["name"])
        if v is None:
            raise ValueError(f"volumeMount {m['name']!r}: no such volume")
        hp = v.get("hostPath")
        if hp is None:
            raise ValueError(f"volume {m['name']!r}: only hostPath volumes are supported for static pods here")
        path, kind = hp["path"], hp.get("type") or ""
        if kind == "DirectoryOrCreate" and not os.path.exists(path):
            os.makedirs(path, mode=0o755, exist_ok=True)
        elif kind == "FileOrCreate" and not os.path.exists(path):
            Path(path).touch(mode=0o644)
        elif kind == "Directory" and not os.path.isdir(path):
            raise ValueError(f"hostPath type check failed: {path} is not a directory")
        elif kind == "File" and not os.path.isfile(path):
            raise ValueError(f"hostPath type check failed: {path} is not a file")
        elif kind not in ("", "DirectoryOrCreate", "FileOrCreate", "Directory", "File"):
            raise ValueError(f"hostPath type {kind!r} is not supported here")
        mounts.append((path, m["mountPath"], bool(m.get("readOnly"))))
    return mounts


def with_mounts(argv: list[str], mounts: list[tuple[str, str, bool]]) -> list[str]:
    """Run argv in a private mount namespace when a mount is elsewhere or read-only."""
    todo = [(h, m, ro) for h, m, ro in mounts if h != m or ro]
    if not todo:
        return argv
    script, args = ["set -e"], []
    for i, (h, m, ro) in enumerate(todo):
        args += [h, m]
        a, b = f'"${{{2 * i + 1}}}"', f'"${{{2 * i + 2}}}"'
        script.append(f"[ -e {b} ] || {{ if [ -d {a} ]; then mkdir -p {b}; else mkdir -p \"$(dirname {b})\"; touch {b}; fi; }}")
        script.append(f"mount --bind {a} {b}")
        if ro:
            script.append(f"mount -o remount,bind,ro {b}")
    script.append(f"shift {2 * len(todo)}; exec \"$@\"")
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", "; ".join(script), "sh", *args, *argv]


def pod_log_dir(pod: StaticPod) -> Path:
    return Path("/var/log/pods") / f"{pod.namespace}_{pod.name}_{pod.uid}"


class StaticPods:
    """Keeps the containers of the manifests in staticPodPath running, and only those."""

    def __init__(self, runtime: Runtime, node: str, binaries: dict[str, str], versions: dict[str, str]):
        self.runtime, self.node, self.binaries, self.versions = runtime, node, binaries, versions
        self.backoff: dict[tuple[str, str], dict] = {}  # (uid, container) -> failures, not_before, seen
        self.refused: dict[tuple[str, str], tuple[str, float]] = {}  # -> (why, retry at)
        self.by_file: dict[str, StaticPod] = {}
        self.removed_logs: dict[str, float] = {}  # log dir -> when its pod went away (GC after a minute)
        self.seen: dict[str, str] = {}  # uid -> kubernetes.io/config.seen
        self.current: dict[str, StaticPod] = {}
        self.reported: dict[str, str] = {}  # mirror pod uid -> the status last patched (JSON)
        self.transitions: dict[tuple[str, str], tuple[str, str]] = {}  # (uid, condition) -> (status, time)

    def desired(self, directory: str) -> dict[str, StaticPod]:
        """The manifests, except one written less than half a second ago: its previous version
        stays wanted until it is complete (kubeadm and `install` write in place, not by rename)."""
        now = time.time()
        out = {}
        for uid, pod in read_static_pods(directory, self.node).items():
            try:
                fresh = now - os.stat(pod.file).st_mtime < 0.5
            except OSError:
                continue
            if fresh:
                prev = self.by_file.get(pod.file)
                if prev is not None:
                    out[prev.uid] = prev
                continue
            pod.seen = self.seen.setdefault(uid, pod.seen)
            out[uid] = pod
        self.by_file = {p.file: p for p in out.values()}
        return out

    def sync(self, directory: str) -> dict:
        desired = self.desired(directory)
        containers = [c for c in self.runtime.list() if c.labels.get("source") == "static"]
        by_key: dict[tuple[str, str], list[Container]] = {}
        for c in containers:
            by_key.setdefault((c.pod_uid, c.name), []).append(c)
        # pods no longer wanted (manifest removed or changed): stop their containers first
        for c in containers:
            if c.pod_uid not in desired:
                if c.running:
                    log(f"static pod {c.namespace}/{c.pod} ({c.pod_uid[:8]}) is gone from {directory}: stopping {c.name}")
                    self.runtime.stop(c)
                self.runtime.remove(c)
                self.removed_logs.setdefault(str(Path(c.log_path).parent.parent), time.time())
        now = time.time()
        for d, since in list(self.removed_logs.items()):  # kuberuntime_gc.go evictPodLogsDirectories
            if now - since > 60 and not any(str(pod_log_dir(p)) == d for p in desired.values()):
                subprocess.run(["rm", "-rf", "--one-file-system", d], check=False)
                del self.removed_logs[d]
        for pod in desired.values():
            for container in pod.spec.get("containers") or []:
                self._sync_container(pod, container, sorted(by_key.get((pod.uid, container["name"]), []),
                                                             key=lambda c: c.restart_count))
        self.current = desired
        return {p.uid: {"name": p.name, "namespace": p.namespace, "file": p.file} for p in desired.values()}

    # -- mirror pods: pkg/kubelet/pod/mirror_client.go, kubelet.go syncPod and deleteOrphanedMirrorPods,
    #    pkg/kubelet/status (the static pod's status reported on its mirror pod)
    def mirror_sync(self, client: Client, node: dict, api_pods: list[dict]) -> None:
        name_, node_uid = node["metadata"]["name"], node["metadata"]["uid"]
        node_ips = [a["address"] for a in node.get("status", {}).get("addresses") or [] if a["type"] == "InternalIP"]
        wanted = {(p.namespace, p.name): p for p in self.current.values()}
        mirrors = {}
        for m in api_pods:
            meta = m["metadata"]
            if "kubernetes.io/config.mirror" not in (meta.get("annotations") or {}):
                continue
            pod = wanted.get((meta["namespace"], meta["name"]))
            if pod is None or meta["annotations"]["kubernetes.io/config.mirror"] != pod.uid or meta.get("deletionTimestamp"):
                log(f"deleting mirror pod {meta['namespace']}/{meta['name']} ({'outdated' if pod else 'orphaned'})")
                try:
                    client.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                                   {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                    "preconditions": {"uid": meta["uid"]}}, ok_missing=True)
                except ApiError as exc:
                    if exc.status != 409:
                        raise
                self.reported.pop(meta["uid"], None)
                continue
            mirrors[(meta["namespace"], meta["name"])] = m
        containers = [c for c in self.runtime.list() if c.labels.get("source") == "static"]
        for key, pod in wanted.items():
            m = mirrors.get(key)
            if m is None:
                try:
                    client.request("POST", f"/api/v1/namespaces/{pod.namespace}/pods", self.mirror_pod(pod, name_, node_uid))
                    log(f"mirror pod {pod.namespace}/{pod.name} created")
                except ApiError as exc:
                    if exc.status != 409:
                        log(f"failed creating mirror pod {pod.namespace}/{pod.name}: {exc}")
                continue
            status = self.pod_status(pod, [c for c in containers if c.pod_uid == pod.uid], node_ips)
            text = json.dumps(status, sort_keys=True)
            if self.reported.get(m["metadata"]["uid"]) != text:
                client.request("PATCH", f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/status",
                               {"metadata": {"uid": m["metadata"]["uid"]}, "status": status},
                               content_type="application/strategic-merge-patch+json")
                self.reported[m["metadata"]["uid"]] = text

    def mirror_pod(self, pod: StaticPod, node: str, node_uid: str) -> dict:
        doc = json.loads(json.dumps(pod.doc))
        doc.pop("status", None)
        meta = doc.setdefault("metadata", {})
        for k in ("uid", "resourceVersion", "generation", "creationTimestamp"):
            meta.pop(k, None)
        meta.update(name=pod.name, namespace=pod.namespace)
        meta.setdefault("annotations", {}).update({
            "kubernetes.io/config.hash": pod.uid, "kubernetes.io/config.mirror": pod.uid,
            "kubernetes.io/config.seen": pod.seen, "kubernetes.io/config.source": "file"})
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid, "controller": True}]
        spec = doc.setdefault("spec", {})
        spec["nodeName"] = node
        tolerations = spec.setdefault("tolerations", [])
        if not any(t.get("operator") == "Exists" and t.get("effect") == "NoExecute" and not t.get("key") for t in tolerations):
            tolerations.append({"operator": "Exists", "effect": "NoExecute"})
        return doc

    def pod_status(self, pod: StaticPod, containers: list[Container], node_ips: list[str]) -> dict:
        """What the status manager reports for a static pod (generateAPIPodStatus, without probes:
        a running container counts as ready)."""
        history: dict[str, list[Container]] = {}
        for c in sorted(containers, key=lambda c: c.restart_count):
            history.setdefault(c.name, []).append(c)
        statuses, ready, running = [], True, False
        for spec_c in pod.spec.get("containers") or []:
            name = spec_c["name"]
            runs = history.get(name, [])
            st = {"name": name, "image": spec_c.get("image", ""), "imageID": "", "ready": False, "started": False,
                  "restartCount": runs[-1].restart_count if runs else 0}
            if not runs:
                refused = self.refused.get((pod.uid, name))
                st["state"] = {"waiting": {"reason": "CreateContainerError", "message": refused[0]} if refused
                               else {"reason": "ContainerCreating"}}
            else:
                c = runs[-1]
                st["containerID"] = f"osk8s-runtime-standin://{c.id}"
                if c.running:
                    st["state"] = {"running": {"startedAt": rfc3339(c.started_at)}}
                    st.update(ready=True, started=True)
                    running = True
                else:
                    st["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message":
                                   f"back-off restarting failed container {name} in pod {pod.name}_{pod.namespace}({pod.uid})"}}
                prev = [r for r in runs if not r.running]
                if prev:
                    e = prev[-1].exit or {}
                    st["lastState"] = {"terminated": {"exitCode": e.get("exitCode", 255), "reason": "Completed" if e.get("exitCode") == 0
                                                      else "Error", "startedAt": rfc3339(prev[-1].started_at),
                                                      "finishedAt": e.get("finishedAt") or rfc3339(time.time()),
                                                      "containerID": f"osk8s-runtime-standin://{prev[-1].id}"}}
            ready = ready and st["ready"]
            statuses.append(st)

        def cond(kind: str, value: bool) -> dict:
            v = "True" if value else "False"
            old = self.transitions.get((pod.uid, kind))
            if old is None or old[0] != v:
                old = self.transitions[(pod.uid, kind)] = (v, rfc3339(time.time()))
            return {"type": kind, "status": v, "lastTransitionTime": old[1]}

        status = {"phase": "Running" if running else "Pending", "startTime": pod.seen.split(".")[0].rstrip("Z") + "Z",
                  "conditions": [cond("PodReadyToStartContainers", True), cond("Initialized", True),
                                 cond("Ready", ready), cond("ContainersReady", ready), cond("PodScheduled", True)],
                  "containerStatuses": statuses}
        if node_ips:  # hostNetwork: the pod's IPs are the node's
            status.update(hostIP=node_ips[0], hostIPs=[{"ip": i} for i in node_ips],
                          podIP=node_ips[0], podIPs=[{"ip": i} for i in node_ips])
        return status

    def _sync_container(self, pod: StaticPod, container: dict, history: list[Container]) -> None:
        key = (pod.uid, container["name"])
        latest = history[-1] if history else None
        if latest and latest.running:
            return
        now = time.time()
        if key in self.refused and now < self.refused[key][1]:
            return
        if latest is not None:  # it exited: restartPolicy Always, with the crash-loop back-off
            entry = self.backoff.get(key)
            if entry is None or entry["seen"] != latest.id:
                failures = entry["failures"] if entry else 0
                if now - latest.started_at > CRASH_BACKOFF_RESET:
                    failures = 0
                delay = 0.0 if failures == 0 else min(CRASH_BACKOFF_INITIAL * 2 ** (failures - 1), CRASH_BACKOFF_MAX)
                entry = {"failures": failures + 1, "not_before": now + delay, "seen": latest.id}
                self.backoff[key] = entry
                log(f"{pod.namespace}/{pod.name} {container['name']} exited ({latest.exit}); "
                    f"restart {latest.restart_count + 1} in {delay:.0f}s")
            if now < entry["not_before"]:
                return
        restart = latest.restart_count + 1 if latest else 0
        try:
            if pod.spec.get("hostNetwork") is not True:
                raise ValueError("pod is not hostNetwork: a pod network needs a CNI and a sandbox, not here")
            argv = container_argv(pod, container, self.binaries, self.versions)
            argv = with_mounts(argv, prepare_volumes(pod, container))
            env = list(container.get("env") or [])
            if any("value" not in e for e in env):
                raise ValueError("env valueFrom is not supported for static pods here")
        except (ValueError, KeyError, OSError) as exc:
            if self.refused.get(key, ("",))[0] != str(exc):
                log(f"static pod {pod.namespace}/{pod.name} ({pod.file}): container {container['name']} refused: {exc}")
            self.refused[key] = (str(exc), now + CRASH_BACKOFF_INITIAL)
            return
        self.refused.pop(key, None)
        # keep the previous container (its log is `kubectl logs --previous`), remove older ones with their logs
        for old in history[:-1]:
            self.runtime.remove(old)
            Path(old.log_path).unlink(missing_ok=True)
        log_path = pod_log_dir(pod) / container["name"] / f"{restart}.log"
        grace = float(pod.spec.get("terminationGracePeriodSeconds") or 30)
        env_prefix = ["env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                      f"HOSTNAME={platform.node()}", "HOME=/root", *[f"{e['name']}={e['value']}" for e in env]]
        c = self.runtime.run(pod_uid=pod.uid, pod=pod.name, namespace=pod.namespace, name=container["name"],
                             restart_count=restart, argv=env_prefix + argv, log_path=str(log_path), grace=grace,
                             labels={"source": "static", "file": pod.file})
        log(f"started {pod.namespace}/{pod.name} {container['name']} (restart {restart}, shim {c.shim_pid}) "
            f"log {log_path}")


# ---- the daemon -----------------------------------------------------------------------------------

class Kubelet:
    def __init__(self, flags: Flags, state: Path = STATE):
        self.flags, self.state = flags, state
        self.dir = state / "kubelet"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.peers = peers(state)
        self.stopping = threading.Event()
        self.hostname = (flags.hostname_override or platform.node()).lower()
        self.name = self.hostname
        self.versions = {"kubernetes": self.peers["KUBERNETES_VERSION"], "etcd": self.peers["ETCD_VERSION"]}
        self.binaries = {b: self.peers[b.upper().replace("-", "_")] for b in STATIC_IMAGES.values()}
        self.runtime = Runtime(state / "runtime", python=self.peers.get("PYTHON") or sys.executable)
        self.static = StaticPods(self.runtime, self.name, self.binaries, self.versions)
        self.config: dict = {}
        self.store = CertStore(flags.cert_dir)
        self.client: Client | None = None  # as the node
        self.node: dict | None = None
        self.last_tick = 0.0
        self.kwok: subprocess.Popen | None = None
        self.kwok_next = 0.0
        self.proxy: kwokmod.NodeScopedProxy | None = None
        self.runner = None
        self.runner_note = ""
        self.csi_plugin = None
        self.server = None  # the HTTPS server on 10250 (kubeletserver.py)
        self.items: list[dict] = []  # the pods bound to this node, as last listed
        self.explained: set[str] = set()
        self.status: dict = {}

    # -- certificates
    def client_config(self) -> tuple[Kubeconfig, Kubeconfig, bool] | None:
        """(for CSRs, for everything else, rotate now?), or None while nothing is usable yet."""
        f = self.flags
        if kubeconfig_valid(f.kubeconfig):
            user = Kubeconfig.load(f.kubeconfig)
            rotate = False
            if self.store.current() is None:
                cert, key = user.client_cert_pem(), user.client_key_pem()
                self.store.update(cert, key)  # kubeadm's certificate: into the store, rotated out at once
                rotate = True
                log(f"client certificate of {f.kubeconfig} put in {self.store.current_path}; rotating it")
            return user, user, rotate
        if not f.bootstrap_kubeconfig or not os.path.exists(f.bootstrap_kubeconfig):
            return None
        boot = Kubeconfig.load(f.bootstrap_kubeconfig)
        ca_file = None
        write_kubeconfig_from_bootstrapping(boot, f.kubeconfig, str(self.store.current_path), ca_file)
        log(f"{f.kubeconfig} written from {f.bootstrap_kubeconfig}, pointing at {self.store.current_path}")
        return boot, Kubeconfig.load(f.kubeconfig), self.store.current() is None

    def ensure_credentials(self) -> bool:
        cfg = self.client_config()
        if cfg is None:
            return False
        cert_kc, user_kc, rotate = cfg
        node_kc = Kubeconfig(user_kc.server, user_kc.ca_pem, cert_file=str(self.store.current_path),
                             key_file=str(self.store.current_path))
        if self.store.current() is not None:  # usable now; a rotation goes on in the background
            self.client = Client(node_kc, scratch=str(self.dir))
        if rotate:
            # newClientsetFn: with a current certificate the CSR is made as the node, else with bootstrap credentials
            csr_client = Client(node_kc if self.store.current() else cert_kc, scratch=str(self.dir))
            while not self.stopping.is_set():
                try:
                    cert, key = request_client_certificate(csr_client, self.name, self.stopping)
                    path = self.store.update(cert, key)
                    log(f"client certificate issued: {path}")
                    break
                except (OSError, ApiError, RuntimeError, TimeoutError) as exc:
                    log(f"certificate request failed (retrying): {exc}")
                    self.stopping.wait(5)
            if self.stopping.is_set():
                return False
        if self.client is None:
            self.client = Client(node_kc, scratch=str(self.dir))
        return True

    # -- healthz
    def serve_healthz(self) -> None:
        host = self.config.get("healthzBindAddress") or "127.0.0.1"
        port = int(self.config.get("healthzPort", 10248))
        if port == 0:
            return
        kubelet = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                ok = self.path.split("?")[0] in ("/healthz", "/healthz/syncloop", "/healthz/ping") and \
                    time.time() - kubelet.last_tick < 30
                body = b"ok" if ok else b"[-]syncloop failed"
                self.send_response(200 if ok else 500)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = http.server.ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
        log(f"healthz on http://{host}:{port}/healthz")

    # -- kwok
    def ensure_kwok(self) -> None:
        if self.kwok is not None and self.kwok.poll() is None:
            return
        if self.kwok is not None:
            log(f"kwok exited ({self.kwok.returncode}); see {self.dir / 'kwok.log'}")
            self.kwok = None
            self.kwok_next = time.time() + 10
        if time.time() < self.kwok_next:
            return
        if self.proxy is None:
            self.proxy = kwokmod.NodeScopedProxy(self.client, self.name, log).start()
        config, kc = self.dir / "kwok.yaml", self.dir / "kwok.kubeconfig"
        kwokmod.write_config(config, Path(self.peers["KWOK_SOURCE"]), RUNNER_IMAGES)
        kwokmod.write_kubeconfig(kc, self.proxy.url)
        home = self.dir / "kwok-home"  # so no ~/.kwok/kwok.yaml of the machine is read
        home.mkdir(exist_ok=True)
        argv = [self.peers["KWOK"], f"--manage-single-node={self.name}", f"--kubeconfig={kc}", f"--config={config}"]
        if self.flags.node_ip:
            argv.append(f"--node-ip={self.flags.node_ip}")
        out = open(self.dir / "kwok.log", "ab")
        self.kwok = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, close_fds=True,
                                     env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)})
        out.close()
        (self.dir / "kwok.pid").write_text(str(self.kwok.pid))
        log(f"kwok {self.kwok.pid}: {' '.join(argv)} (through {self.proxy.url})")

    def stop_stale_kwok(self) -> None:
        """A kwok left by a kubelet that was killed (the new one starts its own)."""
        try:
            pid = int((self.dir / "kwok.pid").read_text())
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if self.peers["KWOK"].encode() in cmd and f"--manage-single-node={self.name}".encode() in cmd:
            os.kill(pid, signal.SIGTERM)
            log(f"stopped kwok {pid} left by an earlier kubelet")

    # -- pod runner hook
    def runner_images(self) -> dict[str, Path | list[str]]:
        """{image repository: the built binary's Path, or a Python stand-in's argv}; binaries not built are left out."""
        from tests.peers.k8s.pods import python_standin

        out: dict[str, Path | list[str]] = {}
        for repo, target in RUNNER_IMAGES.items():
            if isinstance(target, tuple):
                out[repo] = python_standin(Path(self.peers["REPO"]) / target[1])
            elif self.peers.get(target.upper().replace("-", "_")):
                out[repo] = Path(self.peers[target.upper().replace("-", "_")])
        return out

    def start_runner(self) -> None:
        try:
            from tests.peers.k8s import pods as podsmod  # written separately (see POD RUNNER HOOK)
        except ImportError as exc:
            self.runner_note = f"no pod runner ({exc}): pods with its images stay Pending"
            log(self.runner_note)
            return
        try:
            self.runner = podsmod.PodRunner(self.name, self.node_ip(), Path(self.flags.kubeconfig), self.runner_images(),
                                            self.state / "pods", log_dir=Path("/var/log/pods"), csi=self.csi.publish)
            self.runner_note = ""
            log(f"pod runner started for {', '.join(sorted(self.runner_images()))}")
        except Exception as exc:  # its failure must not stop the node
            self.runner_note = f"pod runner failed to start: {exc.__class__.__name__}: {exc}"
            log(self.runner_note)

    @property
    def csi(self):
        if self.csi_plugin is None:
            from tests.peers.k8s.csinode import NodePlugin

            store = self.peers.get("VOLUME_STORE")
            self.csi_plugin = NodePlugin(self.client, self.name, log, Path(store) if store else None)
        return self.csi_plugin

    def node_ip(self) -> str:
        """--node-ip, else the IPv4 address of the default route's interface (kubelet's fallback,
        apimachinery's ChooseHostInterface)."""
        if self.flags.node_ip:
            return self.flags.node_ip
        dev = next((ln.split()[0] for ln in Path("/proc/net/route").read_text().splitlines()[1:]
                    if ln.split()[1] == "00000000"), None)
        if dev:
            out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", dev], capture_output=True, text=True).stdout
            for word in out.split():
                if "/" in word and word[0].isdigit():
                    return word.split("/")[0]
        return ""

    def sync_api_pods(self) -> None:
        """Every POD_SYNC_SECONDS: the pods bound to this node, for the mirror pods and the runner."""
        pods = self.client.request("GET", "/api/v1/pods", query=[("fieldSelector", f"spec.nodeName={self.name}")])
        items = self.items = pods.get("items", [])
        if self.server is None:
            try:
                from tests.peers.k8s.kubeletserver import KubeletServer

                self.server = KubeletServer(self.name, self.client, self.config, Path(self.flags.cert_dir),
                                            lambda: self.items, log=log).start()
            except Exception as exc:  # noqa: BLE001 (kubectl logs then fails; the node goes on)
                log(f"kubelet server: {exc.__class__.__name__}: {exc}")
                self.server = False
        node = self.client.request("GET", f"/api/v1/nodes/{self.name}", ok_missing=True)
        if node is None:  # deleted (kubectl delete node): register again, as kubelet does
            self.node = None
            return
        try:
            self.static.mirror_sync(self.client, node, items)
        except (OSError, ApiError) as exc:
            log(f"mirror pods: {exc}")
        mine = [p for p in items if any(
            kwokmod.image_repository(c.get("image", "")) in RUNNER_IMAGES
            for c in (p["spec"].get("containers") or []) + (p["spec"].get("initContainers") or []))]
        if self.runner is None and not self.runner_note:
            self.start_runner()
        if self.runner is not None:
            try:
                self.runner.sync(items)
            except Exception as exc:  # noqa: BLE001 (the runner's failure is logged, the node goes on)
                log(f"pod runner sync: {exc.__class__.__name__}: {exc}")
        csi: set[str] = set()
        try:  # the cinder-csi node plugin: registered by its stand-in (csinode.py), not run
            csi = set(self.csi.sync(items, self.node_ip()))
        except Exception as exc:  # noqa: BLE001
            log(f"csi node plugin: {exc.__class__.__name__}: {exc}")
        for p in mine:
            meta = p["metadata"]
            if meta["uid"] in csi:
                continue
            why = self.runner.explain(p) if self.runner is not None else (self.runner_note or "no pod runner")
            if not why:
                continue
            if meta.get("deletionTimestamp"):
                # nothing of it ever ran: the kubelet deletes such a pod at once (grace 0, UID precondition)
                self.client.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                                    {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                     "preconditions": {"uid": meta["uid"]}}, ok_missing=True)
                log(f"pod {meta['namespace']}/{meta['name']} deleted (it never ran here)")
            elif f"{meta['uid']}:{why}" not in self.explained:
                self.explained.add(f"{meta['uid']}:{why}")
                log(f"pod {meta['namespace']}/{meta['name']} stays Pending: the pod runner does not run it "
                    f"({why}) and kwok leaves it alone")
        self.status["runner_pods"] = [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in mine]

    # -- main loop
    def write_status(self) -> None:
        self.status.update(node=self.name, pid=os.getpid(), registered=self.node is not None,
                           healthz=f"http://{self.config.get('healthzBindAddress') or '127.0.0.1'}:"
                                   f"{self.config.get('healthzPort', 10248)}/healthz",
                           api_server=self.client.kc.server if self.client else None,
                           kwok_pid=self.kwok.pid if self.kwok and self.kwok.poll() is None else None,
                           kwok_proxy=self.proxy.url if self.proxy else None, runner=self.runner_note or
                           ("running" if self.runner else None), time=time.time())
        tmp = self.dir / "status.json.tmp"
        tmp.write_text(json.dumps(self.status, indent=1))
        os.replace(tmp, self.dir / "status.json")

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        log(f"starting: node {self.name}, flags {asdict(self.flags)}")
        while not self.stopping.is_set():  # kubelet exits here and systemd restarts it every 10 s
            try:
                self.config = load_config(self.flags.config, self.flags.config_dir)
                break
            except (OSError, ValueError) as exc:
                log(f"failed to load kubelet config file {self.flags.config}: {exc} (waiting, as systemd's restarts would)")
                self.stopping.wait(10)
        if self.stopping.is_set():
            return 0
        self.stop_stale_kwok()
        self.last_tick = time.time()
        self.serve_healthz()
        static_dir = self.config.get("staticPodPath") or ""
        creds = threading.Thread(target=self.ensure_credentials, name="certificates", daemon=True)
        next_register = next_lease = next_pods = 0.0
        creds_started = False
        while not self.stopping.is_set():
            now = time.time()
            self.last_tick = now
            if static_dir:
                try:
                    self.status["static_pods"] = self.static.sync(static_dir)
                except Exception as exc:  # a bad manifest must not stop the node
                    log(f"static pods: {exc.__class__.__name__}: {exc}")
            if self.client is None and not creds_started:
                creds_started = True
                creds.start()
            elif self.client is None:
                if not creds.is_alive():
                    creds = threading.Thread(target=self.ensure_credentials, name="certificates", daemon=True)
                    creds.start()
            elif self.node is None and now >= next_register:
                try:
                    node = initial_node(self.name, self.hostname, self.flags, self.config, self.versions["kubernetes"])
                    self.node = register(self.client, node)
                    log(f"node {self.name} registered (uid {self.node['metadata']['uid']})")
                except (OSError, ApiError) as exc:
                    log(f"unable to register node {self.name}: {exc}")
                    next_register = now + 2
            if self.node is not None:
                if now >= next_lease:
                    try:
                        renew_lease(self.client, self.name, self.node["metadata"]["uid"])
                        next_lease = now + LEASE_DURATION / 4
                    except (OSError, ApiError) as exc:
                        log(f"failed to renew lease kube-node-lease/{self.name}: {exc}")
                        next_lease = now + 1
                self.ensure_kwok()
                if now >= next_pods:
                    try:
                        self.sync_api_pods()
                    except (OSError, ApiError) as exc:
                        log(f"pods of {self.name}: {exc}")
                    next_pods = now + POD_SYNC_SECONDS
            self.write_status()
            self.stopping.wait(1)
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        """What the kubelet stops when it stops: its own parts. Containers stay (their runtime's)."""
        log("stopping")
        if self.kwok is not None and self.kwok.poll() is None:
            self.kwok.terminate()
            try:
                self.kwok.wait(10)
            except subprocess.TimeoutExpired:
                self.kwok.kill()
                self.kwok.wait()
            log(f"kwok {self.kwok.pid} stopped")
        (self.dir / "kwok.pid").unlink(missing_ok=True)
        if self.proxy is not None:
            self.proxy.stop()
        if self.server:
            self.server.stop()
        if self.runner is not None:
            try:
                self.runner.stop()
                log("pod runner stopped")
            except Exception as exc:  # noqa: BLE001
                log(f"pod runner stop: {exc.__class__.__name__}: {exc}")
        self.status.update(kwok_pid=None, stopped=time.time())


# ---- the service: what the systemctl stand-in calls ---------------------------------------------

@dataclass
class Status:
    active: bool
    pid: int | None = None
    node: str | None = None
    healthz: str | None = None
    api_server: str | None = None
    kwok_pid: int | None = None
    containers: list[str] = field(default_factory=list)
    detail: dict = field(default_factory=dict)


def _pid(state: Path) -> int | None:
    try:
        pid = int((state / "kubelet" / "kubelet.pid").read_text())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"tests.peers.k8s.kubelet" in cmd and b"run" in cmd.split(b"\0") else None


def unit_argv() -> list[str]:
    """ExecStart of the kubelet unit with kubeadm's drop-in: the flags from its environment files."""
    env = {}
    for path in UNIT_ENV_FILES:
        try:
            text = Path(path).read_text()
        except OSError:
            continue  # EnvironmentFile=-...: optional
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k.strip()] = " ".join(shlex.split(v))
    extra = env.get("KUBELET_KUBEADM_ARGS", "").split() + env.get("KUBELET_EXTRA_ARGS", "").split()
    return [*UNIT_KUBECONFIG_ARGS, *UNIT_CONFIG_ARGS, *extra]


def status(state: Path = STATE) -> Status:
    pid = _pid(state)
    try:
        detail = json.loads((state / "kubelet" / "status.json").read_text())
    except (OSError, ValueError):
        detail = {}
    containers = [f"{c.namespace}/{c.pod}/{c.name}" for c in Runtime(state / "runtime").list() if c.running]
    return Status(pid is not None, pid, detail.get("node"), detail.get("healthz") if pid else None,
                  detail.get("api_server"), detail.get("kwok_pid") if pid else None, containers, detail)


def start(state: Path = STATE, launcher: str = LAUNCHER) -> Status:
    """systemctl start kubelet: the launcher with the unit's arguments, detached; no-op when running."""
    if _pid(state) is None:
        d = state / "kubelet"
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        out = open(d / "kubelet.log", "ab")
        proc = subprocess.Popen([launcher, *unit_argv()], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True, close_fds=True, cwd="/")
        out.close()
        (d / "kubelet.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 10  # the launcher execs Python: wait until it is the daemon
        while _pid(state) is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    return status(state)


def stop(state: Path = STATE, timeout: float = 30) -> Status:
    """systemctl stop kubelet: SIGTERM, SIGKILL after `timeout` (systemd's TimeoutStopSec is 90 s)."""
    pid = _pid(state)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid(state) == pid and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid(state) == pid:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            kwok_pid = (state / "kubelet" / "kwok.pid")
            try:
                os.kill(int(kwok_pid.read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    (state / "kubelet" / "kubelet.pid").unlink(missing_ok=True)
    return status(state)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "run":
        try:
            flags = parse_flags(argv[1:])
        except SystemExit as exc:
            log(str(exc))
            return 1
        return Kubelet(flags).run()
    parser = argparse.ArgumentParser(prog="python -m tests.peers.k8s.kubelet")
    parser.add_argument("command", choices=["start", "stop", "restart", "status", "is-active", "argv"])
    parser.add_argument("--state", default=str(STATE))
    args = parser.parse_args(argv)
    state = Path(args.state)
    if args.command == "argv":
        print(" ".join(shlex.quote(a) for a in unit_argv()))
        return 0
    if args.command in ("stop", "restart"):
        stop(state)
    if args.command in ("start", "restart"):
        st = start(state)
        return 0 if st.active else 1
    st = status(state)
    if args.command == "is-active":
        print("active" if st.active else "inactive")
        return 0 if st.active else 3
    if args.command == "status":
        print(json.dumps(asdict(st), indent=1))
        return 0 if st.active else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
