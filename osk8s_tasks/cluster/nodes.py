"""Node steps (every node, concurrently) and the control plane (kubeadm init/join), over SSH
through the devstack VM as jump host: the nodes' floating IPs are routable only from there."""

from __future__ import annotations

import shlex
from contextlib import contextmanager
from pathlib import Path

from osk8s_tasks.core import ssh as remote
from osk8s_tasks.core.engine import Status, Step, StepFailed

MODULES = ("overlay", "br_netfilter")
MODULES_FILE = "/etc/modules-load.d/osk8s-k8s.conf"
SYSCTLS = {"net.bridge.bridge-nf-call-iptables": "1", "net.bridge.bridge-nf-call-ip6tables": "1", "net.ipv4.ip_forward": "1"}
SYSCTL_FILE = "/etc/sysctl.d/60-osk8s-k8s.conf"
K8S_REPO = "/etc/apt/sources.list.d/kubernetes.list"
K8S_KEY = "/etc/apt/keyrings/kubernetes-apt-keyring.asc"


def node_names(settings) -> dict[str, str]:
    """server name -> role, in config order."""
    return {f"{settings.lab.name}-{n.name}": n.role for n in settings.cluster.nodes}


def nodes_ssh_config(settings) -> Path:
    return Path(settings.cluster.ssh_config) if settings.cluster.ssh_config else settings.lab_dir / "nodes_ssh_config"


@contextmanager
def connections(s, only: str | None = None):
    """{server name: Remote} for every node (or the node `only`), all through one connection to
    the gateway (the devstack host): see remote.through_jump_host."""
    from osk8s_tasks.devstack.tasks import target

    gw_config, gw_alias = target(s.settings)
    path = nodes_ssh_config(s.settings)
    if not path.exists():
        raise StepFailed(f"no ssh_config for the nodes ({path}). Fix: inv cluster.ssh-config (after openstack.servers)")
    with remote.through_jump_host(gw_config, gw_alias, path, [only] if only else node_names(s.settings), s.log) as out:
        yield out


def _file_step(name, r, path, content, after: str) -> Step:
    """A root-owned config file with exact content; `after` runs once it is written."""

    def check():
        have = r.run(f"cat {path} 2>/dev/null", warn=True).stdout
        return Status(have == content, f"{path} is current" if have == content else f"{path} differs",
                      "" if have == content else f"write {path}; {after}")

    return Step(name, check, lambda: r.install(path, content, then=after))


def node_steps(s, r) -> list[Step]:
    v = s.settings.versions.kubernetes
    minor = ".".join(v.split(".")[:2])
    steps = [_file_step("kernel modules", r, MODULES_FILE, "".join(f"{m}\n" for m in MODULES), f"modprobe {' '.join(MODULES)}")]

    def check_loaded():
        loaded = {ln.split()[0] for ln in r.run("lsmod", warn=True).stdout.splitlines()[1:] if ln.strip()}
        missing = [m for m in MODULES if m not in loaded]
        return Status(not missing, "modules loaded" if not missing else f"not loaded: {', '.join(missing)}",
                      f"modprobe {' '.join(missing)}")

    steps.append(Step("modules loaded", check_loaded, lambda: r.run(f"modprobe {' '.join(MODULES)}", sudo=True)))
    steps.append(_file_step("sysctls", r, SYSCTL_FILE, "".join(f"{k} = {x}\n" for k, x in SYSCTLS.items()),
                            f"sysctl -q -p {SYSCTL_FILE}"))

    def check_swap():
        active = r.run("swapon --noheadings --show 2>/dev/null", warn=True).stdout.strip()
        in_fstab = r.run(r"grep -Ec '^[^#].*\sswap\s' /etc/fstab 2>/dev/null", warn=True).stdout.strip()
        if active or in_fstab not in ("", "0"):
            return Status(False, "swap is on (kubelet refuses to run with swap)", "swapoff -a; comment swap out of /etc/fstab")
        return Status(True, "swap off, none in /etc/fstab")

    steps.append(Step("swap off", check_swap,
                      lambda: r.run(r"swapoff -a && sed -i -E 's/^([^#].*\sswap\s)/# \1/' /etc/fstab", sudo=True)))

    def check_containerd():
        if r.run("command -v containerd", warn=True).exited:
            return Status(False, "containerd is not installed", "apt-get install containerd; systemd cgroup driver")
        cgroup = r.run("grep -c 'SystemdCgroup = true' /etc/containerd/config.toml 2>/dev/null", warn=True).stdout.strip()
        if cgroup in ("", "0"):
            return Status(False, "containerd does not use the systemd cgroup driver", "SystemdCgroup = true; restart containerd")
        active = r.run("systemctl is-active containerd", warn=True).stdout.strip()
        return Status(active == "active", f"containerd {active}, systemd cgroup driver", "restart containerd")

    def apply_containerd():
        r.run("command -v containerd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q containerd",
              sudo=True, timeout=900)
        r.run("mkdir -p /etc/containerd && containerd config default > /etc/containerd/config.toml && "
              "sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml && "
              "systemctl restart containerd", sudo=True)

    steps.append(Step("containerd", check_containerd, apply_containerd))

    def check_kube():
        have = r.run("kubeadm version -o short 2>/dev/null; kubelet --version 2>/dev/null; "
                     "kubectl version --client -o yaml 2>/dev/null | grep gitVersion", warn=True).stdout.split()
        want = f"v{v}"
        ok = len(have) >= 4 and have[0] == want and have[2] == want and have[-1] == want
        return Status(ok, f"kubeadm, kubelet, kubectl {want} (held)" if ok else f"kubernetes packages not at {want}",
                      f"install kubelet, kubeadm, kubectl {v} from pkgs.k8s.io/core:/stable:/v{minor}, hold them")

    def apply_kube():
        repo = f"https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"
        fpr = s.settings.versions.kubernetes_apt_key_fingerprint
        # The repository key is trusted only with the pinned fingerprint (a key swapped on the way
        # would sign whatever packages it likes).
        r.run(f"mkdir -p /etc/apt/keyrings && k=$(mktemp) && curl -fsSL {repo}Release.key -o $k && "
              "have=$(GNUPGHOME=$(mktemp -d) gpg --batch --show-keys --with-colons $k | awk -F: '/^fpr:/{print $10; exit}') && "
              f"if [ \"$have\" != {fpr} ]; then echo \"{repo}Release.key has fingerprint ${{have:-none}}, "
              f"not the pinned {fpr} (versions.kubernetes_apt_key_fingerprint): refused\" >&2; rm -f $k; exit 1; fi && "
              f"install -m 644 $k {K8S_KEY} && rm -f $k && "
              f"echo 'deb [signed-by={K8S_KEY}] {repo} /' > {K8S_REPO} && apt-get update -q && "
              "apt-mark unhold kubelet kubeadm kubectl >/dev/null 2>&1; "
              f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-change-held-packages "
              f"kubelet={v}-* kubeadm={v}-* kubectl={v}-* && apt-mark hold kubelet kubeadm kubectl && "
              "systemctl enable kubelet", sudo=True, timeout=1800)

    steps.append(Step("kubernetes packages", check_kube, apply_kube))
    return steps


def node_plan(s, remotes: dict) -> dict[str, list[Step]]:
    plan = {}
    for name, r in remotes.items():
        steps = node_steps(s, r)
        for step in steps:
            step.node = name
        plan[name] = steps
    return plan


def parse_console_host_keys(console: str) -> list[str]:
    """`<type> <key>` lines that cloud-init prints to the console between its host-key markers:
    the server's own word on its keys, read through the compute API, not over the network."""
    inside, keys = False, []
    for line in console.splitlines():
        if "-----BEGIN SSH HOST KEY KEYS-----" in line:
            inside = True
        elif "-----END SSH HOST KEY KEYS-----" in line:
            inside = False
        elif inside:
            parts = line.split()
            if len(parts) >= 2 and (parts[0].startswith("ssh-") or parts[0].startswith("ecdsa-")):
                keys.append(f"{parts[0]} {parts[1]}")
    return keys


# --- control plane ---------------------------------------------------------------------------------


def advertise_address(r) -> str:
    from osk8s_tasks.devstack.tasks import host_ip

    return host_ip(r)


def init_step(s, r, name: str) -> Step:
    from osk8s_tasks.cluster.render import init_config

    def check():
        if r.run("test -f /etc/kubernetes/admin.conf", warn=True).exited == 0:
            return Status(True, "control plane initialised (/etc/kubernetes/admin.conf present)")
        return Status(False, "no control plane yet", f"kubeadm init on {name} (kubeadm.k8s.io/v1beta4, cloud-provider external)")

    def apply():
        r.install("/etc/kubernetes/osk8s-init.yaml", init_config(s.settings, advertise_address(r), name, r.conn.host), 0o600)
        r.run("kubeadm init --config /etc/kubernetes/osk8s-init.yaml", sudo=True, timeout=1800)

    return Step("kubeadm init", check, apply, node=name)


def kubeconfig_step(s, r, name: str) -> Step:
    local = s.settings.lab_dir / "admin.conf"

    def remote_text():
        from osk8s_tasks.core.kube import admin_kubeconfig

        return admin_kubeconfig(r.run("cat /etc/kubernetes/admin.conf", sudo=True).stdout, f"{name}:/etc/kubernetes/admin.conf")

    def check():
        if not local.exists():
            return Status(False, "no local admin kubeconfig", f"fetch {name}:/etc/kubernetes/admin.conf to {local} (0600)")
        same = local.read_text() == remote_text()
        return Status(same and local.stat().st_mode & 0o777 == 0o600, f"{local.name} is current (0600)" if same
                      else f"{local.name} differs from the control plane's", f"fetch it again to {local}")

    return Step("admin kubeconfig", check, lambda: remote.write_private(local, remote_text()), node="local")


KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"


def cni_step(s, master, name: str) -> Step:
    """The CNI from its pinned upstream manifest, applied on the control plane (Calico picks the
    pod CIDR from kubeadm's podSubnet)."""
    c, v = s.settings.cluster, s.settings.versions
    if c.cni == "calico":
        url = f"https://raw.githubusercontent.com/projectcalico/calico/{v.calico}/manifests/calico.yaml"
        probe, image = "daemonset/calico-node", f"calico/node:{v.calico}"
    else:
        raise StepFailed("cluster.cni cilium is not supported by cluster.deploy yet. Fix: use calico")

    def check():
        out = master.run(f"{KUBECTL} -n kube-system get {probe} -o jsonpath='{{.spec.template.spec.containers[0].image}}'",
                         sudo=True, warn=True)
        if out.exited:
            return Status(False, f"no {probe}", f"kubectl apply --server-side -f {url} (sha256 {v.calico_manifest_sha256[:12]}...)")
        have = out.stdout.strip()
        return Status(have.endswith(image), f"{probe} runs {have}", f"apply {url} ({have} -> {image})")

    def apply():
        # applied with admin rights, so only the manifest with the pinned sha256 is
        master.run(f"t=$(mktemp) && curl -fsSL {url} -o $t && have=$(sha256sum $t | cut -d' ' -f1) && "
                   f"if [ \"$have\" != {v.calico_manifest_sha256} ]; then echo \"{url}: sha256 $have is not the pinned "
                   f"{v.calico_manifest_sha256} (versions.calico_manifest_sha256): refused, nothing applied\" >&2; "
                   f"rm -f $t; exit 1; fi && {KUBECTL} apply --server-side --field-manager=osk8s -f $t; rc=$?; rm -f $t; "
                   "exit $rc", sudo=True, timeout=600)

    return Step(f"CNI {c.cni} {v.calico}", check, apply, node=name)


def join_step(s, master, r, name: str) -> Step:
    from osk8s_tasks.core import log
    from osk8s_tasks.cluster.render import join_config

    def check():
        if r.run("test -f /etc/kubernetes/kubelet.conf", warn=True).exited == 0:
            return Status(True, "joined (/etc/kubernetes/kubelet.conf present)")
        return Status(False, f"{name} is not in the cluster", f"kubeadm join {name} with a fresh token")

    def apply():
        token = log.secret(master.run("kubeadm token create --ttl 30m", sudo=True).stdout.strip())
        ca_hash = master.run("openssl x509 -pubkey -in /etc/kubernetes/pki/ca.crt | openssl pkey -pubin -outform der "
                             "| sha256sum | cut -d' ' -f1", sudo=True).stdout.strip()
        endpoint = f"{advertise_address(master)}:6443"
        tmp = r.temp_file(join_config(s.settings, name, endpoint, token, f"sha256:{ca_hash}"))
        try:
            r.run(f"kubeadm join --config {shlex.quote(tmp)}", sudo=True, timeout=1800)
        finally:
            r.run(f"rm -f {tmp}", warn=True)

    return Step("kubeadm join", check, apply, node=name)
