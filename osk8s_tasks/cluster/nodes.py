"""What every Kubernetes node needs before kubeadm (kernel modules, sysctls, swap off, containerd,
the pinned kubelet/kubeadm/kubectl), converged on all nodes at once over SSH through the DevStack
host as jump host: the nodes' floating IPs are routable only from there."""

from __future__ import annotations

from contextlib import contextmanager

from osk8s_tasks.cluster import facts
from osk8s_tasks.core import lab
from osk8s_tasks.core import ssh as remote
from osk8s_tasks.core.engine import Status, Step, StepFailed
from osk8s_tasks.core.shapes import remote_file_step, sysctl_probe, sysctl_step

MODULES = ("overlay", "br_netfilter")
MODULES_FILE = "/etc/modules-load.d/osk8s-k8s.conf"
SYSCTLS = {"net.bridge.bridge-nf-call-iptables": "1", "net.bridge.bridge-nf-call-ip6tables": "1", "net.ipv4.ip_forward": "1"}
SYSCTL_FILE = "/etc/sysctl.d/60-osk8s-k8s.conf"
K8S_REPO = "/etc/apt/sources.list.d/kubernetes.list"
K8S_KEY = "/etc/apt/keyrings/kubernetes-apt-keyring.asc"


@contextmanager
def connections(s, only: str | None = None):
    """{server name: Remote} for every node (or the node `only`), all through one connection to
    the jump host (the DevStack host): see core.ssh.through_jump_host."""
    jump_config, jump_alias = lab.jump_host(s.settings)
    if not s.settings.devstack.ssh_target and not jump_config.exists():
        raise StepFailed(
            f"no ssh_config for the lab VM ({jump_config}). Fix: inv host.up, or point devstack.ssh_target at another host"
        )
    path = lab.nodes_ssh_config(s.settings)
    if not path.exists():
        raise StepFailed(f"no ssh_config for the nodes ({path}). Fix: inv cluster.ssh-config (after openstack.servers)")
    names = [only] if only else lab.node_names(s.settings)
    with remote.through_jump_host(jump_config, jump_alias, path, names, s.log) as out:
        yield out


def missing_modules(loaded: set[str]) -> list[str]:
    return [m for m in MODULES if m not in loaded]


def swap_status(active: bool, in_fstab: bool) -> Status:
    if active or in_fstab:
        return Status(False, "swap is on (kubelet refuses to run with swap)", "swapoff -a; comment swap out of /etc/fstab")
    return Status(True, "swap off, none in /etc/fstab")


def containerd_status(c: facts.Containerd) -> Status:
    if not c.installed:
        return Status(False, "containerd is not installed", "apt-get install containerd; systemd cgroup driver")
    if not c.systemd_cgroup:
        return Status(False, "containerd does not use the systemd cgroup driver", "SystemdCgroup = true; restart containerd")
    return Status(c.active == "active", f"containerd {c.active}, systemd cgroup driver", "restart containerd")


def kube_status(have: dict[str, str | None], version: str) -> Status:
    """kubeadm, kubelet and kubectl all at `version` (the packages come from pkgs.k8s.io's minor repo)."""
    want, minor = f"v{version}", ".".join(version.split(".")[:2])
    wrong = [f"{k} {v or 'missing'}" for k, v in have.items() if v != want]
    if not wrong:
        return Status(True, f"kubeadm, kubelet, kubectl {want} (held)")
    return Status(
        False,
        f"kubernetes packages not at {want}: {', '.join(wrong)}",
        f"install kubelet, kubeadm, kubectl {version} from pkgs.k8s.io/core:/stable:/v{minor}, hold them",
    )


class NodeFacts:
    """The checks of a node read one probe (cluster.facts.node_probe) of every section not yet read;
    an apply drops only the sections it changes, so a converged node costs one SSH exec and each
    re-check after an apply reads its own section alone (`kubelet --version` is not cheap)."""

    def __init__(self, r, sections: dict[str, str]):
        self.r, self.sections, self._seen = r, sections, {}

    def __getitem__(self, section: str) -> str:
        if section not in self._seen:
            missing = {k: v for k, v in self.sections.items() if k not in self._seen}
            self._seen.update(facts.parse_node_probe(self.r.run(facts.node_probe(missing), warn=True).stdout))
        return self._seen.get(section, "")

    def changing(self, apply, *sections: str):
        """`apply`, after which `sections` are read again."""

        def run():
            try:
                return apply()
            finally:
                for name in sections:
                    self._seen.pop(name, None)

        return run


def node_steps(s, r) -> list[Step]:
    v = s.settings.versions.kubernetes
    minor = ".".join(v.split(".")[:2])
    load = f"modprobe {' '.join(MODULES)}"
    node = NodeFacts(
        r,
        {
            "modules-file": f"cat {MODULES_FILE} 2>/dev/null",
            "lsmod": facts.LSMOD_PROBE,
            "sysctl": sysctl_probe(list(SYSCTLS), SYSCTL_FILE),
            "swap": facts.SWAP_PROBE,
            "containerd": facts.CONTAINERD_PROBE,
            "kube": facts.KUBE_VERSIONS_PROBE,
        },
    )

    def check_loaded():
        missing = missing_modules(facts.parse_lsmod(node["lsmod"]))
        return Status(
            not missing,
            "modules loaded" if not missing else f"not loaded: {', '.join(missing)}",
            f"modprobe {' '.join(missing)}",
        )

    def apply_containerd():
        r.run(
            "command -v containerd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q containerd",
            sudo=True,
            timeout=900,
        )
        r.run(
            "mkdir -p /etc/containerd && containerd config default > /etc/containerd/config.toml && "
            "sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml && "
            "systemctl restart containerd",
            sudo=True,
        )

    def apply_kube():
        repo = f"https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"
        fpr = s.settings.versions.kubernetes_apt_key_fingerprint
        # The repository key is trusted only with the pinned fingerprint (a key swapped on the way
        # would sign whatever packages it likes).
        r.run(
            f"mkdir -p /etc/apt/keyrings && k=$(mktemp) && curl -fsSL {repo}Release.key -o $k && "
            "have=$(GNUPGHOME=$(mktemp -d) gpg --batch --show-keys --with-colons $k "
            "| awk -F: '/^fpr:/{print $10; exit}') && "
            f'if [ "$have" != {fpr} ]; then echo "{repo}Release.key has fingerprint ${{have:-none}}, '
            f'not the pinned {fpr} (versions.kubernetes_apt_key_fingerprint): refused" >&2; rm -f $k; exit 1; fi && '
            f"install -m 644 $k {K8S_KEY} && rm -f $k && "
            f"echo 'deb [signed-by={K8S_KEY}] {repo} /' > {K8S_REPO} && apt-get update -q && "
            "apt-mark unhold kubelet kubeadm kubectl >/dev/null 2>&1; "
            f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-change-held-packages "
            f"kubelet={v}-* kubeadm={v}-* kubectl={v}-* && apt-mark hold kubelet kubeadm kubectl && "
            "systemctl enable kubelet",
            sudo=True,
            timeout=1800,
        )

    steps = [
        remote_file_step(
            "kernel modules",
            r,
            MODULES_FILE,
            lambda: "".join(f"{m}\n" for m in MODULES),
            then=load,
            read=lambda: node["modules-file"],
        ),
        Step("modules loaded", check_loaded, lambda: r.run(load, sudo=True)),
        sysctl_step(
            "sysctls",
            r,
            SYSCTLS,
            SYSCTL_FILE,
            "bridged pod traffic must pass iptables, and be forwarded",
            read=lambda: node["sysctl"],
        ),
        Step(
            "swap off",
            lambda: swap_status(*facts.parse_swap(node["swap"])),
            lambda: r.run(r"swapoff -a && sed -i -E 's/^([^#].*\sswap\s)/# \1/' /etc/fstab", sudo=True),
        ),
        Step("containerd", lambda: containerd_status(facts.parse_containerd(node["containerd"])), apply_containerd),
        Step("kubernetes packages", lambda: kube_status(facts.parse_kube_versions(node["kube"]), v), apply_kube),
    ]
    changes = {
        "kernel modules": ("modules-file", "lsmod"),
        "modules loaded": ("lsmod",),
        "sysctls": ("sysctl",),
        "swap off": ("swap",),
        "containerd": ("containerd",),
        "kubernetes packages": ("kube",),
    }
    for step in steps:
        step.apply = node.changing(step.apply, *changes[step.name])
    return steps


def node_plan(s, remotes: dict) -> dict[str, list[Step]]:
    plan = {}
    for name, r in remotes.items():
        steps = node_steps(s, r)
        for step in steps:
            step.node = name
        plan[name] = steps
    return plan


def run_nodes(s) -> None:
    with connections(s) as remotes:
        s.converge_nodes(node_plan(s, remotes))
