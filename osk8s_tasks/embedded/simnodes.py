"""Kubernetes node test hosts: sshd hosts reachable only through a gateway host, with the
Kubernetes "packages" of k8s_standin/ on each node (see its README): the real kubeadm and kubectl
built from their Go modules (osk8s_tasks/embedded/build.py), the kubelet stand-in
(tests/peers/k8s/kubelet/), and stand-ins for the OS tools around them.

Each node learns where the real programs are from /var/lib/osk8s-standin/peers.env (written
here): the binaries, their versions, kwok's module source (its stages), the project's Python.
The gateway's namespace forwards IPv4 between the nodes' links only (workers reach the control
plane's API server for `kubeadm join`); nothing is forwarded anywhere else, and this machine's
own namespace keeps ip_forward as it was (0)."""

import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from osk8s_tasks.embedded import build
from osk8s_tasks.embedded.sshd import SshHosts

ROOT = Path(__file__).resolve().parent.parent.parent
STANDIN = ROOT / "tests" / "peers" / "k8s_standin"  # the simulated node's programs (stand-ins: tests/ only)
PRIVATE = (
    "/etc/kubernetes",
    "/etc/modules-load.d",
    "/etc/sysctl.d",
    "/etc/containerd",
    "/etc/apt/keyrings",
    "/etc/apt/sources.list.d",
    "/usr/local/bin",
    "/var/lib/osk8s-standin",
    # what kubeadm and the kubelet write (kubeadm reset empties them): each node its own
    "/var/lib/kubelet",
    "/var/lib/etcd",
    "/var/log/pods",
    "/usr/libexec/kubernetes",
)
CONTROL_PLANE = ("kubeadm", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kwok")
RUNNER = (
    "k8s-keystone-auth",
    "openstack-cloud-controller-manager",
    "cinder-csi-plugin",
    "octavia-ingress-controller",
    "csi-provisioner",
    "csi-attacher",
    "csi-resizer",
)  # passed on when built (the pod runner's), never built here
NODE_TABLE = "198"  # the gateway's routing table for what the nodes send


CALICO_TEST_MANIFEST = """# a test manifest served in place of Calico's calico.yaml (the nodes have no internet):
# calico-node's DaemonSet shape (selector, labels, tolerations), without hostNetwork (no CNI here)
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: calico-node
  namespace: kube-system
  labels: {k8s-app: calico-node}
spec:
  selector:
    matchLabels: {k8s-app: calico-node}
  template:
    metadata:
      labels: {k8s-app: calico-node}
    spec:
      tolerations:
      - {effect: NoSchedule, operator: Exists}
      - {key: CriticalAddonsOnly, operator: Exists}
      - {effect: NoExecute, operator: Exists}
      containers:
      - name: calico-node
        image: quay.io/calico/node:v3.31.0
"""


@functools.cache
def peers_env() -> str:
    """peers.env for the nodes: KEY=value lines (shell and tests.peers.k8s.kubelet.peers read them)."""
    paths = build.ensure(CONTROL_PLANE)
    built = {b: p for bs in build.status().values() for b, p in bs.items() if p is not None}
    k8s = subprocess.run([paths["kube-apiserver"], "--version"], capture_output=True, text=True, check=True).stdout.split()[
        -1
    ]
    etcd = subprocess.run([paths["etcd"], "--version"], capture_output=True, text=True, check=True).stdout.split()[2]
    kwok_module = next(m for m in build.MODULES if m.name == "kwok")
    kwok_source = (
        build.CACHE
        / "gomod"
        / "sigs.k8s.io"
        / f"kwok@{build.required_version(build.gomod(kwok_module), 'sigs.k8s.io/kwok')}"
    )
    if not (kwok_source / "kustomize" / "stage").is_dir():
        raise RuntimeError(f"kwok's module source is not at {kwok_source} (its stages are read from there)")
    values = {b.upper().replace("-", "_"): str(paths[b]) for b in CONTROL_PLANE}
    values.update({b.upper().replace("-", "_"): str(built[b]) for b in RUNNER if b in built})
    values.update(
        KUBERNETES_VERSION=k8s, ETCD_VERSION=etcd, KWOK_SOURCE=str(kwok_source), PYTHON=sys.executable, REPO=str(ROOT)
    )
    if shutil.which("busybox"):  # plays registry.k8s.io/e2e-test-images/busybox (verify.pv's pods)
        values["BUSYBOX"] = shutil.which("busybox")
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def forward_between_nodes(hosts: SshHosts) -> None:
    """IPv4 forwarding in the gateway's namespace only, and only from node links to node links:
    what arrives on a node's link is routed by a table holding the nodes' subnets and an
    `unreachable` default (policy routing: iproute2 only), so nothing a node sends is forwarded
    off the gateway; the gateway's own addresses are still reached (the local table comes first)."""
    gw = hosts.hosts[0].netns

    def ip(*args):
        subprocess.run(["ip", "netns", "exec", gw, "ip", *args], check=True, capture_output=True, text=True)

    for h in hosts.hosts[1:]:
        ip("route", "add", h.address.rsplit(".", 1)[0] + ".0/24", "dev", f"{h.netns}h", "table", NODE_TABLE)
    ip("route", "add", "unreachable", "default", "table", NODE_TABLE)
    for h in hosts.hosts[1:]:
        ip("rule", "add", "iif", f"{h.netns}h", "lookup", NODE_TABLE, "priority", "100")
    subprocess.run(
        ["ip", "netns", "exec", gw, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"], check=True, capture_output=True
    )


def apt_test_key(workdir: Path) -> tuple[str, str]:
    """(armored public key, fingerprint) of a fresh signing key, standing in for pkgs.k8s.io's
    Release.key: the tool checks the fingerprint the test pins."""
    home = workdir / "gnupg"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    run = lambda *a: subprocess.run(["gpg", "--batch", *a], env=env, check=True, capture_output=True, text=True)  # noqa: E731
    run("--passphrase", "", "--quick-gen-key", "osk8s test apt key", "ed25519", "sign", "1d")
    fpr = next(ln.split(":")[9] for ln in run("--with-colons", "--list-keys").stdout.splitlines() if ln.startswith("fpr:"))
    return run("--armor", "--export", fpr).stdout, fpr


def node_hosts(workdir: Path, lab: str, workers: int, prefix: str = "o8k") -> SshHosts:
    names = ("gateway", f"{lab}-master", *[f"{lab}-worker-{i}" for i in range(1, workers + 1)])
    env = peers_env()  # before any host exists: a build (minutes on a fresh machine) holds nothing up
    hosts = SshHosts(
        workdir,
        count=len(names),
        prefix=prefix,
        names=names,
        gateway=True,
        private_dirs=PRIVATE,
        private_files=("/etc/fstab",),
    ).start()
    try:  # a half-set-up set of hosts is stopped, not left behind
        forward_between_nodes(hosts)
        # the data on the lab's Cinder volumes, one directory per volume ID, seen by every node (tests/peers/k8s/csinode.py)
        store = hosts.workdir / "cinder-volumes"
        store.mkdir(exist_ok=True)
        for h in hosts.hosts[1:]:
            (hosts.private(h, "/var/lib/osk8s-standin") / "peers.env").write_text(env + f"VOLUME_STORE={store}\n")
            bin_dir = hosts.private(h, "/usr/local/bin")
            for f in STANDIN.iterdir():
                if f.is_file() and f.name != "README.md" and f.name != "common.sh":
                    shutil.copy(f, bin_dir / f.name)
            shutil.copytree(STANDIN / "payload", bin_dir / ".standin" / "payload", dirs_exist_ok=True)
            shutil.copy(STANDIN / "common.sh", bin_dir / ".standin" / "common.sh")
        key, fpr = apt_test_key(hosts.workdir)
        for h in hosts.hosts[1:]:  # what the stand-in curl serves
            downloads = hosts.private(h, "/var/lib/osk8s-standin") / "downloads"
            downloads.mkdir(parents=True, exist_ok=True)
            (downloads / "Release.key").write_text(key)
            (downloads / "calico.yaml").write_text(CALICO_TEST_MANIFEST)
    except BaseException:
        hosts.stop()
        raise
    # the pins a lab config on these hosts needs (versions.*), in place of upstream's
    hosts.pins = {
        "kubernetes_apt_key_fingerprint": fpr,
        "calico_manifest_sha256": hashlib.sha256(CALICO_TEST_MANIFEST.encode()).hexdigest(),
    }
    return hosts


def calls(hosts: SshHosts, host) -> list[str]:
    log = hosts.private(host, "/var/lib/osk8s-standin") / "calls.log"
    return log.read_text().splitlines() if log.exists() else []
