"""The control plane: kubeadm init (v1beta4, cloud-provider external) on the one control-plane node,
its admin kubeconfig fetched (0600), the CNI from its pinned manifest, and kubeadm join for each
worker with a fresh token."""

from __future__ import annotations

import shlex

from osk8s_tasks.cluster.nodes import connections
from osk8s_tasks.cluster.render import init_config, join_config
from osk8s_tasks.core import lab, log
from osk8s_tasks.core.engine import Status, Step, StepFailed
from osk8s_tasks.core.kube import admin_kubeconfig
from osk8s_tasks.core.shapes import private_file_step
from osk8s_tasks.devstack.steps import host_ip

KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"


def advertise_address(r) -> str:
    """The node's address on its default route: what the API server advertises."""
    return host_ip(r)


def init_step(s, r, name: str) -> Step:
    def check():
        if r.run("test -f /etc/kubernetes/admin.conf", warn=True).exited == 0:
            return Status(True, "control plane initialised (/etc/kubernetes/admin.conf present)")
        return Status(
            False, "no control plane yet", f"kubeadm init on {name} (kubeadm.k8s.io/v1beta4, cloud-provider external)"
        )

    def apply():
        r.install("/etc/kubernetes/osk8s-init.yaml", init_config(s.settings, advertise_address(r), name, r.conn.host), 0o600)
        r.run("kubeadm init --config /etc/kubernetes/osk8s-init.yaml", sudo=True, timeout=1800)

    return Step("kubeadm init", check, apply, node=name)


def kubeconfig_step(s, r, name: str) -> Step:
    """The control plane's admin.conf, sanitized (core.kube.admin_kubeconfig), as a local 0600 file."""

    def remote_text():
        return admin_kubeconfig(
            r.run("cat /etc/kubernetes/admin.conf", sudo=True).stdout, f"{name}:/etc/kubernetes/admin.conf"
        )

    return private_file_step("admin kubeconfig", lab.admin_conf(s.settings), remote_text)


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
        out = master.run(
            f"{KUBECTL} -n kube-system get {probe} -o jsonpath='{{.spec.template.spec.containers[0].image}}'",
            sudo=True,
            warn=True,
        )
        if out.exited:
            return Status(
                False, f"no {probe}", f"kubectl apply --server-side -f {url} (sha256 {v.calico_manifest_sha256[:12]}...)"
            )
        have = out.stdout.strip()
        return Status(have.endswith(image), f"{probe} runs {have}", f"apply {url} ({have} -> {image})")

    def apply():
        # applied with admin rights, so only the manifest with the pinned sha256 is
        master.run(
            f"t=$(mktemp) && curl -fsSL {url} -o $t && have=$(sha256sum $t | cut -d' ' -f1) && "
            f'if [ "$have" != {v.calico_manifest_sha256} ]; then echo "{url}: sha256 $have is not the pinned '
            f'{v.calico_manifest_sha256} (versions.calico_manifest_sha256): refused, nothing applied" >&2; '
            f"rm -f $t; exit 1; fi && {KUBECTL} apply --server-side --field-manager=osk8s -f $t; rc=$?; rm -f $t; "
            "exit $rc",
            sudo=True,
            timeout=600,
        )

    return Step(f"CNI {c.cni} {v.calico}", check, apply, node=name)


def join_step(s, master, r, name: str) -> Step:
    def check():
        if r.run("test -f /etc/kubernetes/kubelet.conf", warn=True).exited == 0:
            return Status(True, "joined (/etc/kubernetes/kubelet.conf present)")
        return Status(False, f"{name} is not in the cluster", f"kubeadm join {name} with a fresh token")

    def apply():
        token = log.secret(master.run("kubeadm token create --ttl 30m", sudo=True).stdout.strip())
        ca_hash = master.run(
            "openssl x509 -pubkey -in /etc/kubernetes/pki/ca.crt | openssl pkey -pubin -outform der "
            "| sha256sum | cut -d' ' -f1",
            sudo=True,
        ).stdout.strip()
        endpoint = f"{advertise_address(master)}:6443"
        tmp = r.temp_file(join_config(s.settings, name, endpoint, token, f"sha256:{ca_hash}"))
        try:
            r.run(f"kubeadm join --config {shlex.quote(tmp)}", sudo=True, timeout=1800)
        finally:
            r.run(f"rm -f {tmp}", warn=True)

    return Step("kubeadm join", check, apply, node=name)


def run_control_plane(s) -> None:
    roles = lab.node_names(s.settings)
    masters = [n for n, role in roles.items() if role == "control-plane"]
    if len(masters) != 1:
        raise StepFailed(f"one control-plane node is supported, config has {len(masters)}")
    with connections(s) as remotes:
        master = remotes[masters[0]]
        s.converge(
            [init_step(s, master, masters[0]), kubeconfig_step(s, master, masters[0]), cni_step(s, master, masters[0])]
        )
        workers = {n: [join_step(s, master, remotes[n], n)] for n, role in roles.items() if role == "worker"}
        if workers:
            s.converge_nodes(workers)
