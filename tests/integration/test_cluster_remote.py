"""cluster.deploy and cluster.destroy over real SSH through a gateway host, against the real
Kubernetes control plane and the real cloud controllers on the loopback OpenStack.

Topology: a gateway (the devstack VM's role) and three sshd nodes behind it (master, worker-1,
worker-2), each in its own network namespace (osk8s_tasks/embedded/nodes.py); each node reaches the loopback
OpenStack at 127.0.0.1 through osk8s_tasks/embedded/netfwd.py, as a real lab's nodes reach DevStack. The
fixture runs `openstack.deploy`: the Nova servers <lab>-<node> (fake virt driver) that OCCM finds by
node name.

Real: kubeadm init/join and the control plane (see test_k8s_control_plane.py), the add-ons the tool
applies by server-side apply, and the programs they run: openstack-cloud-controller-manager (its node
controller gives each node its providerID, addresses and zone; its service controller builds the
Octavia load balancer of a LoadBalancer Service and deletes it through the Service's finalizer),
cinder-csi-plugin's controller service with csi-provisioner, csi-attacher and csi-resizer, each with
its pod's ServiceAccount token under the RBAC of the tool's manifests.
Stand-ins: the kubelet and container runtime (tests/peers/k8s/kubelet/, pods/; kwok for the status
of pods no program here plays), the CSI node plugin's registration (tests/peers/k8s/csinode.py:
node-driver-registrar cannot be built), livenessprobe (tests/peers/k8s/livenessprobe.py), kube-proxy
(tests/peers/k8s/proxy.py), the OS tools of tests/peers/k8s_standin."""

import base64
import json
import re
import subprocess
import time
import uuid
from contextlib import ExitStack

import openstack
import pytest
import yaml

from osk8s_tasks.embedded import build
from osk8s_tasks.embedded.nodes import on_loopback_cloud
from osk8s_tasks.embedded.simnodes import calls
from tests.conftest import require_root_tools, run_inv

pytestmark = pytest.mark.sshd
LAB = f"k{uuid.uuid4().hex[:4]}"
ADDON_KINDS = (
    "secret",
    "serviceaccount",
    "clusterrole",
    "clusterrolebinding",
    "rolebinding",
    "daemonset",
    "deployment",
    "csidriver",
    "storageclass",
)


@pytest.fixture(scope="module")
def lab(loopback_cloud):
    require_root_tools("sshd", "ip", "unshare", "openssl", "qemu-img", "gpg")
    with ExitStack() as cleanup:  # whatever setup made is undone, even when setup fails half-way
        nodes, ep = on_loopback_cloud(cleanup, "k8s", LAB, "o8e", loopback_cloud, workers=2, verify={"timeout": 180})

        class Lab:
            def inv(self, *args):
                return run_inv(["-f", str(ep.invoke_config), *args], timeout=900)

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
                    timeout=120,
                )
                assert out.returncode == 0 or not check, out.stderr
                return out.stdout

            def get(self, *args) -> dict:
                return json.loads(self.kubectl("get", *args, "-o", "json"))

        lab = Lab()
        lab.nodes, lab.ep, lab.hosts, lab.state = nodes, ep, nodes.hosts, ep.state_dir
        lab.conn = openstack.connect(cloud="demo")
        cleanup.callback(lab.inv, "openstack.teardown")
        deployed = lab.inv("openstack.deploy")  # app credential, security group, the servers OCCM finds by node name
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        lab.servers = {s.name: s for s in lab.conn.compute.servers() if s.name.startswith(f"{LAB}-")}
        assert sorted(lab.servers) == sorted(ep.nodes)
        yield lab


def _count(hosts, pattern):
    return {h.name: sum(1 for c in calls(hosts, h) if re.match(pattern, c)) for h in hosts.hosts[1:]}


def _addon_versions(lab) -> dict[str, str]:
    """resourceVersion of every object the tool applies (labelled osk8s.io/lab)."""
    out = {}
    for kind in ADDON_KINDS:
        for o in lab.get(kind, "-A", "-l", f"osk8s.io/lab={LAB}")["items"]:
            out[f"{o['kind']} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}"] = o["metadata"][
                "resourceVersion"
            ]
    return out


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
    assert "would change" in r.stdout and "kubeadm init" in r.stdout
    assert "Secret kube-system/occm-cloud-config" in r.stdout  # the add-ons are planned too
    assert all(
        not [c for c in calls(lab.hosts, h) if not c.startswith(("sysctl -n", "kubeadm version"))]
        for h in lab.hosts.hosts[1:]
    )


def test_deploy_then_second_deploy_installs_inits_joins_and_applies_nothing(lab):
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
    kubeconfig = lab.state / "admin.conf"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    init = lab.hosts.private(master, "/etc/kubernetes") / "osk8s-init.yaml"
    assert init.stat().st_mode & 0o777 == 0o600 and "v1beta4" in init.read_text()
    assert not any(t in first.stdout + first.stderr for t in tokens)  # join tokens never logged
    applied = _addon_versions(lab)
    for name in (
        "Secret kube-system/occm-cloud-config",
        "Secret kube-system/cinder-csi-cloud-config",
        "DaemonSet kube-system/openstack-cloud-controller-manager",
        "DaemonSet kube-system/csi-cinder-nodeplugin",
        "Deployment kube-system/csi-cinder-controllerplugin",
        "CSIDriver /cinder.csi.openstack.org",
        "StorageClass /csi-cinder",
    ):
        assert name in applied, sorted(applied)
    secret = lab.get("secret", "-n", "kube-system", "occm-cloud-config")
    conf = base64.b64decode(secret["data"]["cloud.conf"]).decode()
    cred = yaml.safe_load((lab.state / "app-credential.yaml").read_text())
    assert f"application-credential-id = {cred['id']}" in conf and "\npassword" not in conf
    assert cred["secret"] not in first.stdout + first.stderr
    assert "every node has an OpenStack providerID" in first.stderr and "registered on all 3 nodes" in first.stderr

    # what OCCM's node controller did: each node is its Nova server
    for node in lab.get("nodes")["items"]:
        name, server = node["metadata"]["name"], lab.servers[node["metadata"]["name"]]
        assert node["spec"]["providerID"] == f"openstack:///{server.id}"
        assert "node.cloudprovider.kubernetes.io/uninitialized" not in {t["key"] for t in node["spec"].get("taints") or []}
        fixed = next(iter(server.addresses.values()))[0]["addr"]
        addresses = {(a["type"], a["address"]) for a in node["status"]["addresses"]}
        assert ("InternalIP", fixed) in addresses, addresses
        assert ("Hostname", name) in addresses, addresses  # kept: kwok's node stage writes no addresses
        assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == server.availability_zone
        assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == f"{LAB}-k8s"
    # what the kubelet's CSI registration wrote for the node plugin (cinder-csi NodeGetInfo)
    for csinode in lab.get("csinodes")["items"]:
        driver = next(d for d in csinode["spec"]["drivers"] if d["name"] == "cinder.csi.openstack.org")
        assert driver["nodeID"] == lab.servers[csinode["metadata"]["name"]].id
        assert driver["topologyKeys"] == ["topology.cinder.csi.openstack.org/zone"]
    pods = lab.get("pods", "-n", "kube-system", "-l", f"osk8s.io/lab={LAB}")["items"]
    assert len(pods) == 1 + 1 + 3 and all(p["status"]["phase"] == "Running" for p in pods), [
        (p["metadata"]["name"], p["status"].get("phase")) for p in pods
    ]
    lab.applied = applied
    time.sleep(5)  # settled: the controllers' own writes to their objects' status are done

    before = {h.name: len(calls(lab.hosts, h)) for h in lab.hosts.hosts[1:]}
    versions = _addon_versions(lab)
    second = lab.inv("cluster.deploy")
    assert second.returncode == 0 and not re.search(r"\schanged\s", second.stdout), second.stdout + second.stderr
    new = {h.name: calls(lab.hosts, h)[before[h.name] :] for h in lab.hosts.hosts[1:]}
    assert not [
        c
        for cs in new.values()
        for c in cs
        if re.match(r"(apt-get .*install|kubeadm (init|join|token)|kubectl .* apply)", c)
    ]
    assert _addon_versions(lab) == versions  # nothing re-applied: every object already as wanted
    status = lab.inv("cluster.status")
    assert status.returncode == 0 and "openstack:///" in status.stdout


def test_a_load_balancer_service_is_built_by_occm_in_octavia(lab):
    """As a user would: a LoadBalancer Service; OCCM builds its load balancer (with
    manage-security-groups, its own group on the members' ports) and reports the floating IP."""
    lab.kubectl("create", "service", "loadbalancer", "echo", "--tcp=80:9376")
    deadline = time.monotonic() + 120
    while not (lab.get("service", "echo")["status"].get("loadBalancer") or {}).get("ingress"):
        assert time.monotonic() < deadline, lab.kubectl("describe", "service", "echo")
        time.sleep(2)
    svc = lab.get("service", "echo")
    name = f"kube_service_{LAB}_default_echo"
    lb = next(lab.conn.load_balancer.load_balancers(name=name))
    assert lb.provisioning_status == "ACTIVE" and name in lb.tags
    fip = next(lab.conn.network.ips(port_id=lb.vip_port_id))
    assert svc["status"]["loadBalancer"]["ingress"][0]["ip"] == fip.floating_ip_address
    node_port = svc["spec"]["ports"][0]["nodePort"]
    members = {
        (m.address, m.protocol_port)
        for p in lab.conn.load_balancer.pools(loadbalancer_id=lb.id)
        for m in lab.conn.load_balancer.members(p)
    }
    workers = {n: next(iter(s.addresses.values()))[0]["addr"] for n, s in lab.servers.items() if "worker" in n}
    assert members == {(a, node_port) for a in workers.values()}  # kubeadm excludes the control plane from LBs
    group = next(lab.conn.network.security_groups(name=f"lb-sg-{svc['metadata']['uid']}-default-echo"))
    for address in workers.values():
        port = next(lab.conn.network.ports(fixed_ips=f"ip_address={address}"))
        assert group.id in port.security_group_ids
    lab.lb = lb


def test_destroy_removes_the_cluster_then_the_cloud_twice(lab):
    r = lab.inv("cluster.destroy")
    assert r.returncode == 0, r.stdout + r.stderr
    # OCCM deleted the load balancer through the Service's finalizer, before the add-ons went
    assert re.search(r"LoadBalancer Services\s+local\s+changed", r.stdout), r.stdout
    assert lab.conn.load_balancer.find_load_balancer(lab.lb.id) is None
    assert not [g for g in lab.conn.network.security_groups() if g.name.startswith("lb-sg-")]
    master, w1, w2 = lab.hosts.hosts[1:]
    drained = (lab.hosts.private(master, "/var/lib/osk8s-standin") / "drained").read_text().split()
    assert sorted(drained) == sorted([w1.name, w2.name])
    for h in (master, w1, w2):
        assert not list(lab.hosts.private(h, "/etc/kubernetes").glob("*.conf"))
        assert [comm for _, comm in lab.nodes.processes(h.name)] == ["sshd"]
    assert not (lab.state / "admin.conf").exists() and "0 objects with tag" in r.stdout
    assert re.search(r"delete load balancers \(cluster\)\s+local\s+ok", r.stdout), r.stdout  # teardown found none left
    again = lab.inv("cluster.destroy")
    assert again.returncode == 0 and not re.search(r"\schanged\s", again.stdout), again.stdout + again.stderr
