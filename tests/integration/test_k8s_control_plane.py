"""The real Kubernetes control plane on the sshd test nodes, brought up by the tool itself.

Topology: a gateway (jump host, the devstack VM's role) and two nodes behind it, `<lab>-master` and
`<lab>-worker-1`, each in its own network namespace (o8c*) with its own /etc/kubernetes,
/var/lib/kubelet, /var/lib/etcd, /var/log/pods (osk8s_tasks/embedded/nodes.py, osk8s_tasks/embedded/simnodes.py).
Over real SSH through the gateway, the tool runs `cluster.prepare-nodes`, then the control-plane
part of `cluster.deploy` (osk8s_tasks/cluster.py run_control_plane: kubeadm init with its rendered
config, the admin kubeconfig, the CNI manifest, kubeadm join with a fresh token), then the node part
of `cluster.destroy` (drain, kubeadm reset: osk8s_tasks/cluster_destroy.py). The add-ons are left
out: they wait for OpenStack providerIDs, which only the cloud controller sets (a later test).

Real: kubeadm v1.37.2 and kubectl (built from their Go modules), the /etc/kubernetes tree kubeadm
writes, etcd, kube-apiserver, kube-controller-manager and kube-scheduler run from kubeadm's own
static pod manifests, `kubeadm join` discovery (cluster-info signed for the token) and TLS
bootstrap (a CSR approved and signed by the real kube-controller-manager), the Node authorizer and
NodeRestriction, the scheduler's bindings, the API reached through an SSH forward with TLS checked
against the kubeadm CA (osk8s_tasks/kube.py connect).
Stand-ins: the kubelet (tests/peers/k8s/kubelet/: static pods as processes, TLS bootstrap, Node,
Lease, mirror pods), the container runtime (tests/peers/k8s/runtime.py), kwok for the status of
nodes and ordinary pods, and the OS tools of tests/peers/k8s_standin.

kubeadm phases skipped: only `preflight`, in `kubeadm init` and `kubeadm join` (the kubeadm
wrapper adds --skip-phases=preflight): its checks ask the container runtime over the CRI socket,
look for the kubelet's cgroup setup and swap, and pull the control plane images; no CRI runtime,
image or registry exists here. Every other phase runs as upstream wrote it, the add-ons included
(CoreDNS stays Pending: it does not tolerate the cloud provider's uninitialized taint, as on a real
lab before the cloud controller runs). `kubeadm reset` runs all its phases; its removal of the
containers through the CRI cannot reach a runtime, so the wrapper then asks the stand-in runtime
to do it (tests/peers/k8s/runtime.py remove-all).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from osk8s_tasks.cluster import render as cluster_render
from osk8s_tasks.core import config, kube
from osk8s_tasks.core import ssh as remote
from osk8s_tasks.core.engine import StepFailed
from osk8s_tasks.embedded import build
from osk8s_tasks.embedded.nodes import NodesConfig, NodesLab
from osk8s_tasks.embedded.simnodes import calls
from tests.conftest import ROOT, require_root_tools, run_inv
from tests.peers.k8s import kubelet

pytestmark = pytest.mark.sshd
LAB = f"c{uuid.uuid4().hex[:4]}"
PREFIX = "o8c"  # this test's network namespaces
RUNNER_IMAGE = "registry.k8s.io/provider-os/k8s-keystone-auth:v0.0.0-osk8s-test"  # a pod runner image, a tag it refuses

# Test-only tasks (the tool's task surface stays as it is): the control-plane part of cluster.deploy
# without the add-ons, and the node part of cluster.destroy without the cloud teardown.
TEST_TASKS = """
from invoke import task
from osk8s_tasks import ns
from osk8s_tasks.core.engine import session


@task(name="control-plane")
def control_plane(c):
    from osk8s_tasks.cluster.control_plane import run_control_plane
    with session(c, "cluster.control-plane") as s:
        run_control_plane(s)


@task(name="reset-nodes")
def reset_nodes(c):
    from osk8s_tasks.cluster.destroy import drain_steps, reset_step
    from osk8s_tasks.cluster.nodes import connections
    from osk8s_tasks.core.lab import node_names
    with session(c, "cluster.reset-nodes") as s:
        master = next(n for n, role in node_names(s.settings).items() if role == "control-plane")
        with connections(s) as remotes:
            s.converge(drain_steps(s, remotes[master]))
            s.converge_nodes({n: [reset_step(r, n)] for n, r in remotes.items() if n != master})
            s.converge([reset_step(remotes[master], master)])


ns.add_task(control_plane)
ns.add_task(reset_nodes)
"""


class QuietLog:
    def bind(self, **_):
        return self

    def debug(self, *a, **k):
        pass

    info = warning = debug


@pytest.fixture(scope="module")
def lab():
    require_root_tools("sshd", "ip", "unshare", "gpg", "openssl")
    with ExitStack() as cleanup:
        nodes = NodesLab(NodesConfig(Path(f"/run/osk8s-cp-{uuid.uuid4().hex[:6]}"), LAB, workers=1, prefix=PREFIX))
        cleanup.callback(nodes.stop)
        ep = nodes.start()
        (nodes.hosts.workdir / "tasks.py").write_text(TEST_TASKS)

        class Lab:
            def inv(self, *args, timeout=600):
                return run_inv(
                    ["-r", str(nodes.hosts.workdir), "-f", str(ep.invoke_config), *args], cwd=ROOT, timeout=timeout
                )

            def kubectl(self, *args, check=True) -> str:
                """The real kubectl with the tool's admin kubeconfig, in the control plane's namespace."""
                out = subprocess.run(
                    [
                        "ip",
                        "netns",
                        "exec",
                        ep.netns[ep.control_plane],
                        str(build.binary("kubectl")),
                        "--kubeconfig",
                        str(ep.state_dir / "admin.conf"),
                        *args,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                if check:
                    assert out.returncode == 0, out.stderr
                return out.stdout

            def get(self, *args) -> dict:
                return json.loads(self.kubectl("get", *args, "-o", "json"))

            def settings(self):
                return config.validate(yaml.safe_load(ep.invoke_config.read_text()))

        lab = Lab()
        lab.nodes, lab.ep = nodes, ep
        lab.master, lab.worker = ep.control_plane, next(n for n in ep.nodes if n != ep.control_plane)
        lab.figures = {}
        yield lab
        if lab.figures:
            print("\nmeasured:", json.dumps(lab.figures))


def seconds(out: str, step: str, node: str) -> float:
    m = re.search(rf"{re.escape(step)}\s+{re.escape(node)}\s+\w+\s+([\d.]+)", out)
    assert m, out
    return float(m.group(1))


def count(lab, node, pattern) -> int:
    return sum(1 for c in calls(lab.nodes.hosts, lab.nodes._host(node)) if re.match(pattern, c))


def rss_kib(lab, node: str) -> dict[str, int]:
    """VmRSS by program: the control plane, kwok, the kubelet stand-in and the container shims."""
    out: dict[str, int] = {}
    for pid, comm in lab.nodes.processes(node):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))
        except (OSError, AttributeError):
            continue
        name = (
            "kubelet-standin"
            if b"tests.peers.k8s.kubelet" in cmdline
            else "shims"
            if b"shim.py" in cmdline
            else comm
            if comm in ("etcd", "kube-apiserver", "kube-controller", "kube-scheduler", "kwok")
            else None
        )
        if name:
            out[name] = out.get(name, 0) + rss
    return out


def test_topology_forwards_between_nodes_only(lab):
    """Workers reach the control plane through the gateway's namespace (the only one forwarding,
    and only between node links); this machine's namespace forwards nothing. Checked on the
    configuration: a probe would have to leave the namespaces to prove a negative."""
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"
    gw = lab.ep.netns[lab.ep.gateway]
    fwd = subprocess.run(["ip", "netns", "exec", gw, "cat", "/proc/sys/net/ipv4/ip_forward"], capture_output=True, text=True)
    assert fwd.stdout.strip() == "1"
    rules = subprocess.run(["ip", "netns", "exec", gw, "ip", "rule"], capture_output=True, text=True, check=True).stdout
    for node in lab.ep.nodes:  # what a node sends is routed by the nodes' table only
        assert re.search(rf"^100:\s+from all iif {lab.ep.netns[node]}h lookup 198\b", rules, re.M), rules
    table = subprocess.run(
        ["ip", "netns", "exec", gw, "ip", "route", "show", "table", "198"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    table = [r.strip() for r in table]
    assert "unreachable default" in table and len(table) == len(lab.ep.nodes) + 1, table
    assert all(r.startswith("198.19.") or r == "unreachable default" for r in table), table
    routes = subprocess.run(["ip", "-o", "route", "show", "table", "main"], capture_output=True, text=True).stdout
    for node, address in lab.ep.nodes.items():
        assert address.rsplit(".", 1)[0] not in routes
        assert subprocess.run(["ip", "link", "show", f"{lab.ep.netns[node]}h"], capture_output=True).returncode != 0


def test_kubeadm_validates_the_tools_configs(lab, tmp_path):
    """`kubeadm config validate` (the real one) accepts the tool's init and join configs, rendered
    now and the golden ones, and rejects broken ones."""
    kubeadm = str(build.binary("kubeadm"))
    s = lab.settings()
    rendered = {
        "init.yaml": cluster_render.init_config(s, "198.19.1.2", lab.master, "198.19.1.2"),
        "join.yaml": cluster_render.join_config(
            s, lab.worker, "198.19.1.2:6443", "abcdef.0123456789abcdef", "sha256:" + "0" * 64
        ),
    }
    for name, text in rendered.items():
        (tmp_path / name).write_text(text)
    goldens = [ROOT / "tests" / "golden" / "kubeadm-init.yaml", ROOT / "tests" / "golden" / "kubeadm-join.yaml"]
    for path in [tmp_path / "init.yaml", tmp_path / "join.yaml", *goldens]:
        r = subprocess.run([kubeadm, "config", "validate", "--config", str(path)], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip() == "ok", f"{path}: {r.stdout}{r.stderr}"
    broken = {
        "bad-subnet.yaml": rendered["init.yaml"].replace(s.cluster.pod_subnet, "10.244.0.0/33"),
        "unknown-field.yaml": rendered["join.yaml"].replace(
            "kind: JoinConfiguration", "kind: JoinConfiguration\nnodeRegistrations: {}"
        ),
        "old-api.yaml": rendered["init.yaml"].replace("kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta2"),
    }
    for name, text in broken.items():
        (tmp_path / name).write_text(text)
        r = subprocess.run([kubeadm, "config", "validate", "--config", str(tmp_path / name)], capture_output=True, text=True)
        assert r.returncode != 0, f"{name} accepted: {r.stdout}"


def test_deploy_brings_up_a_real_control_plane(lab):
    prepared = lab.inv("cluster.prepare-nodes")
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    t0 = time.monotonic()
    first = lab.inv("control-plane")
    assert first.returncode == 0, first.stdout + first.stderr
    lab.figures.update(
        control_plane_run_s=round(time.monotonic() - t0, 1),
        kubeadm_init_s=seconds(first.stdout, "kubeadm init", lab.master),
        kubeadm_join_s=seconds(first.stdout, "kubeadm join", lab.worker),
    )
    assert count(lab, lab.master, r"kubeadm init") == 1 and count(lab, lab.worker, r"kubeadm join") == 1
    # the real /etc/kubernetes tree kubeadm wrote on the control plane
    etc = lab.nodes.private(lab.master, "/etc/kubernetes")
    for f in (
        "admin.conf",
        "super-admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "kubelet.conf",
        "pki/ca.crt",
        "pki/ca.key",
        "pki/apiserver.crt",
        "pki/apiserver-kubelet-client.crt",
        "pki/front-proxy-ca.crt",
        "pki/sa.key",
        "pki/sa.pub",
        "pki/etcd/ca.crt",
        "pki/etcd/server.crt",
        "pki/apiserver-etcd-client.crt",
        "manifests/etcd.yaml",
        "manifests/kube-apiserver.yaml",
        "manifests/kube-controller-manager.yaml",
        "manifests/kube-scheduler.yaml",
    ):
        assert (etc / f).is_file(), f
    sans = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(etc / "pki/apiserver.crt")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "IP Address:127.0.0.1" in sans and f"IP Address:{lab.ep.nodes[lab.master]}" in sans
    apiserver = yaml.safe_load((etc / "manifests/kube-apiserver.yaml").read_text())["spec"]["containers"][0]
    assert apiserver["image"] == "registry.k8s.io/kube-apiserver:v1.37.2"
    assert (
        "--authorization-mode=Node,RBAC" in apiserver["command"]
        and "--enable-admission-plugins=NodeRestriction" in apiserver["command"]
    )
    # each component is the built binary, run with the manifest's command exactly
    containers = kubelet.status(lab.nodes.private(lab.master, "/var/lib/osk8s-standin")).containers
    assert sorted(c.rsplit("/", 1)[-1] for c in containers) == [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ]
    procs = {comm: pid for pid, comm in lab.nodes.processes(lab.master)}
    argv = Path(f"/proc/{procs['kube-apiserver']}/cmdline").read_bytes().split(b"\0")[:-1]
    assert [a.decode() for a in argv[1:]] == apiserver["command"][1:]
    assert argv[0].decode() == str(build.binary("kube-apiserver"))
    # their output as the CRI writes it, where the kubelet puts it
    logs = list(
        lab.nodes.private(lab.master, "/var/log/pods").glob(
            f"kube-system_kube-apiserver-{lab.master}_*/kube-apiserver/0.log"
        )
    )
    assert len(logs) == 1
    line = logs[0].read_text().splitlines()[0]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr) [FP] ", line), line
    rss = {k: v // 1024 for k, v in rss_kib(lab, lab.master).items()}
    rss["control_plane_and_kwok"] = sum(
        rss[k] for k in ("etcd", "kube-apiserver", "kube-controller", "kube-scheduler", "kwok")
    )
    lab.figures["rss_mib"] = rss
    lab.figures["rss_mib_worker"] = {k: v // 1024 for k, v in rss_kib(lab, lab.worker).items()}


def test_api_through_the_ssh_forward_with_the_kubeadm_ca(lab):
    """kube.connect as the tool uses it: 127.0.0.1:<free port> forwarded to the control plane's
    127.0.0.1:6443 through the jump host; TLS checked against the CA kubeadm generated."""
    s = lab.settings()
    ca = (lab.nodes.private(lab.master, "/etc/kubernetes") / "pki" / "ca.crt").read_text()
    local = yaml.safe_load((lab.ep.state_dir / "admin.conf").read_text())
    assert base64.b64decode(local["clusters"][0]["cluster"]["certificate-authority-data"]).decode() == ca
    with remote.through_jump_host(lab.ep.ssh_config, lab.ep.gateway, lab.ep.ssh_config, [lab.master], QuietLog()) as r:
        with kube.connect(s, r[lab.master]) as api:
            assert api.client.configuration.host.startswith("https://127.0.0.1:")
            assert api.client.configuration.verify_ssl and api.client.configuration.ssl_ca_cert
            assert api.call("GET", "/readyz") == (200, b"ok")
        # the same forward with another CA: refused (the check is real, not skipped)
        other = subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "/dev/null",
                "-subj",
                "/CN=kubernetes",
                "-days",
                "1",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        forged = lab.ep.state_dir / "admin.conf"
        saved = forged.read_text()
        try:
            local["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(other.encode()).decode()
            forged.write_text(yaml.safe_dump(local))
            with kube.connect(s, r[lab.master]) as api, pytest.raises(StepFailed, match="CERTIFICATE_VERIFY_FAILED"):
                api.call("GET", "/readyz")
        finally:
            forged.write_text(saved)


def test_nodes_registered_ready_and_tainted(lab):
    deadline = time.monotonic() + 60
    while True:
        nodes = {n["metadata"]["name"]: n for n in lab.get("nodes")["items"]}
        ready = {
            n: any(c["type"] == "Ready" and c["status"] == "True" for c in v["status"].get("conditions", []))
            for n, v in nodes.items()
        }
        if all(ready.values()) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert set(nodes) == {lab.master, lab.worker} and all(ready.values()), ready
    for name, node in nodes.items():
        labels, taints = node["metadata"]["labels"], {(t["key"], t["effect"]) for t in node["spec"].get("taints", [])}
        assert (
            labels["kubernetes.io/hostname"] == name
            and labels["kubernetes.io/os"] == "linux"
            and labels["kubernetes.io/arch"]
        )
        assert ("node.cloudprovider.kubernetes.io/uninitialized", "NoSchedule") in taints  # --cloud-provider=external
        assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.37.2"
        assert node["spec"]["podCIDR"]  # allocated by the real kube-controller-manager
        lease = lab.get("lease", "-n", "kube-node-lease", name)
        assert (
            lease["spec"]["holderIdentity"] == name
            and lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
        )
    assert ("node-role.kubernetes.io/control-plane", "NoSchedule") in {
        (t["key"], t["effect"]) for t in nodes[lab.master]["spec"]["taints"]
    }  # kubeadm's mark-control-plane
    assert "node-role.kubernetes.io/control-plane" not in nodes[lab.worker]["metadata"]["labels"]


def test_worker_joined_through_discovery_and_a_signed_csr(lab):
    standin = lab.nodes.private(lab.worker, "/var/lib/osk8s-standin")
    token = (standin / "joined-with").read_text().strip()
    fresh = lab.nodes.private(lab.master, "/var/lib/osk8s-standin") / "tokens"
    assert token and token in fresh.read_text().split()  # `kubeadm token create` by the join step
    token_id = token.split(".")[0]
    # discovery: cluster-info is signed for that token by the real bootstrap signer
    info = lab.get("configmap", "-n", "kube-public", "cluster-info")
    assert f"jws-kubeconfig-{token_id}" in info["data"]
    # TLS bootstrap: one CSR made with the token, approved and signed by the real kube-controller-manager
    csrs = [c for c in lab.get("csr")["items"] if c["spec"]["username"] == f"system:bootstrap:{token_id}"]
    assert len(csrs) == 1, [c["spec"]["username"] for c in lab.get("csr")["items"]]
    csr = csrs[0]
    assert csr["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
    assert sorted(csr["spec"]["usages"]) == ["client auth", "digital signature"]
    approved = next(c for c in csr["status"]["conditions"] if c["type"] == "Approved")
    assert approved["reason"] == "AutoApproved"  # pkg/controller/certificates/approver/sarapprove.go
    current = lab.nodes.private(lab.worker, "/var/lib/kubelet") / "pki" / "kubelet-client-current.pem"
    target = os.readlink(current)  # the node's own path: certificate_store.go's symlink to the newest pair
    assert target.startswith("/var/lib/kubelet/pki/kubelet-client-") and target.endswith(".pem")
    pem = current.parent / Path(target).name
    assert oct(pem.stat().st_mode & 0o777) == "0o600"
    assert base64.b64decode(csr["status"]["certificate"]).decode() in pem.read_text()
    subject = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-in", str(pem)], capture_output=True, text=True
    ).stdout
    assert f"O = system:nodes, CN = system:node:{lab.worker}" in subject
    ca = lab.nodes.private(lab.master, "/etc/kubernetes") / "pki" / "ca.crt"
    assert subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(pem)], capture_output=True).returncode == 0
    kubelet_conf = yaml.safe_load((lab.nodes.private(lab.worker, "/etc/kubernetes") / "kubelet.conf").read_text())
    assert kubelet_conf["users"][0]["user"]["client-certificate"] == "/var/lib/kubelet/pki/kubelet-client-current.pem"
    assert not (lab.nodes.private(lab.worker, "/etc/kubernetes") / "bootstrap-kubelet.conf").exists()  # kubeadm removed it


def test_pods_really_scheduled_and_run(lab):
    """The tool's CNI manifest (the calico test DaemonSet): the real DaemonSet controller makes a pod
    per node, the real scheduler binds them, kwok reports them Running with an IP of the node's
    podCIDR. Mirror pods show the static pods' real containers. A pod with a pod-runner image is
    left alone by kwok (the runner refuses its tag): it stays Pending."""
    lab.kubectl(
        "run",
        "runner-image",
        "--image",
        RUNNER_IMAGE,
        "--restart=Never",
        "--overrides",
        json.dumps({"spec": {"nodeName": lab.worker, "tolerations": [{"operator": "Exists"}]}}),
    )
    nodes = {n["metadata"]["name"]: n for n in lab.get("nodes")["items"]}
    deadline = time.monotonic() + 60
    while True:
        pods = lab.get("pods", "-n", "kube-system", "-l", "k8s-app=calico-node")["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running" and p["status"].get("podIP")]
        if len(running) == 2 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert sorted(p["spec"]["nodeName"] for p in running) == sorted(nodes)
    import ipaddress

    for p in running:
        assert any(c["type"] == "PodScheduled" and c["status"] == "True" for c in p["status"]["conditions"])
        assert ipaddress.ip_address(p["status"]["podIP"]) in ipaddress.ip_network(
            nodes[p["spec"]["nodeName"]]["spec"]["podCIDR"]
        )
    mirrors = [
        p
        for p in lab.get("pods", "-n", "kube-system")["items"]
        if "kubernetes.io/config.mirror" in p["metadata"].get("annotations", {})
    ]
    assert sorted(p["metadata"]["name"] for p in mirrors) == sorted(
        f"{c}-{lab.master}" for c in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
    )
    for p in mirrors:
        assert p["status"]["phase"] == "Running" and p["metadata"]["ownerReferences"][0]["kind"] == "Node"
        assert p["status"]["containerStatuses"][0]["containerID"].startswith("osk8s-runtime-standin://")
    time.sleep(5)  # kwok acts within a second on pods it manages
    pending = lab.get("pod", "runner-image")
    assert pending["status"]["phase"] == "Pending" and not pending["status"].get("containerStatuses")
    log = (lab.nodes.private(lab.worker, "/var/lib/osk8s-standin") / "kubelet" / "kubelet.log").read_text()
    assert "default/runner-image stays Pending" in log
    lab.kubectl("delete", "pod", "runner-image", "--wait=true", "--timeout=30s")  # the kubelet finalizes it


def test_second_run_changes_nothing(lab):
    before = {n: len(calls(lab.nodes.hosts, lab.nodes._host(n))) for n in lab.ep.nodes}
    again = lab.inv("cluster.prepare-nodes")
    assert again.returncode == 0 and not re.search(r"\schanged\s", again.stdout), again.stdout
    second = lab.inv("control-plane")
    assert second.returncode == 0 and not re.search(r"\schanged\s", second.stdout), second.stdout + second.stderr
    new = [c for n in lab.ep.nodes for c in calls(lab.nodes.hosts, lab.nodes._host(n))[before[n] :]]
    assert not [
        c for c in new if re.match(r"(apt-get .*install|kubeadm (init|join|token)|kubectl .* apply|systemctl (re)?start)", c)
    ]


def test_a_manifest_edit_restarts_the_apiserver(lab):
    """As verify.keystone edits kube-apiserver.yaml (read, change, install over SSH) and then polls
    /readyz through one SSH forward: the kubelet replaces the apiserver's container with one running
    the new command; the others keep running; requests made while no apiserver listens fail at once
    (they hung with Fabric's forward_local, whose tunnel thread died on the refused channel)."""
    path = "/etc/kubernetes/manifests/kube-apiserver.yaml"
    before = {comm: pid for pid, comm in lab.nodes.processes(lab.master)}
    s = lab.settings()
    with remote.through_jump_host(lab.ep.ssh_config, lab.ep.gateway, lab.ep.ssh_config, [lab.master], QuietLog()) as r:
        m = r[lab.master]
        doc = yaml.safe_load(m.run(f"cat {path}", sudo=True).stdout)
        doc["spec"]["containers"][0]["command"].append("--profiling=false")
        t0 = time.monotonic()
        m.install(path, yaml.safe_dump(doc, sort_keys=False), mode=0o600)
        deadline, failed = time.monotonic() + 120, 0
        with kube.connect(s, m) as api:  # one forward for the whole restart, as verify.keystone keeps it
            while True:
                procs = {comm: pid for pid, comm in lab.nodes.processes(lab.master)}
                new = procs.get("kube-apiserver")
                try:
                    if new and new != before["kube-apiserver"] and api.call("GET", "/readyz") == (200, b"ok"):
                        break
                    api.call("GET", "/livez")  # meanwhile: answered, or failing at once while nothing listens
                except StepFailed:
                    failed += 1
                assert time.monotonic() < deadline, "kube-apiserver did not come back"
                time.sleep(0.5)
        lab.figures["apiserver_restart_s"] = round(time.monotonic() - t0, 1)
    assert failed, "no request was made while the apiserver was away"
    assert b"--profiling=false" in Path(f"/proc/{new}/cmdline").read_bytes().split(b"\0")
    assert procs["etcd"] == before["etcd"]
    logs = sorted(lab.nodes.private(lab.master, "/var/log/pods").glob(f"kube-system_kube-apiserver-{lab.master}_*"))
    assert logs  # a new pod UID: its own log directory (the old one is collected a minute later)
    mirror = lab.get("pod", "-n", "kube-system", f"kube-apiserver-{lab.master}")
    deadline = time.monotonic() + 30
    while "--profiling=false" not in mirror["spec"]["containers"][0]["command"] and time.monotonic() < deadline:
        time.sleep(2)
        mirror = lab.get("pod", "-n", "kube-system", f"kube-apiserver-{lab.master}")
    assert "--profiling=false" in mirror["spec"]["containers"][0]["command"]  # the mirror pod follows


def test_reset_stops_everything(lab):
    t0 = time.monotonic()
    r = lab.inv("reset-nodes")
    assert r.returncode == 0, r.stdout + r.stderr
    lab.figures["reset_s"] = round(time.monotonic() - t0, 1)
    for node in lab.ep.nodes:
        assert [comm for _, comm in lab.nodes.processes(node)] == ["sshd"], lab.nodes.processes(node)
        assert not list(lab.nodes.private(node, "/etc/kubernetes").glob("*.conf"))
        assert not list(lab.nodes.private(node, "/var/lib/kubelet").iterdir())
        assert not kubelet.status(lab.nodes.private(node, "/var/lib/osk8s-standin")).active
    assert not list(lab.nodes.private(lab.master, "/var/lib/etcd").iterdir())
    again = lab.inv("reset-nodes")
    assert again.returncode == 0 and not re.search(r"\schanged\s", again.stdout), again.stdout + again.stderr


# ---- the stand-ins' pure parts (no lab needed) ------------------------------------------------------


@pytest.mark.parametrize(
    "method,target,want",
    [
        ("GET", "/api/v1/nodes?limit=1", "/api/v1/nodes?limit=1&fieldSelector=metadata.name%3Dn1"),  # kwok's waitForReady
        ("GET", "/api/v1/nodes?fieldSelector=metadata.name%3Dn1&watch=true", None),  # its informer: already scoped
        ("GET", "/api/v1/nodes/n1", None),
        ("PATCH", "/api/v1/nodes/n1/status", None),
        ("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1", None),
        ("GET", "/api/v1/namespaces/default/pods", None),  # refused by the Node authorizer, as it should be
    ],
)
def test_kwok_proxy_narrows_only_the_unscoped_node_list(method, target, want):
    from tests.peers.k8s.kwok import scoped

    assert scoped(method, target, "n1") == (want or target)


def test_static_pod_images_are_the_built_binaries_only():
    from tests.peers.k8s.kubelet import StaticPod, container_argv

    binaries = {b: f"/bin/{b}" for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")}
    versions = {"kubernetes": "v1.37.2", "etcd": "3.7.0"}
    pod = StaticPod("/etc/kubernetes/manifests/x.yaml", "u", "x-n", "kube-system", {})

    def argv(image, command=("kube-apiserver", "--a=1"), args=("--b",)):
        return container_argv(
            pod, {"name": "c", "image": image, "command": list(command), "args": list(args)}, binaries, versions
        )

    assert argv("registry.k8s.io/kube-apiserver:v1.37.2") == ["/bin/kube-apiserver", "--a=1", "--b"]
    assert argv("registry.k8s.io/etcd:3.7.0-0", ("etcd", "--data-dir=/var/lib/etcd"), ())[0] == "/bin/etcd"
    for image, command in [
        ("registry.k8s.io/kube-apiserver:v1.37.1", ("kube-apiserver",)),  # not the built version
        ("registry.k8s.io/etcd:3.6.5-0", ("etcd",)),
        ("registry.k8s.io/kube-apiserver@sha256:" + "0" * 64, ("kube-apiserver",)),
        ("registry.k8s.io/kube-proxy:v1.37.2", ("kube-proxy",)),  # not a static pod binary here
        ("registry.k8s.io/kube-apiserver:v1.37.2", ("/bin/sh", "-c", "kube-apiserver")),
    ]:
        with pytest.raises(ValueError):
            argv(image, command)


def test_cri_log_lines(tmp_path):
    """containerd's CRI log format: one `<time> <stream> <F|P> <content>` line per output line,
    lines over 16 KiB cut into P pieces, a last line without newline written at EOF."""
    from tests.peers.k8s.shim import LogWriter, rfc3339nano

    assert rfc3339nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert rfc3339nano(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    w = LogWriter(str(tmp_path / "c" / "0.log"))
    w.feed("stdout", b"one\ntw")
    w.feed("stderr", b"err\n")
    w.feed("stdout", b"o\n" + b"x" * (16 * 1024 + 5) + b"\n")
    w.feed("stdout", b"tail")
    w.close()
    lines = [ln.split(" ", 3) for ln in (tmp_path / "c" / "0.log").read_text().splitlines()]
    assert [(s, t, c[:5]) for _, s, t, c in lines] == [
        ("stdout", "F", "one"),
        ("stderr", "F", "err"),
        ("stdout", "F", "two"),
        ("stdout", "P", "xxxxx"),
        ("stdout", "F", "xxxxx"),
        ("stdout", "F", "tail"),
    ]
    assert len(lines[3][3]) == 16 * 1024 and len(lines[4][3]) == 5
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", ln[0]) for ln in lines)


def test_kubelet_flags_as_kubeadm_writes_them(tmp_path):
    from tests.peers.k8s.kubelet import initial_node, parse_flags, parse_taints

    f = parse_flags(
        [
            "--kubeconfig=/etc/kubernetes/kubelet.conf",
            "--config",
            "/var/lib/kubelet/config.yaml",
            "--hostname-override=lab-worker-1",
            "--cloud-provider=external",
            "--register-with-taints=a=b:NoSchedule,c:NoExecute",
            f"--root-dir={tmp_path}",
        ]
    )
    assert f.hostname_override == "lab-worker-1" and f.config == "/var/lib/kubelet/config.yaml"
    assert parse_taints(f.register_with_taints) == [
        {"key": "a", "value": "b", "effect": "NoSchedule"},
        {"key": "c", "effect": "NoExecute"},
    ]
    with pytest.raises(SystemExit, match="unknown flag: --no-such-flag"):
        parse_flags(["--no-such-flag=1"])
    node = initial_node("lab-worker-1", "lab-worker-1", f, {}, "v1.37.2")
    assert node["spec"]["taints"][-1] == {
        "key": "node.cloudprovider.kubernetes.io/uninitialized",
        "value": "true",
        "effect": "NoSchedule",
    }
    assert node["status"]["addresses"] == [{"type": "Hostname", "address": "lab-worker-1"}]  # the cloud provider sets them
    assert "alpha.kubernetes.io/provided-node-ip" not in node["metadata"]["annotations"]
    f.node_ip = "198.19.2.2"
    node = initial_node("lab-worker-1", "lab-worker-1", f, {}, "v1.37.2")
    assert node["metadata"]["annotations"]["alpha.kubernetes.io/provided-node-ip"] == "198.19.2.2"
    assert node["status"]["addresses"][0] == {"type": "InternalIP", "address": "198.19.2.2"}
