"""The verify diagnosis as tables: what the cloud holds in, findings out (verify.octavia), and the
Keystone policy model (verify.keystone.model). tests/integration/test_verify_cloud.py breaks the real
loopback cloud the same ways; here every branch and every word of each finding is pinned down."""

from types import SimpleNamespace as NS

import pytest

from osk8s_tasks.verify import octavia
from osk8s_tasks.verify.keystone import model


class Cloud:
    """What verify.octavia reads through openstacksdk (conn.load_balancer, conn.network and
    conn.block_storage), as data. Each call takes the arguments the SDK call takes and filters by
    them as the API does, so a check that asks for the wrong thing gets the wrong answer."""

    def __init__(
        self,
        lbs=(),
        listeners=(),
        members=None,
        fips=(),
        ports=(),
        rules=None,
        groups=None,
        volumes=(),
        policies=(),
        l7_rules=None,
    ):
        self.load_balancer = self.network = self.block_storage = self
        self._lbs, self._listeners, self._members, self._fips = list(lbs), list(listeners), members or {}, list(fips)
        self._ports, self._rules, self._groups, self._volumes = list(ports), rules or {}, groups or {}, list(volumes)
        self._policies, self._l7_rules = list(policies), l7_rules or {}

    def load_balancers(self):
        return iter(self._lbs)

    def listeners(self, *, load_balancer_id):
        return iter([x for x in self._listeners if x.load_balancer_id == load_balancer_id])

    def members(self, pool):
        if pool is None:  # the SDK asks for /lbaas/pools/None/members: Octavia answers 404
            raise LookupError("no pool None")
        return iter(self._members.get(pool, []))

    def ips(self, *, port_id):
        return iter([f for f in self._fips if f.port_id == port_id])

    def ports(self, *, fixed_ips):
        return iter([p for p in self._ports if fixed_ips == f"ip_address={p.address}"])

    def security_group_rules(self, *, security_group_id):
        return iter(self._rules.get(security_group_id, []))

    def get_security_group(self, group_id):
        return NS(id=group_id, name=self._groups[group_id])

    def volumes(self, *, details):
        # without details the API gives names and IDs only
        return iter(self._volumes if details else [NS(id=v.id, name=v.name) for v in self._volumes])

    def l7_policies(self, *, listener_id):
        return iter([p for p in self._policies if p.listener_id == listener_id])

    def l7_rules(self, policy):
        return iter(self._l7_rules.get(policy.id, []))


NAME, VIP, NODE_PORT = "kube_service_lab_default_echo", "10.0.0.50", 31320
NODES = {"lab-worker-1": "10.0.0.10", "lab-worker-2": "10.0.0.11"}


def rule(**kw):
    base = dict(
        direction="ingress",
        ether_type="IPv4",
        protocol="tcp",
        port_range_min=30000,
        port_range_max=32767,
        remote_ip_prefix=None,
        remote_group_id=None,
    )
    return NS(**{**base, **kw})


EGRESS = [
    rule(direction="egress", protocol=None, port_range_min=None, port_range_max=None),
    rule(direction="egress", ether_type="IPv6", protocol=None, port_range_min=None, port_range_max=None),
]


def lb_cloud(status="ACTIVE", listener_port=80, pool="pool-1", members=None, fip=True, rules=None, ports=None):
    """The load balancer OCCM builds for Service default/echo (port 80, NodePort 31320) on two nodes."""
    members = [NS(address=a, protocol_port=NODE_PORT) for a in NODES.values()] if members is None else members
    return Cloud(
        lbs=[
            NS(
                id="lb-0",
                name="kube_service_lab_default_other",
                provisioning_status="ACTIVE",
                vip_address="10.0.0.60",
                vip_port_id="port-vip-0",
            ),
            NS(id="lb-1", name=NAME, provisioning_status=status, vip_address=VIP, vip_port_id="port-vip-1"),
        ],
        listeners=[NS(load_balancer_id="lb-0", protocol="TCP", protocol_port=80, default_pool_id="pool-0")]
        + (
            [NS(load_balancer_id="lb-1", protocol="TCP", protocol_port=listener_port, default_pool_id=pool)]
            if listener_port
            else []
        ),
        members={"pool-0": [NS(address="10.0.0.99", protocol_port=30001)], "pool-1": members},
        fips=[NS(floating_ip_address="172.24.4.20", fixed_ip_address=VIP, port_id="port-vip-1")] if fip else [],
        ports=[NS(address=a, security_group_ids=["sg-default", "sg-k8s"]) for a in NODES.values()]
        if ports is None
        else ports,
        rules={"sg-default": EGRESS, "sg-k8s": EGRESS + [rule(remote_ip_prefix="10.0.0.0/24")] if rules is None else rules},
        groups={"sg-default": "default", "sg-k8s": "lab-k8s"},
    )


def check(cloud):
    return [(f.ok, f.aspect, f.detail) for f in octavia.check_load_balancer(cloud, NAME, 80, NODE_PORT, NODES, "lab-k8s")]


HEALTHY = [
    (True, "load balancer", "kube_service_lab_default_echo ACTIVE, VIP 10.0.0.50"),
    (True, "listener", "TCP 80"),
    (True, "pool members", "2 members, the nodes on NodePort 31320"),
    (True, "floating IP", "172.24.4.20 -> 10.0.0.50"),
    (True, "NodePort rule", "the nodes' security groups allow tcp 31320 from 10.0.0.50"),
]


def test_a_load_balancer_built_like_occm_builds_it_passes_every_aspect():
    assert check(lb_cloud()) == HEALTHY
    assert octavia.occm_lb_name("lab", "default", "echo") == NAME


@pytest.mark.parametrize(
    "cloud, findings",
    [
        (
            Cloud(),
            [
                (
                    False,
                    "load balancer",
                    "no Octavia load balancer kube_service_lab_default_echo: is the cloud controller "
                    "manager running and the Service of type LoadBalancer? (cluster.status)",
                )
            ],
        ),
        (
            lb_cloud(status="ERROR"),
            [
                (
                    False,
                    "load balancer",
                    "kube_service_lab_default_echo is ERROR: Octavia failed to build it (octavia-worker logs)",
                )
            ],
        ),
        (
            lb_cloud(status="PENDING_CREATE"),
            [(False, "load balancer", "kube_service_lab_default_echo is PENDING_CREATE: still being built")],
        ),
        (
            lb_cloud(listener_port=8080),
            HEALTHY[:1] + [(False, "listener", "no listener on the Service port 80 (listeners on [8080])")],
        ),
        (
            lb_cloud(listener_port=None),
            HEALTHY[:1] + [(False, "listener", "no listener on the Service port 80 (listeners on none)")],
        ),
    ],
    ids=["no load balancer", "in ERROR", "being built", "listener on another port", "no listener"],
)
def test_the_check_stops_at_the_first_missing_piece_and_names_it(cloud, findings):
    assert check(cloud) == findings


@pytest.mark.parametrize(
    "cloud, finding",
    [
        (
            lb_cloud(members=[NS(address="10.0.0.10", protocol_port=NODE_PORT), NS(address="10.0.0.11", protocol_port=80)]),
            (False, "pool members", "member 10.0.0.11 on port 80, the Service's NodePort is 31320"),
        ),  # the Service port
        (
            lb_cloud(
                members=[NS(address="10.0.0.10", protocol_port=NODE_PORT), NS(address="10.0.0.11", protocol_port=31000)]
            ),
            (False, "pool members", "member 10.0.0.11 on port 31000, the Service's NodePort is 31320"),
        ),
        (
            lb_cloud(members=[NS(address="10.0.0.10", protocol_port=NODE_PORT)]),
            (False, "pool members", "node lab-worker-2 (10.0.0.11) is not a member"),
        ),
        (
            lb_cloud(members=[NS(address=a, protocol_port=NODE_PORT) for a in (*NODES.values(), "10.0.0.7")]),
            (False, "pool members", "member 10.0.0.7 is not a node of the cluster"),
        ),
        (
            lb_cloud(pool=None),
            (
                False,
                "pool members",
                "node lab-worker-1 (10.0.0.10) is not a member; node lab-worker-2 (10.0.0.11) is not a member",
            ),
        ),
        (
            lb_cloud(members=[NS(address="10.0.0.10", protocol_port=80), NS(address="10.0.0.12", protocol_port=NODE_PORT)]),
            (
                False,
                "pool members",
                "node lab-worker-2 (10.0.0.11) is not a member; member 10.0.0.10 on port 80, the Service's "
                "NodePort is 31320; member 10.0.0.12 is not a node of the cluster",
            ),
        ),
    ],
    ids=["on the Service port", "on another NodePort", "node missing", "a stranger", "no pool", "all three"],
)
def test_pool_members_must_be_exactly_the_nodes_on_the_node_port(cloud, finding):
    assert check(cloud) == [HEALTHY[0], HEALTHY[1], finding, HEALTHY[3], HEALTHY[4]]


def test_no_floating_ip_on_the_vip_is_named():
    assert check(lb_cloud(fip=False))[3] == (
        False,
        "floating IP",
        "no floating IP bound to the VIP 10.0.0.50 (floating-network-id in cloud.conf?)",
    )


CLOSED = (
    "default, lab-k8s has no ingress rule for tcp 31320 (the NodePort) from 10.0.0.50, on {nodes}: the load "
    "balancer cannot reach the nodes. Fix: inv openstack.prepare (opens 30000-32767 in lab-k8s) or "
    "manage-security-groups = true"
)


@pytest.mark.parametrize(
    "cloud, detail",
    [
        (lb_cloud(rules=EGRESS), CLOSED.format(nodes="lab-worker-1, lab-worker-2")),  # a new group: egress rules only
        (
            lb_cloud(rules=EGRESS + [rule(remote_ip_prefix="172.24.4.0/24")]),
            CLOSED.format(nodes="lab-worker-1, lab-worker-2"),
        ),
        (
            lb_cloud(
                ports=[
                    NS(address="10.0.0.10", security_group_ids=["sg-default", "sg-k8s"]),
                    NS(address="10.0.0.11", security_group_ids=["sg-default"]),
                ]
            ),
            "default has no ingress rule for tcp 31320 (the NodePort) from 10.0.0.50, on lab-worker-2: "
            "the load balancer cannot reach the nodes. Fix: inv openstack.prepare (opens 30000-32767 in lab-k8s) "
            "or manage-security-groups = true",
        ),
        (
            lb_cloud(ports=[NS(address="10.0.0.10", security_group_ids=["sg-k8s"])]),
            "(no port with 10.0.0.11) has no ingress rule for tcp 31320 (the NodePort) from 10.0.0.50, "
            "on lab-worker-2: the load balancer cannot reach the nodes. "
            "Fix: inv openstack.prepare (opens 30000-32767 in lab-k8s) or manage-security-groups = true",
        ),
        (
            lb_cloud(
                ports=[
                    NS(address="10.0.0.10", security_group_ids=["sg-default"]),
                    NS(address="10.0.0.11", security_group_ids=["sg-k8s"]),
                ],
                rules=EGRESS,
            ),
            CLOSED.format(nodes="lab-worker-1, lab-worker-2"),
        ),  # each node's groups are named
    ],
    ids=["egress only", "another source", "one node without the group", "one node without a port", "different groups"],
)
def test_a_missing_node_port_rule_names_the_groups_and_nodes_and_the_fix(cloud, detail):
    assert check(cloud)[4] == (False, "NodePort rule", detail)


@pytest.mark.parametrize(
    "changes, allowed",
    [
        ({}, True),  # tcp 30000-32767 from anywhere
        ({"direction": "egress"}, False),  # every new group's default rules
        ({"ether_type": "IPv6"}, False),
        ({"ether_type": None}, True),  # Neutron's default ethertype is IPv4
        ({"protocol": "udp"}, False),
        ({"protocol": "6"}, True),  # tcp by number
        ({"protocol": "any"}, True),
        ({"protocol": None, "port_range_min": None, "port_range_max": None}, True),  # any protocol, any port
        ({"port_range_min": 30000, "port_range_max": 31000}, False),  # 31320 above the range
        ({"port_range_min": 31321, "port_range_max": 32767}, False),  # 31320 below the range
        ({"port_range_min": 31320, "port_range_max": 31320}, True),  # exactly the port
        ({"remote_ip_prefix": "10.0.0.0/26"}, True),  # the VIP's subnet
        ({"remote_ip_prefix": "10.0.0.5/26"}, True),  # host bits set: read as its network
        ({"remote_ip_prefix": "10.0.0.5/32"}, True),
        ({"remote_ip_prefix": "172.24.4.0/24"}, False),  # another source
        ({"remote_group_id": "a-group"}, False),  # only that group's ports
        ({"remote_address_group_id": "an-address-group"}, False),
    ],
)
def test_nodeport_rule_matching(changes, allowed):
    assert octavia.rule_allows(rule(**changes), 31320, "10.0.0.5") is allowed


# --- volumes --------------------------------------------------------------------------------------


def volume(status="in-use", attachments=({"server_id": "srv-1"},), name="pvc-data"):
    return NS(id=f"id-{name}", name=name, status=status, attachments=list(attachments))


@pytest.mark.parametrize(
    "volumes, finding",
    [
        (
            [volume(name="other")],
            (False, "volume", "no Cinder volume pvc-data: did the PVC bind? (csi-cinder-controllerplugin logs)"),
        ),
        (
            [volume(status="available", attachments=())],
            (
                False,
                "volume",
                "pvc-data is available, not attached: the CSI attach did not happen (VolumeAttachment events, "
                "csi-cinder-controllerplugin logs)",
            ),
        ),
        ([volume(status="error", attachments=())], (False, "volume", "pvc-data is error")),
        (
            [volume(status="in-use", attachments=({"server_id": "srv-2"},))],
            (False, "volume", "pvc-data is attached to ['srv-2'], not to the Pod's node srv-1"),
        ),
        (
            [volume(status="in-use", attachments=({"server_id": "srv-2"}, {"server_id": "srv-1"}))],
            (True, "volume", "pvc-data in-use on srv-1"),
        ),
        ([volume(name="other", attachments=()), volume()], (True, "volume", "pvc-data in-use on srv-1")),
    ],
    ids=["missing", "not attached", "error", "attached elsewhere", "multi-attach", "found among others"],
)
def test_volume(volumes, finding):
    found = octavia.check_volume(Cloud(volumes=volumes), "pvc-data", "srv-1")
    assert [(f.ok, f.aspect, f.detail) for f in found] == [finding]


# --- the ingress load balancer ----------------------------------------------------------------------

INGRESS = "octavia-ingress-lab-default-echo"


def ingress_cloud(status="ACTIVE", listener_port=80, fip=True, policies=None, rules=None, members=None):
    """octavia-ingress-controller's load balancer: an L7 policy per path, each redirecting to a pool."""
    policies = (
        [
            NS(id="p-a", listener_id="l-1", redirect_pool_id="pool-a"),
            NS(id="p-b", listener_id="l-1", redirect_pool_id="pool-b"),
            NS(id="p-x", listener_id="l-0", redirect_pool_id="pool-x"),
        ]
        if policies is None
        else policies
    )
    rules = (
        {
            "p-a": [NS(type="PATH", compare_type="STARTS_WITH", rule_value="/a")],
            "p-b": [
                NS(type="HOST_NAME", compare_type="EQUAL_TO", rule_value="echo.example"),
                NS(type="PATH", compare_type="STARTS_WITH", rule_value="/b"),
            ],
            "p-x": [NS(type="PATH", compare_type="STARTS_WITH", rule_value="/x")],
        }
        if rules is None
        else rules
    )
    members = (
        {"pool-a": [NS(address="10.0.0.10")], "pool-b": [NS(address="10.0.0.11")], "pool-x": []}
        if members is None
        else members
    )
    return Cloud(
        lbs=[NS(id="lb-1", name=INGRESS, provisioning_status=status, vip_address=VIP, vip_port_id="port-vip-1")],
        listeners=[
            NS(id="l-0", load_balancer_id="lb-0", protocol_port=80),
            NS(id="l-1", load_balancer_id="lb-1", protocol_port=listener_port),
        ],
        fips=[NS(floating_ip_address="172.24.4.21", fixed_ip_address=VIP, port_id="port-vip-1")] if fip else [],
        policies=policies,
        l7_rules=rules,
        members=members,
    )


def check_ingress(cloud, paths=("/a", "/b")):
    return [(f.ok, f.aspect, f.detail) for f in octavia.check_ingress_lb(cloud, INGRESS, set(paths))]


INGRESS_OK = [
    (True, "load balancer", "octavia-ingress-lab-default-echo ACTIVE, VIP 10.0.0.50"),
    (True, "L7 policies", "/a, /b routed to pools with members"),
    (True, "floating IP", "172.24.4.21 -> 10.0.0.50"),
]


@pytest.mark.parametrize(
    "cloud, findings",
    [
        (ingress_cloud(), INGRESS_OK),
        (
            Cloud(),
            [(False, "load balancer", "octavia-ingress-lab-default-echo does not exist (octavia-ingress-controller logs)")],
        ),
        (
            ingress_cloud(status="ERROR"),
            [(False, "load balancer", "octavia-ingress-lab-default-echo is ERROR (octavia-ingress-controller logs)")],
        ),
        (ingress_cloud(listener_port=443), INGRESS_OK[:1] + [(False, "listener", "no listener on port 80")]),
        (ingress_cloud(fip=False), INGRESS_OK[:2] + [(False, "floating IP", "no floating IP bound to the VIP 10.0.0.50")]),
        (
            ingress_cloud(members={"pool-a": [NS(address="10.0.0.10")], "pool-b": []}),
            [INGRESS_OK[0], (False, "L7 policies", "path /b: its pool has no members"), INGRESS_OK[2]],
        ),
        (
            ingress_cloud(policies=[NS(id="p-a", listener_id="l-1", redirect_pool_id=None)]),
            [
                INGRESS_OK[0],
                (False, "L7 policies", "path /a: its pool has no members; no L7 policy routes /b"),
                INGRESS_OK[2],
            ],
        ),
        (
            ingress_cloud(
                rules={
                    "p-a": [NS(type="PATH", compare_type="EQUAL_TO", rule_value="/a")],
                    "p-b": [NS(type="PATH", compare_type="STARTS_WITH", rule_value="/b")],
                }
            ),
            [INGRESS_OK[0], (False, "L7 policies", "no L7 policy routes /a"), INGRESS_OK[2]],
        ),
        (
            ingress_cloud(
                rules={
                    "p-a": [NS(type="HEADER", compare_type="STARTS_WITH", rule_value="/a")],
                    "p-b": [NS(type="PATH", compare_type="STARTS_WITH", rule_value="/b")],
                }
            ),
            [INGRESS_OK[0], (False, "L7 policies", "no L7 policy routes /a"), INGRESS_OK[2]],
        ),
    ],
    ids=[
        "healthy",
        "missing",
        "in ERROR",
        "no HTTP listener",
        "no floating IP",
        "an empty pool",
        "no pool, a path unrouted",
        "a path matched exactly",
        "not a path rule",
    ],
)
def test_ingress_load_balancer(cloud, findings):
    assert check_ingress(cloud) == findings


# --- the Keystone policy model ----------------------------------------------------------------------

USER = {
    "username": "demo",
    "uid": "u-1",
    "groups": ["g-ops", "p-1"],
    "extra": {model.ROLES: ["member", "k8s-viewer"], model.PROJECT_ID: ["p-1"], model.PROJECT_NAME: ["demo-project"]},
}


def policy(match, verbs=("get", "list", "watch"), resources=("pods",), version="*", namespace="*"):
    return [
        {
            "resource": {"verbs": list(verbs), "resources": list(resources), "version": version, "namespace": namespace},
            "match": match,
        }
    ]


@pytest.mark.parametrize(
    "match, allowed",
    [
        ([{"type": "role", "values": ["k8s-viewer"]}], True),
        ([{"type": "role", "values": ["k8s-admin"]}], False),
        ([{"type": "role", "values": ["*"]}], True),
        ([{"type": "project", "values": ["p-1"]}], True),  # by ID
        ([{"type": "project", "values": ["demo-project"]}], True),  # or by name
        ([{"type": "project", "values": ["p-2", "other"]}], False),
        ([{"type": "user", "values": ["demo"]}], True),  # by name
        ([{"type": "user", "values": ["u-1"]}], True),  # or by ID
        ([{"type": "user", "values": ["alice", "u-2"]}], False),
        ([{"type": "group", "values": ["g-ops"]}], True),
        ([{"type": "group", "values": ["g-dev"]}], False),
        ([{"type": "group"}], False),  # no values: nobody
        ([{"type": "role", "values": ["k8s-viewer"]}, {"type": "project", "values": ["p-1"]}], True),
        (
            [{"type": "role", "values": ["k8s-viewer"]}, {"type": "project", "values": ["p-2"]}],
            False,
        ),  # every match must hold
        ([{"type": "project", "values": ["p-2"]}, {"type": "role", "values": ["k8s-viewer"]}], False),
        ([{"type": "user", "values": ["*"]}, {"type": "group", "values": ["g-dev"]}], False),
        ([], True),  # no match list: every Keystone user
    ],
    ids=lambda v: repr(v)[:60] if isinstance(v, list) else None,
)
def test_match_types_as_k8s_keystone_auth_reads_them(match, allowed):
    assert model.authorize(policy(match), USER, "list", "pods", "default") is allowed


@pytest.mark.parametrize(
    "user, match, allowed",
    [
        ({"username": "demo", "extra": {model.ROLES: ["k8s-viewer"]}}, {"type": "group", "values": ["g-ops"]}, False),
        ({"username": "demo", "extra": {model.ROLES: ["k8s-viewer"]}}, {"type": "project", "values": ["p-1"]}, False),
        ({"username": "demo", "extra": {model.PROJECT_ID: ["p-1"]}}, {"type": "project", "values": ["p-1"]}, True),
        (
            {"username": "demo", "extra": {model.PROJECT_NAME: ["demo-project"]}},
            {"type": "project", "values": ["demo-project"]},
            True,
        ),
        ({"username": "demo", "extra": {model.PROJECT_ID: ["p-1"]}}, {"type": "role", "values": ["k8s-viewer"]}, False),
    ],
    ids=["no groups", "no project", "project ID only", "project name only", "no roles"],
)
def test_a_user_may_lack_any_of_the_keys_a_match_reads(user, match, allowed):
    """The webhook leaves out what Keystone did not give (a user in no group has no `groups`)."""
    assert model.authorize(policy([match]), user, "list", "pods", "default") is allowed


def test_a_rule_without_match_admits_every_keystone_user_and_nobody_else():
    rules = [{"resource": {"verbs": ["get"], "resources": ["pods"], "version": "*", "namespace": "*"}}]
    assert model.authorize(rules, USER, "get", "pods", "default")
    assert not model.authorize(rules, {**USER, "extra": {}}, "get", "pods", "default")  # not authenticated by Keystone


ROLE = [{"type": "role", "values": ["k8s-viewer"]}]


@pytest.mark.parametrize(
    "rules, request_, allowed",
    [
        (policy(ROLE), ("get", "pods", "default", ""), True),
        (policy(ROLE), ("delete", "pods", "default", ""), False),
        (policy(ROLE, verbs=["*"]), ("delete", "pods", "default", ""), True),
        (policy(ROLE), ("get", "secrets", "default", ""), False),
        (policy(ROLE, resources=["*"]), ("get", "secrets", "default", ""), True),
        (policy(ROLE, namespace="team-a"), ("get", "pods", "default", ""), False),
        (policy(ROLE, namespace="team-a"), ("get", "pods", "team-a", ""), True),
        (policy(ROLE, version="apps"), ("get", "pods", "default", ""), False),
        (policy(ROLE, version="apps", resources=["deployments"]), ("get", "deployments", "default", "apps"), True),
        (policy(ROLE, version="", namespace="", resources=["nodes"]), ("get", "nodes", None, None), True),  # cluster-scoped
        (policy(ROLE, version="", namespace="", resources=["nodes"]), ("get", "nodes", "default", None), False),
        (policy(ROLE, version="", namespace="", resources=["nodes"]), ("get", "nodes", None, "apps"), False),
        (policy(ROLE, resources=["pods"]), ("get", "pods/log", "default", ""), False),
        (policy(ROLE, resources=["pods/*"]), ("get", "pods/log", "default", ""), True),
        (policy(ROLE, resources=["pods/log"]), ("get", "pods/log", "default", ""), True),
        (policy(ROLE, resources=["pods/exec"]), ("get", "pods/log", "default", ""), False),
        (policy(ROLE, resources=["*"]), ("get", "pods/log", "default", ""), True),
        (policy(ROLE, resources=["pods/log"]), ("get", "pods", "default", ""), False),
        (
            policy([{"type": "role", "values": ["k8s-admin"]}]) + policy(ROLE, verbs=["get"]),
            ("get", "pods", "default", ""),
            True,
        ),
        (policy(ROLE, namespace="team-a") + policy(ROLE), ("get", "pods", "default", ""), True),  # each rule is tried
        (policy(ROLE, resources=["nodes"]) + policy(ROLE), ("get", "pods", "default", ""), True),
        (policy(ROLE, verbs=["create"]) + policy(ROLE), ("get", "pods", "default", ""), True),
    ],
    ids=lambda v: None,
)
def test_resource_rules_as_k8s_keystone_auth_reads_them(rules, request_, allowed):
    """(verb, resource[/subresource], namespace, API group); None leaves the argument out."""
    verb, resource, namespace, group = request_
    resource, _, sub = resource.partition("/")
    kwargs = {k: v for k, v in (("namespace", namespace), ("group", group), ("subresource", sub)) if v is not None}
    assert model.authorize(rules, USER, verb, resource, **kwargs) is allowed


RULE = model.DEFAULT_POLICY[0]


@pytest.mark.parametrize(
    "rules, message",
    [
        ({"resource": RULE["resource"]}, "a policy is a JSON list of rules"),
        (
            [{**RULE, "users": {"roles": ["x"]}, "nonresource": {}}],
            "rule 0: nonresource, users not judged here (osk8s writes version-1 `resource` rules only; `users`, "
            "`resource_permissions` and `nonresource*` are version-2 or non-resource rules)",
        ),
        ([RULE, {"match": RULE["match"]}], "rule 1: no `resource` rule"),
        (
            [{**RULE, "resource": {"verbs": ["get"], "resources": ["pods"]}}],
            "rule 0: resource rule lacks version, namespace (upstream's policy.go requires each; the API group is the key "
            "`version`)",
        ),
        (
            [{**RULE, "resource": {**RULE["resource"], "apiGroup": "*"}}],
            "rule 0: `apiGroup` is not read upstream; the API group is the key `version`",
        ),
        (
            [{**RULE, "match": [{"type": "domain", "values": ["x"]}]}],
            "rule 0: match type 'domain' (upstream knows group, project, role, user)",
        ),
        ([{**RULE, "match": [{"values": ["x"]}]}], "rule 0: match type None (upstream knows group, project, role, user)"),
    ],
    ids=["not a list", "version-2 keys", "no resource", "missing keys", "apiGroup", "unknown match type", "no match type"],
)
def test_policies_the_model_would_misjudge_are_rejected_with_the_reason(rules, message):
    with pytest.raises(model.PolicyError) as err:
        model.authorize(rules, USER, "list", "pods", "default")
    assert str(err.value) == message


def test_the_default_policy_is_judged_as_osk8s_deploys_it():
    model.check_policy(model.DEFAULT_POLICY)
    model.check_policy([{"resource": RULE["resource"]}])  # match is optional
    assert model.authorize(model.DEFAULT_POLICY, USER, "watch", "pods", "kube-system")
    assert not model.authorize(model.DEFAULT_POLICY, USER, "create", "pods", "default")
