"""Every decide() and status verdict, as tables: facts in, decision out (no I/O). The integration
tests prove each read and act against the real peers; these pin down every branch in between."""

from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from osk8s_tasks.cluster import nodes
from osk8s_tasks.cluster.facts import Containerd
from osk8s_tasks.core import shapes
from osk8s_tasks.core.engine import Decision, Status, StepFailed
from osk8s_tasks.openstack import images, resources, servers

WANT_FLAVOR = {"ram": 4096, "vcpus": 2, "disk": 20}


SMALL_DISK, OTHER_SHAPE = NS(ram=4096, vcpus=2, disk=10), NS(ram=2048, vcpus=4, disk=20)


@pytest.mark.parametrize(
    "have, decision",
    [
        (None, Decision("create", "no flavor f", "create flavor f: {'ram': 4096, 'vcpus': 2, 'disk': 20}")),
        (NS(ram=4096, vcpus=2, disk=20), Decision("none", "flavor f: 4096 MiB, 2 vCPU, 20 GB")),
        (SMALL_DISK, Decision("replace", "flavor f differs", "disk 10 -> 20", SMALL_DISK)),
        (OTHER_SHAPE, Decision("replace", "flavor f differs", "ram 2048 -> 4096; vcpus 4 -> 2", OTHER_SHAPE)),
    ],
    ids=["missing", "as wanted", "only disk differs", "ram and vcpus differ"],
)
def test_flavor(have, decision):
    assert resources.decide_flavor(have, "f", WANT_FLAVOR) == decision


KEY = Path("/lab/id_ed25519")


OTHER_KEY, SAME_KEY = NS(public_key="ssh-ed25519 BBBB c"), NS(public_key="ssh-ed25519 AAAA c")


@pytest.mark.parametrize(
    "have, local, decision",
    [
        (None, "ssh-ed25519 AAAA c", Decision("create", "no keypair k", "import key /lab/id_ed25519 as keypair k")),
        (None, None, Decision("create", "no keypair k", "import a new key /lab/id_ed25519 as keypair k")),
        (
            NS(public_key="ssh-ed25519 AAAA other-comment"),
            "ssh-ed25519 AAAA c",
            Decision("none", "keypair k matches id_ed25519 (private key 0600)"),
        ),
        (
            OTHER_KEY,
            "ssh-ed25519 AAAA c",
            Decision(
                "replace",
                "keypair k: public key differs from the local key",
                "replace keypair k with /lab/id_ed25519.pub",
                OTHER_KEY,
            ),
        ),
        (
            SAME_KEY,
            None,
            Decision("replace", "keypair k: no local private key", "replace keypair k with /lab/id_ed25519.pub", SAME_KEY),
        ),
    ],
    ids=["missing", "missing, no local key", "same key", "another key", "no local key"],
)
def test_keypair(have, local, decision):
    assert resources.decide_keypair(have, "k", KEY, local) == decision


def rule(protocol, lo, hi, prefix=None, group=None, why="x", mine=True):
    return NS(
        protocol=protocol,
        port_range_min=lo,
        port_range_max=hi,
        remote_ip_prefix=prefix,
        remote_group_id=group,
        description=f"osk8s: {why}" if mine else "",
    )


WANTED = [
    {"protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote": "10.0.0.0/24", "why": "ssh"},
    {"protocol": "ipip", "port_range_min": None, "port_range_max": None, "remote": "self", "why": "calico IP-in-IP"},
]
SG = NS(id="sg1")


SSH, IPIP = rule("tcp", 22, 22, "10.0.0.0/24"), rule("4", None, None, group="sg1")
OPEN_SSH, OPEN_WEB = rule("tcp", 22, 22, "0.0.0.0/0", why="ssh"), rule("tcp", 80, 80, "0.0.0.0/0", why="web")
BGP, UNDESCRIBED = rule("tcp", 179, 179, group="sg1", why="calico BGP"), rule("udp", 53, 53, "0.0.0.0/0")
UNDESCRIBED.description = None
CIDRS = ["10.0.0.0/24", "192.0.2.0/24"]


def update(reason, diff, missing=(), extra=()):
    return Decision("update", reason, diff, SG, {"missing": list(missing), "extra": list(extra)})


@pytest.mark.parametrize(
    "group, rules, decision",
    [
        (
            None,
            [],
            Decision(
                "create",
                "no security group g",
                "create g with 2 rules (from outside: 10.0.0.0/24, 192.0.2.0/24): ssh, calico IP-in-IP",
            ),
        ),
        (SG, [SSH, IPIP], Decision("none", "security group g: all 2 rules present, from outside 10.0.0.0/24, 192.0.2.0/24")),
        (
            SG,
            [rule("6", 22, 22, "10.0.0.0/24"), rule("ipip", None, None, group="sg1")],
            Decision("none", "security group g: all 2 rules present, from outside 10.0.0.0/24, 192.0.2.0/24"),
        ),
        (
            SG,
            [SSH],
            update(
                "1 rule(s) missing from g, 0 no longer wanted", "add: calico IP-in-IP (ipip from self)", missing=[WANTED[1]]
            ),
        ),
        (
            SG,
            [],
            update(
                "2 rule(s) missing from g, 0 no longer wanted",
                "add: ssh (tcp 22-22 from 10.0.0.0/24), calico IP-in-IP (ipip from self)",
                missing=WANTED,
            ),
        ),
        (
            SG,
            [SSH, IPIP, OPEN_SSH],
            update(
                "0 rule(s) missing from g, 1 no longer wanted", "remove: ssh (tcp 22-22 from 0.0.0.0/0)", extra=[OPEN_SSH]
            ),
        ),
        (
            SG,
            [IPIP, OPEN_SSH, OPEN_WEB],
            update(
                "1 rule(s) missing from g, 2 no longer wanted",
                "add: ssh (tcp 22-22 from 10.0.0.0/24); "
                "remove: ssh (tcp 22-22 from 0.0.0.0/0), web (tcp 80-80 from 0.0.0.0/0)",
                missing=[WANTED[0]],
                extra=[OPEN_SSH, OPEN_WEB],
            ),
        ),  # openstack.allowed_cidrs narrowed
        (
            SG,
            [SSH, IPIP, BGP],
            update(
                "0 rule(s) missing from g, 1 no longer wanted", "remove: calico BGP (tcp 179-179 from group)", extra=[BGP]
            ),
        ),  # cluster.cni changed
        (
            SG,
            [SSH, IPIP, rule("tcp", 80, 80, "0.0.0.0/0", mine=False), UNDESCRIBED],
            Decision("none", "security group g: all 2 rules present, from outside 10.0.0.0/24, 192.0.2.0/24"),
        ),  # others' stay
    ],
    ids=[
        "missing",
        "all present",
        "protocols by number",
        "one missing",
        "all missing",
        "one no longer wanted",
        "cidrs changed",
        "a group rule no longer wanted",
        "others' rules",
    ],
)
def test_security_group(group, rules, decision):
    assert resources.decide_secgroup(resources.GroupFacts(group, rules, CIDRS), "g", WANTED) == decision


def test_security_group_rules_are_open_to_the_allowed_cidrs_only():
    settings = NS(openstack=NS(nodeport_range="30000-32767"), cluster=NS(cni="calico"))
    rules = resources.wanted_rules(settings, ["203.0.113.0/24"])
    outside = [r for r in rules if r["remote"] != "self"]
    assert {r["remote"] for r in outside} == {"203.0.113.0/24"} and len(outside) == 5
    assert {(r["protocol"], r["port_range_min"]) for r in rules if r["remote"] == "self"} >= {("tcp", 10250), ("ipip", None)}


OUTSIDE = [
    ("icmp", None, None, "ping"),
    ("tcp", 22, 22, "ssh"),
    ("tcp", 6443, 6443, "kubernetes API"),
    ("tcp", 30000, 32000, "NodePort services"),
    ("udp", 30000, 32000, "NodePort services (udp)"),
]
CLUSTER = [("tcp", 10250, 10250, "kubelet"), ("tcp", 2379, 2380, "etcd")]
CNI = {
    "calico": [
        ("tcp", 179, 179, "calico BGP"),
        ("ipip", None, None, "calico IP-in-IP"),
        ("udp", 4789, 4789, "calico VXLAN"),
    ],
    "cilium": [("udp", 8472, 8472, "cilium VXLAN"), ("tcp", 4240, 4240, "cilium health")],
}


@pytest.mark.parametrize("cni", ["calico", "cilium"])
def test_the_rules_each_cni_needs_and_nothing_more(cni):
    """The whole rule set, as the nodes need it: what comes from outside once per allowed CIDR, the
    cluster's own traffic from the group itself."""
    settings = NS(openstack=NS(nodeport_range="30000-32000"), cluster=NS(cni=cni))
    want = [(p, a, b, cidr, w) for p, a, b, w in OUTSIDE for cidr in ("203.0.113.0/24", "198.51.100.0/24")]
    want += [(p, a, b, "self", w) for p, a, b, w in CLUSTER + CNI[cni]]
    assert resources.wanted_rules(settings, ["203.0.113.0/24", "198.51.100.0/24"]) == [
        {"protocol": p, "port_range_min": a, "port_range_max": b, "remote": r, "why": w} for p, a, b, r, w in want
    ]


CRED = Path("/lab/app-credential.yaml")


CRED_HAVE = NS(id="0123abcdef")
CREATE_CRED = Decision("create", "no application credential ac", "create ac (secret kept in /lab/app-credential.yaml, 0600)")
REPLACE_CRED = Decision("replace", "ac: its secret is not in /lab/app-credential.yaml", "replace ac", CRED_HAVE)


@pytest.mark.parametrize(
    "have, local, decision",
    [
        (None, None, CREATE_CRED),
        (None, {"id": "0123abcdef"}, CREATE_CRED),
        (
            CRED_HAVE,
            {"id": "0123abcdef"},
            Decision("none", "application credential ac (0123abcd), secret in app-credential.yaml (0600)"),
        ),
        (CRED_HAVE, {"id": "c0"}, REPLACE_CRED),
        (CRED_HAVE, None, REPLACE_CRED),
        (CRED_HAVE, {}, REPLACE_CRED),
    ],
    ids=["missing", "missing, a stale local file", "ours", "another credential's secret", "no local file", "empty file"],
)
def test_application_credential(have, local, decision):
    assert resources.decide_app_credential(have, local, "ac", CRED) == decision


URL = {"url": "https://x/node.qcow2", "checksum": "sha256:ab", "disk_format": "qcow2"}
FILE = {"file": "/img/node.qcow2", "disk_format": "qcow2"}


def image(name="lab-node", status="active", props=None, hash_value="h"):
    return NS(name=name, id="0123456789", status=status, properties=props or {}, hash_value=hash_value)


MINE = {images.SOURCE_PROPERTY: URL["url"], images.CHECKSUM_PROPERTY: URL["checksum"]}


URL_NO_SUM = {"url": "https://x/node.qcow2", "checksum": None, "disk_format": "raw"}
OTHER_SUM, QUEUED, HASHED = image(props=dict(MINE, osk8s_checksum="sha256:cd")), image(props=MINE, status="queued"), image()
SOURCE_ONLY = image(props={images.SOURCE_PROPERTY: URL["url"]})
REPLACE_URL = "image lab-node is not https://x/node.qcow2", "replace lab-node with https://x/node.qcow2"


@pytest.mark.parametrize(
    "have, digest, source, decision",
    [
        (None, None, URL, Decision("create", "no image lab-node", "upload https://x/node.qcow2 as lab-node (qcow2)")),
        (None, None, FILE, Decision("create", "no image lab-node", "upload node.qcow2 as lab-node (qcow2)")),
        (image(props=MINE), None, URL, Decision("none", "image lab-node matches https://x/node.qcow2")),
        (
            image(props={images.SOURCE_PROPERTY: URL["url"], images.CHECKSUM_PROPERTY: ""}),
            None,
            URL_NO_SUM,
            Decision("none", "image lab-node matches https://x/node.qcow2"),
        ),
        (
            SOURCE_ONLY,
            None,
            URL_NO_SUM,
            Decision("none", "image lab-node matches https://x/node.qcow2"),
        ),  # no checksum recorded, none configured
        (SOURCE_ONLY, None, URL, Decision("replace", *REPLACE_URL, SOURCE_ONLY)),
        (OTHER_SUM, None, URL, Decision("replace", *REPLACE_URL, OTHER_SUM)),
        (QUEUED, None, URL, Decision("replace", *REPLACE_URL, QUEUED)),
        (
            image(name="node", props={}),
            None,
            URL,  # a pre-existing image of the configured name is not replaced
            Decision("create", "image node is not https://x/node.qcow2", "upload https://x/node.qcow2 as lab-node"),
        ),
        (image(hash_value="h"), "h", FILE, Decision("none", "image lab-node matches node.qcow2")),
        (
            HASHED,
            "other",
            FILE,
            Decision("replace", "image lab-node is not node.qcow2", "replace lab-node with node.qcow2", HASHED),
        ),
        (
            image(name="node"),
            None,
            {},
            Decision("none", "image node (01234567) TRUSTED BY NAME ONLY: no image url/file/checksum"),
        ),
    ],
    ids=[
        "missing, url",
        "missing, file",
        "ours",
        "ours, no checksum",
        "ours, no checksum property",
        "checksum now configured",
        "another checksum",
        "upload unfinished",
        "pre-existing",
        "same file",
        "another file",
        "no source",
    ],
)
def test_image(have, digest, source, decision):
    assert images.decide_image(images.ImageFacts(have, digest), "lab-node", source) == decision


def test_no_image_and_no_source_is_an_error_naming_the_keys():
    with pytest.raises(StepFailed, match="openstack.image.url or openstack.image.file"):
        images.decide_image(images.ImageFacts(None, None), "lab-node", {})


WANT_SERVER = {"flavor": "f", "keypair": "k", "secgroup": "g", "image": "node", "network": "private", "config_drive": True}


def server(**kw):
    base = dict(
        status="ACTIVE",
        fault=None,
        security_groups=[{"name": "g"}],
        key_name="k",
        flavor={"original_name": "f"},
        has_config_drive=True,
    )
    return NS(**{**base, **kw})


BUILDING, SHUTOFF, NO_GROUP = server(status="BUILD"), server(status="SHUTOFF"), server(security_groups=[{"name": "default"}])
ACTIVE = "server s ACTIVE (worker), keypair k, group g"


@pytest.mark.parametrize(
    "srv, want, decision",
    [
        (
            None,
            {},
            Decision(
                "create",
                "no server s",
                "boot s (worker): flavor f, image node, keypair k, security group g, network private",
            ),
        ),
        (server(), {}, Decision("none", ACTIVE + ", config drive")),
        (server(has_config_drive=False), {"config_drive": False}, Decision("none", ACTIVE)),
        (server(flavor={"name": "f"}), {}, Decision("none", ACTIVE + ", config drive")),  # a flavor known by its name only
        (BUILDING, {}, Decision("update", "server s is still building", "wait until ACTIVE", BUILDING)),
        (SHUTOFF, {}, Decision("update", "server s is SHUTOFF", "start s", SHUTOFF)),
        (NO_GROUP, {}, Decision("update", "server s lacks security group g", "add g to s", NO_GROUP)),
    ],
    ids=["missing", "as wanted", "no config drive wanted", "flavor by name", "building", "stopped", "group missing"],
)
def test_server(srv, want, decision):
    assert servers.decide_server(srv, "s", "worker", {**WANT_SERVER, **want}) == decision


FIX = "Fix: delete it (inv openstack.teardown) and run openstack.servers again"


@pytest.mark.parametrize(
    "srv, message",
    [
        (
            server(status="ERROR", fault={"message": "No valid host"}),
            "server s is in ERROR: No valid host. Fix: inv openstack.teardown, then openstack.servers",
        ),
        (
            server(status="ERROR"),
            "server s is in ERROR: no fault message. Fix: inv openstack.teardown, then openstack.servers",
        ),
        (server(key_name="old"), f"server s differs in what cannot change in place: keypair old (want k). {FIX}"),
        (
            server(flavor={"original_name": "small"}),
            f"server s differs in what cannot change in place: flavor small (want f). {FIX}",
        ),
        (server(flavor={"name": "small"}), f"server s differs in what cannot change in place: flavor small (want f). {FIX}"),
        (
            server(key_name="old", flavor={"original_name": "small"}, has_config_drive=False),
            "server s differs in what cannot change in place: keypair old (want k), flavor small (want f), no config drive "
            f"(cloud-init needs it, or the metadata API, for the SSH key; openstack.config_drive is true). {FIX}",
        ),
    ],
    ids=["in ERROR", "in ERROR without a fault", "keypair", "flavor", "flavor by name", "all three"],
)
def test_server_drift_that_cannot_be_fixed_in_place_is_an_error_with_the_fix(srv, message):
    with pytest.raises(StepFailed) as e:
        servers.decide_server(srv, "s", "worker", WANT_SERVER)
    assert str(e.value) == message


PORT = NS(id="p")


@pytest.mark.parametrize(
    "facts, outcome",
    [
        ((None, None, None), "server s does not exist"),
        ((NS(), None, None), "server s has no port on private"),
        (
            (NS(), PORT, None),
            Decision("create", "s has no floating IP", "allocate from public and bind to s", data={"port": PORT}),
        ),
        (
            (NS(), PORT, NS(floating_ip_address="172.24.4.9", fixed_ip_address="10.0.0.5")),
            Decision("none", "s: floating IP 172.24.4.9 -> 10.0.0.5"),
        ),
    ],
    ids=["no server", "no port", "missing", "bound"],
)
def test_floating_ip(facts, outcome):
    if isinstance(outcome, str):
        with pytest.raises(StepFailed) as e:
            servers.decide_fip(facts, "s", "private", "public")
        assert str(e.value) == outcome
        return
    assert servers.decide_fip(facts, "s", "private", "public") == outcome


# --- node verdicts --------------------------------------------------------------------------------


INSTALL_KUBE = "install kubelet, kubeadm, kubectl 1.37.2 from pkgs.k8s.io/core:/stable:/v1.37, hold them"


@pytest.mark.parametrize(
    "have, status",
    [
        (
            {"kubeadm": "v1.37.2", "kubelet": "v1.37.2", "kubectl": "v1.37.2"},
            Status(True, "kubeadm, kubelet, kubectl v1.37.2 (held)"),
        ),
        (
            {"kubeadm": "v1.37.2", "kubelet": "v1.36.0", "kubectl": "v1.37.2"},
            Status(False, "kubernetes packages not at v1.37.2: kubelet v1.36.0", INSTALL_KUBE),
        ),
        (
            {"kubeadm": None, "kubelet": None, "kubectl": None},
            Status(
                False, "kubernetes packages not at v1.37.2: kubeadm missing, kubelet missing, kubectl missing", INSTALL_KUBE
            ),
        ),
    ],
    ids=["pinned", "one behind", "none installed"],
)
def test_kubernetes_packages(have, status):
    assert nodes.kube_status(have, "1.37.2") == status


SWAP_ON = Status(False, "swap is on (kubelet refuses to run with swap)", "swapoff -a; comment swap out of /etc/fstab")


@pytest.mark.parametrize(
    "active, fstab, status",
    [(False, False, Status(True, "swap off, none in /etc/fstab")), (True, False, SWAP_ON), (False, True, SWAP_ON)],
)
def test_swap(active, fstab, status):
    assert nodes.swap_status(active, fstab) == status


@pytest.mark.parametrize(
    "c, status",
    [
        (
            Containerd(False, False, "inactive"),
            Status(False, "containerd is not installed", "apt-get install containerd; systemd cgroup driver"),
        ),
        (
            Containerd(True, False, "active"),
            Status(False, "containerd does not use the systemd cgroup driver", "SystemdCgroup = true; restart containerd"),
        ),
        (
            Containerd(True, True, "inactive"),
            Status(False, "containerd inactive, systemd cgroup driver", "restart containerd"),
        ),
        (Containerd(True, True, "active"), Status(True, "containerd active, systemd cgroup driver", "restart containerd")),
    ],
    ids=["missing", "cgroupfs", "stopped", "running"],
)
def test_containerd(c, status):
    assert nodes.containerd_status(c) == status


def test_modules():
    assert nodes.missing_modules({"overlay", "br_netfilter", "ext4"}) == []
    assert nodes.missing_modules({"overlay"}) == ["br_netfilter"]
    assert nodes.missing_modules(set()) == ["overlay", "br_netfilter"]


@pytest.mark.parametrize(
    "persisted, live, diff",
    [
        ("a = 1\nb = 0\n", {"a": "1", "b": "0"}, []),
        ("a = 1\nb = 0\n", {"a": "0", "b": "0"}, ["a 0 -> 1"]),  # the file alone is not enough: the live value counts
        ("", {"a": "1", "b": "0"}, ["persist in /f"]),  # the live value alone is not enough: a reboot loses it
        ("a = 1\n", {"a": "1"}, ["b (unset) -> 0", "persist in /f"]),
    ],
    ids=["as wanted", "live value differs", "not persisted", "one unset"],
)  # ids without the newlines: see test_fact_cases
def test_sysctl(persisted, live, diff):
    assert shapes.sysctl_diff({"a": "1", "b": "0"}, "/f", persisted, live) == diff


def test_a_configured_nodes_ssh_config_is_checked_and_never_written(tmp_path):
    from osk8s_tasks.cluster.ssh_config import own_ssh_config_step
    from osk8s_tasks.core.engine import StepFailed

    mine = tmp_path / "my_ssh_config"
    step = own_ssh_config_step(str(mine))
    with pytest.raises(StepFailed, match=r"cluster.ssh_config = '.*my_ssh_config' does not exist. Fix: write it"):
        step.check()
    mine.write_text("Host n1\n")
    status = step.check()
    assert status.ok and f"your own file {mine}: nothing written" in status.reason
    assert step.apply is None and mine.read_text() == "Host n1\n"
