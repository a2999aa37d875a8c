"""Kubernetes node test hosts: sshd hosts reachable only through a gateway host, with the
Kubernetes tool stand-ins (k8s_standin/, see its README for why) installed on each node."""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.peers.sshd import SshHosts

STANDIN = Path(__file__).resolve().parent / "k8s_standin"
PRIVATE = ("/etc/kubernetes", "/etc/modules-load.d", "/etc/sysctl.d", "/etc/containerd", "/etc/apt/keyrings",
           "/etc/apt/sources.list.d", "/usr/local/bin", "/var/lib/osk8s-standin")


CALICO_TEST_MANIFEST = """# a test manifest served in place of Calico's calico.yaml (the nodes have no internet)
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: calico-node, namespace: kube-system}
spec:
  template:
    spec:
      containers:
      - name: calico-node
        image: quay.io/calico/node:v3.31.0
"""


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
    hosts = SshHosts(workdir, count=len(names), prefix=prefix, names=names, gateway=True,
                     private_dirs=PRIVATE, private_files=("/etc/fstab",)).start()
    for h in hosts.hosts[1:]:
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
    # the pins a lab config on these hosts needs (versions.*), in place of upstream's
    hosts.pins = {"kubernetes_apt_key_fingerprint": fpr,
                  "calico_manifest_sha256": hashlib.sha256(CALICO_TEST_MANIFEST.encode()).hexdigest()}
    return hosts


def calls(hosts: SshHosts, host) -> list[str]:
    log = hosts.private(host, "/var/lib/osk8s-standin") / "calls.log"
    return log.read_text().splitlines() if log.exists() else []
