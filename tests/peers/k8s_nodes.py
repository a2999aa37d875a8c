"""Kubernetes node test hosts: sshd hosts reachable only through a gateway host, with the
Kubernetes tool stand-ins (k8s_standin/, see its README for why) installed on each node."""

import shutil
from pathlib import Path

from tests.peers.sshd import SshHosts

STANDIN = Path(__file__).resolve().parent / "k8s_standin"
PRIVATE = ("/etc/kubernetes", "/etc/modules-load.d", "/etc/sysctl.d", "/etc/containerd", "/etc/apt/keyrings",
           "/etc/apt/sources.list.d", "/usr/local/bin", "/var/lib/osk8s-standin")


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
    return hosts


def calls(hosts: SshHosts, host) -> list[str]:
    log = hosts.private(host, "/var/lib/osk8s-standin") / "calls.log"
    return log.read_text().splitlines() if log.exists() else []
