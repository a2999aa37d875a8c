"""Every decide() and status verdict, as tables: facts in, decision out (no I/O). The integration
tests prove each read and act against the real peers; these pin down every branch in between."""

from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from osk8s_tasks.cluster import nodes
from osk8s_tasks.cluster.facts import Containerd
from osk8s_tasks.core import shapes
from osk8s_tasks.core.engine import StepFailed
from osk8s_tasks.openstack import images, resources, servers

WANT_FLAVOR = {"ram": 4096, "vcpus": 2, "disk": 20}


@pytest.mark.parametrize("have, action, text", [
    (None, "create", "create flavor f: {'ram': 4096, 'vcpus': 2, 'disk': 20}"),
    (NS(ram=4096, vcpus=2, disk=20), "none", "flavor f: 4096 MiB, 2 vCPU, 20 GB"),
    (NS(ram=4096, vcpus=2, disk=10), "replace", "disk 10 -> 20"),
    (NS(ram=2048, vcpus=4, disk=20), "replace", "ram 2048 -> 4096; vcpus 4 -> 2"),
])
def test_flavor(have, action, text):
    d = resources.decide_flavor(have, "f", WANT_FLAVOR)
    assert d.action == action and text in d.reason + d.diff
    assert d.obj is (have if action == "replace" else None)


KEY = Path("/lab/id_ed25519")


@pytest.mark.parametrize("have, local, action, text", [
    (None, "ssh-ed25519 AAAA c", "create", "import key /lab/id_ed25519 as keypair k"),
    (None, None, "create", "import a new key"),
    (NS(public_key="ssh-ed25519 AAAA other-comment"), "ssh-ed25519 AAAA c", "none", "matches id_ed25519"),
    (NS(public_key="ssh-ed25519 BBBB c"), "ssh-ed25519 AAAA c", "replace", "public key differs"),
    (NS(public_key="ssh-ed25519 AAAA c"), None, "replace", "no local private key"),
])
def test_keypair(have, local, action, text):
    d = resources.decide_keypair(have, "k", KEY, local)
    assert d.action == action and text in d.reason + d.diff


def rule(protocol, lo, hi, prefix=None, group=None, why="x", mine=True):
    return NS(protocol=protocol, port_range_min=lo, port_range_max=hi, remote_ip_prefix=prefix, remote_group_id=group,
              description=f"osk8s: {why}" if mine else "")


WANTED = [{"protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote": "10.0.0.0/24", "why": "ssh"},
          {"protocol": "ipip", "port_range_min": None, "port_range_max": None, "remote": "self", "why": "calico IP-in-IP"}]
SG = NS(id="sg1")


@pytest.mark.parametrize("group, rules, action, text", [
    (None, [], "create", "create g with 2 rules (from outside: 10.0.0.0/24): ssh, calico IP-in-IP"),
    (SG, [rule("tcp", 22, 22, "10.0.0.0/24"), rule("4", None, None, group="sg1")], "none", "all 2 rules present"),
    (SG, [rule("6", 22, 22, "10.0.0.0/24"), rule("ipip", None, None, group="sg1")], "none", "all 2 rules present"),
    (SG, [rule("tcp", 22, 22, "10.0.0.0/24")], "update", "add: calico IP-in-IP (ipip from self)"),
    (SG, [rule("tcp", 22, 22, "10.0.0.0/24"), rule("4", None, None, group="sg1"), rule("tcp", 22, 22, "0.0.0.0/0")],
     "update", "remove: x (tcp 22-22 from 0.0.0.0/0)"),
    (SG, [rule("tcp", 22, 22, "10.0.0.0/24"), rule("4", None, None, group="sg1"), rule("tcp", 80, 80, "0.0.0.0/0", mine=False)],
     "none", "all 2 rules present"),  # someone else's rule stays
])
def test_security_group(group, rules, action, text):
    d = resources.decide_secgroup(resources.GroupFacts(group, rules, ["10.0.0.0/24"]), "g", WANTED)
    assert d.action == action and text in d.reason + d.diff
    if action == "update":
        assert len(d.data["missing"]) + len(d.data["extra"]) == 1


def test_security_group_rules_are_open_to_the_allowed_cidrs_only():
    settings = NS(openstack=NS(nodeport_range="30000-32767"), cluster=NS(cni="calico"))
    rules = resources.wanted_rules(settings, ["203.0.113.0/24"])
    outside = [r for r in rules if r["remote"] != "self"]
    assert {r["remote"] for r in outside} == {"203.0.113.0/24"} and len(outside) == 5
    assert {(r["protocol"], r["port_range_min"]) for r in rules if r["remote"] == "self"} >= {("tcp", 10250), ("ipip", None)}


CRED = Path("/lab/app-credential.yaml")


@pytest.mark.parametrize("have, local, action", [
    (None, None, "create"), (None, {"id": "c1"}, "create"),
    (NS(id="c1"), {"id": "c1"}, "none"), (NS(id="c1"), {"id": "c0"}, "replace"), (NS(id="c1"), None, "replace"),
])
def test_application_credential(have, local, action):
    assert resources.decide_app_credential(have, local, "ac", CRED).action == action


URL = {"url": "https://x/node.qcow2", "checksum": "sha256:ab", "disk_format": "qcow2"}
FILE = {"file": "/img/node.qcow2", "disk_format": "qcow2"}


def image(name="lab-node", status="active", props=None, hash_value="h"):
    return NS(name=name, id="0123456789", status=status, properties=props or {}, hash_value=hash_value)


MINE = {images.SOURCE_PROPERTY: URL["url"], images.CHECKSUM_PROPERTY: URL["checksum"]}


@pytest.mark.parametrize("have, digest, source, action, text", [
    (None, None, URL, "create", "upload https://x/node.qcow2 as lab-node (qcow2)"),
    (image(props=MINE), None, URL, "none", "matches https://x/node.qcow2"),
    (image(props=dict(MINE, osk8s_checksum="sha256:cd")), None, URL, "replace", "replace lab-node"),
    (image(props=MINE, status="queued"), None, URL, "replace", "is not"),
    (image(name="node", props={}), None, URL, "create", "image node is not"),  # a pre-existing image is not replaced
    (image(hash_value="h"), "h", FILE, "none", "matches node.qcow2"),
    (image(hash_value="h"), "other", FILE, "replace", "replace lab-node with node.qcow2"),
    (image(name="node"), None, {}, "none", "TRUSTED BY NAME ONLY"),
])
def test_image(have, digest, source, action, text):
    d = images.decide_image(images.ImageFacts(have, digest), "lab-node", source)
    assert d.action == action and text in d.reason + d.diff


def test_no_image_and_no_source_is_an_error_naming_the_keys():
    with pytest.raises(StepFailed, match="openstack.image.url or openstack.image.file"):
        images.decide_image(images.ImageFacts(None, None), "lab-node", {})


WANT_SERVER = {"flavor": "f", "keypair": "k", "secgroup": "g", "image": "node", "network": "private", "config_drive": True}


def server(**kw):
    base = dict(status="ACTIVE", fault=None, security_groups=[{"name": "g"}], key_name="k",
                flavor={"original_name": "f"}, has_config_drive=True)
    return NS(**{**base, **kw})


@pytest.mark.parametrize("srv, action, text", [
    (None, "create", "boot s (worker): flavor f, image node, keypair k, security group g, network private"),
    (server(), "none", "ACTIVE (worker), keypair k, group g, config drive"),
    (server(status="BUILD"), "update", "still building"),
    (server(status="SHUTOFF"), "update", "start s"),
    (server(security_groups=[{"name": "default"}]), "update", "add g to s"),
])
def test_server(srv, action, text):
    d = servers.decide_server(srv, "s", "worker", WANT_SERVER)
    assert d.action == action and text in d.reason + d.diff


@pytest.mark.parametrize("srv, text", [
    (server(status="ERROR", fault={"message": "No valid host"}), "ERROR: No valid host"),
    (server(key_name="old"), "keypair old (want k)"),
    (server(flavor={"original_name": "small"}), "flavor small (want f)"),
    (server(has_config_drive=False), "no config drive"),
])
def test_server_drift_that_cannot_be_fixed_in_place_is_an_error_with_the_fix(srv, text):
    with pytest.raises(StepFailed, match="openstack.teardown") as e:
        servers.decide_server(srv, "s", "worker", WANT_SERVER)
    assert text in str(e.value)


@pytest.mark.parametrize("facts, outcome", [
    ((None, None, None), "error: does not exist"),
    ((NS(), None, None), "error: has no port"),
    ((NS(), NS(id="p"), None), "create"),
    ((NS(), NS(id="p"), NS(floating_ip_address="172.24.4.9", fixed_ip_address="10.0.0.5")), "none"),
])
def test_floating_ip(facts, outcome):
    if outcome.startswith("error"):
        with pytest.raises(StepFailed, match=outcome.split(": ")[1]):
            servers.decide_fip(facts, "s", "private", "public")
        return
    d = servers.decide_fip(facts, "s", "private", "public")
    assert d.action == outcome and (d.data.get("port") is facts[1] if outcome == "create" else "172.24.4.9" in d.reason)


# --- node verdicts --------------------------------------------------------------------------------


@pytest.mark.parametrize("have, ok, text", [
    ({"kubeadm": "v1.37.2", "kubelet": "v1.37.2", "kubectl": "v1.37.2"}, True, "v1.37.2 (held)"),
    ({"kubeadm": "v1.37.2", "kubelet": "v1.36.0", "kubectl": "v1.37.2"}, False, "kubelet v1.36.0"),
    ({"kubeadm": None, "kubelet": None, "kubectl": None}, False, "kubeadm missing, kubelet missing, kubectl missing"),
])
def test_kubernetes_packages(have, ok, text):
    st = nodes.kube_status(have, "1.37.2")
    assert st.ok is ok and text in st.reason and (ok or "pkgs.k8s.io/core:/stable:/v1.37" in st.diff)


@pytest.mark.parametrize("active, fstab, ok", [(False, False, True), (True, False, False), (False, True, False)])
def test_swap(active, fstab, ok):
    assert nodes.swap_status(active, fstab).ok is ok


@pytest.mark.parametrize("c, ok, text", [
    (Containerd(False, False, "inactive"), False, "not installed"),
    (Containerd(True, False, "active"), False, "systemd cgroup driver"),
    (Containerd(True, True, "inactive"), False, "containerd inactive"),
    (Containerd(True, True, "active"), True, "containerd active"),
])
def test_containerd(c, ok, text):
    st = nodes.containerd_status(c)
    assert st.ok is ok and text in st.reason


def test_modules():
    assert nodes.missing_modules({"overlay", "br_netfilter", "ext4"}) == []
    assert nodes.missing_modules({"overlay"}) == ["br_netfilter"]


@pytest.mark.parametrize("persisted, live, diff", [
    ("a = 1\nb = 0\n", {"a": "1", "b": "0"}, []),
    ("a = 1\nb = 0\n", {"a": "0", "b": "0"}, ["a 0 -> 1"]),  # the file alone is not enough: the live value counts
    ("", {"a": "1", "b": "0"}, ["persist in /f"]),  # the live value alone is not enough: a reboot loses it
    ("a = 1\n", {"a": "1"}, ["b (unset) -> 0", "persist in /f"]),
], ids=["as wanted", "live value differs", "not persisted", "one unset"])  # ids without the newlines: see test_fact_cases
def test_sysctl(persisted, live, diff):
    assert shapes.sysctl_diff({"a": "1", "b": "0"}, "/f", persisted, live) == diff
