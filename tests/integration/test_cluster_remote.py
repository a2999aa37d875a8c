"""cluster.deploy over real SSH: three sshd nodes reachable only through a gateway host (the
jump path is real); kubeadm, kubelet, apt-get and friends on the nodes are stand-ins
(tests/peers/k8s_standin: no Kubernetes node can run here), which record every call. The
add-ons go to a fake Kubernetes API (tests/peers/fake_kube_api.py: no API server can run here)
with cloud.conf built from the real loopback OpenStack (subnet, networks, app credential)."""

import re
import subprocess
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_root_tools, run_inv
from tests.peers.fake_kube_api import FakeKubeApi
from tests.peers.k8s_nodes import calls, node_hosts

pytestmark = pytest.mark.sshd
LAB = f"k{uuid.uuid4().hex[:4]}"


@pytest.fixture(scope="module")
def lab(loopback_cloud):
    require_root_tools("sshd", "ip", "unshare", "openssl", "qemu-img")
    with ExitStack() as cleanup:  # whatever setup made is undone, even when setup fails half-way
        hosts = node_hosts(Path(f"/run/osk8s-k8s-{uuid.uuid4().hex[:6]}"), LAB, workers=2)
        cleanup.callback(hosts.stop)
        api = FakeKubeApi([h.name for h in hosts.hosts[1:]]).__enter__()
        cleanup.callback(api.__exit__, None, None, None)
        (hosts.private(hosts.hosts[1], "/var/lib/osk8s-standin") / "admin.conf.template").write_text(api.kubeconfig())
        state = hosts.workdir / "state"
        image = hosts.workdir / "node.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
        cfg = hosts.workdir / "lab.yaml"
        cfg.write_text(yaml.safe_dump({
            "lab": {"name": LAB, "state_dir": str(state)}, "versions": hosts.pins,
            "devstack": {"ssh_target": "gateway", "ssh_config": str(hosts.ssh_config)},
            "openstack": {"clouds_yaml": str(loopback_cloud), "cloud": "demo", "admin_cloud": "admin",
                          "image": {"name": "node", "file": str(image)}},
            "verify": {"timeout": 30},
            "cluster": {"ssh_config": str(hosts.ssh_config), "api_server": api.url,
                        "nodes": [{"name": "master", "role": "control-plane"}, {"name": "worker-1", "role": "worker"},
                                  {"name": "worker-2", "role": "worker"}]}}))

        class Lab:
            def inv(self, *args):
                return run_inv(["-f", str(cfg), *args], timeout=300)

        lab = Lab()
        lab.hosts, lab.state, lab.api = hosts, state, api
        cleanup.callback(lab.inv, "openstack.teardown")
        prepared = lab.inv("openstack.prepare")  # the application credential OCCM and cinder-csi use
        assert prepared.returncode == 0, prepared.stdout + prepared.stderr
        yield lab


def _count(hosts, pattern):
    return {h.name: sum(1 for c in calls(hosts, h) if re.match(pattern, c)) for h in hosts.hosts[1:]}


def test_nodes_are_reachable_only_through_the_gateway(lab):
    """Checked on the topology, sending nothing: a probe from this namespace would follow the
    machine's default route off the machine, which tests must never do."""
    gw = lab.hosts.hosts[0].netns
    for h in lab.hosts.hosts[1:]:
        link = f"{h.netns}h"  # the node's only link: its peer end lives in the gateway's namespace
        assert subprocess.run(["ip", "link", "show", link], capture_output=True).returncode != 0
        assert subprocess.run(["ip", "netns", "exec", gw, "ip", "link", "show", link], capture_output=True).returncode == 0
        routes = subprocess.run(["ip", "-o", "route", "show", "table", "main"], capture_output=True, text=True).stdout
        assert h.address.rsplit(".", 1)[0] not in routes


def test_dry_run_changes_nothing(lab):
    r = lab.inv("cluster.deploy", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "would change" in r.stdout and "kubeadm init" in r.stdout and lab.api.writes() == 0
    assert all(not [c for c in calls(lab.hosts, h) if not c.startswith(("sysctl -n", "kubeadm version"))]
               for h in lab.hosts.hosts[1:])


def test_deploy_then_second_deploy_installs_inits_and_joins_nothing(lab):
    first = lab.inv("cluster.deploy")
    assert first.returncode == 0, first.stdout + first.stderr
    master, w1, w2 = lab.hosts.hosts[1:]
    assert _count(lab.hosts, r"apt-get .*install") == {h.name: 2 for h in (master, w1, w2)}  # containerd, k8s
    assert _count(lab.hosts, r"kubeadm init") == {master.name: 1, w1.name: 0, w2.name: 0}
    assert _count(lab.hosts, r"kubeadm join") == {master.name: 0, w1.name: 1, w2.name: 1}
    assert _count(lab.hosts, r"curl .*calico/v3.31.0/manifests/calico.yaml") == {master.name: 1, w1.name: 0, w2.name: 0}
    assert _count(lab.hosts, r"kubectl .* apply .*-f /tmp/") == {master.name: 1, w1.name: 0, w2.name: 0}  # the checked copy
    tokens = (lab.hosts.private(master, "/var/lib/osk8s-standin") / "tokens").read_text().split()
    for w in (w1, w2):
        assert (lab.hosts.private(w, "/var/lib/osk8s-standin") / "joined-with").read_text().strip() in tokens
    for node in (master.name, w1.name, w2.name):  # per-node rows in the summary
        assert re.search(rf"kubernetes packages\s+{re.escape(node)}\s+changed", first.stdout), first.stdout
    kubeconfig = lab.state / LAB / "admin.conf"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    init = (lab.hosts.private(master, "/etc/kubernetes") / "osk8s-init.yaml")
    assert init.stat().st_mode & 0o777 == 0o600 and "v1beta4" in init.read_text()
    assert not any(t in first.stdout + first.stderr for t in tokens)  # join tokens never logged
    applied = {p.rsplit("/", 1)[-1] for m, p in lab.api.requests if m == "PATCH"}
    assert {"occm-cloud-config", "cinder-csi-cloud-config", "openstack-cloud-controller-manager",
            "csi-cinder-nodeplugin", "csi-cinder-controllerplugin", "cinder.csi.openstack.org", "csi-cinder"} <= applied
    import base64

    conf = base64.b64decode(lab.api.objects["/api/v1/namespaces/kube-system/secrets/occm-cloud-config"]["data"]["cloud.conf"]).decode()
    cred = yaml.safe_load((lab.state / LAB / "app-credential.yaml").read_text())
    assert f"application-credential-id = {cred['id']}" in conf and "\npassword" not in conf
    assert cred["secret"] not in first.stdout + first.stderr
    assert "every node has an OpenStack providerID" in first.stderr and "registered on all 3 nodes" in first.stderr
    writes = lab.api.writes()

    before = {h.name: len(calls(lab.hosts, h)) for h in lab.hosts.hosts[1:]}
    second = lab.inv("cluster.deploy")
    assert second.returncode == 0 and not re.search(r"\schanged\s", second.stdout), second.stdout + second.stderr
    new = {h.name: calls(lab.hosts, h)[before[h.name]:] for h in lab.hosts.hosts[1:]}
    assert not [c for cs in new.values() for c in cs if re.match(r"(apt-get .*install|kubeadm (init|join|token)|kubectl .* apply)", c)]
    assert lab.api.writes() == writes  # nothing re-applied: every object already as wanted
    status = lab.inv("cluster.status")
    assert status.returncode == 0 and "openstack:///" in status.stdout


def test_destroy_removes_the_cluster_then_the_cloud_twice(lab):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": "default"},
           "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
    lab.api.objects["/api/v1/namespaces/default/services/echo"] = svc  # as a user would have made it
    r = lab.inv("cluster.destroy")
    assert r.returncode == 0, r.stdout + r.stderr
    deleted = [p for m, p in lab.api.requests if m == "DELETE"]
    assert "/api/v1/namespaces/default/services/echo" in deleted
    assert not [p for p in lab.api.objects if "osk8s" in str(lab.api.objects[p]["metadata"].get("labels", {}))]
    master, w1, w2 = lab.hosts.hosts[1:]
    drained = (lab.hosts.private(master, "/var/lib/osk8s-standin") / "drained").read_text().split()
    assert sorted(drained) == sorted([w1.name, w2.name])
    for h in (master, w1, w2):
        assert not list(lab.hosts.private(h, "/etc/kubernetes").glob("*.conf"))
    assert not (lab.state / LAB / "admin.conf").exists() and "0 objects with tag" in r.stdout
    again = lab.inv("cluster.destroy")
    assert again.returncode == 0 and not re.search(r"\schanged\s", again.stdout), again.stdout + again.stderr
