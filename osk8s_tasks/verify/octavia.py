"""The OpenStack side of verify.lb and verify.pv: what the cloud provider should have built for a
Service or a PVC, checked with openstacksdk, and when something is wrong, the finding names the
cause (the 2018 write-up found its missing NodePort rule by hand)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class CloudFinding:
    """One aspect of the cloud side judged (the load balancer, a listener, the pool members...):
    what verify records as a row, and what a failed HTTP check names as its cause."""

    ok: bool
    aspect: str
    detail: str


def occm_lb_name(lab: str, namespace: str, service: str) -> str:
    """How openstack-cloud-controller-manager names a Service's load balancer (cluster-name = lab)."""
    return f"kube_service_{lab}_{namespace}_{service}"


def rule_allows(rule, port: int, source: str) -> bool:
    """Whether one Neutron security-group rule lets TCP traffic from `source` (an IPv4 address)
    reach `port`: ingress, IPv4, tcp (or any protocol), the port in its range (or no range), and a
    remote prefix holding the source (or none). A rule with a remote group admits only that group's
    ports, never a load balancer. Every new group's egress rules admit nothing inbound."""
    if rule.direction != "ingress" or (rule.ether_type or "IPv4") != "IPv4":
        return False
    if rule.protocol not in ("tcp", "6", None, "any"):
        return False
    lo, hi = rule.port_range_min, rule.port_range_max
    if not ((lo is None and hi is None) or (lo is not None and hi is not None and lo <= port <= hi)):
        return False
    if rule.remote_group_id or getattr(rule, "remote_address_group_id", None):
        return False
    prefix = rule.remote_ip_prefix
    return prefix is None or ipaddress.ip_address(source) in ipaddress.ip_network(prefix, strict=False)


def _vip_fip(conn, lb):
    """The floating IP on the load balancer's VIP port: where OCCM and octavia-ingress-controller bind
    it (cloud-provider-openstack pkg/openstack/loadbalancer.go ensureFloatingIP, GetFloatingIPByPortID)."""
    return next(iter(conn.network.ips(port_id=lb.vip_port_id)), None) if lb.vip_port_id else None


def _fip_finding(conn, lb, hint: str = "") -> CloudFinding:
    """The floating IP on the load balancer's VIP port, or its absence with `hint`."""
    fip = _vip_fip(conn, lb)
    if fip is None:
        return CloudFinding(False, "floating IP", f"no floating IP bound to the VIP {lb.vip_address}{hint}")
    return CloudFinding(True, "floating IP", f"{fip.floating_ip_address} -> {lb.vip_address}")


def check_load_balancer(
    conn, name: str, port: int, node_port: int, nodes: dict[str, str], secgroup: str
) -> list[CloudFinding]:
    """nodes: server name -> fixed address. Stops at the first missing piece it depends on."""
    lbs = conn.load_balancer
    lb = next((x for x in lbs.load_balancers() if x.name == name), None)
    if lb is None:
        return [
            CloudFinding(
                False,
                "load balancer",
                f"no Octavia load balancer {name}: is the cloud controller manager running "
                "and the Service of type LoadBalancer? (cluster.status)",
            )
        ]
    out = []
    if lb.provisioning_status != "ACTIVE":
        why = (
            "Octavia failed to build it (octavia-worker logs)" if lb.provisioning_status == "ERROR" else "still being built"
        )
        return [CloudFinding(False, "load balancer", f"{name} is {lb.provisioning_status}: {why}")]
    out.append(CloudFinding(True, "load balancer", f"{name} ACTIVE, VIP {lb.vip_address}"))
    listener = next((x for x in lbs.listeners(load_balancer_id=lb.id) if x.protocol_port == port), None)
    if listener is None:
        have = [x.protocol_port for x in lbs.listeners(load_balancer_id=lb.id)]
        return out + [
            CloudFinding(False, "listener", f"no listener on the Service port {port} (listeners on {have or 'none'})")
        ]
    out.append(CloudFinding(True, "listener", f"{listener.protocol} {port}"))
    members = list(lbs.members(listener.default_pool_id)) if listener.default_pool_id else []
    by_addr = {m.address: m for m in members}
    problems = [f"node {n} ({a}) is not a member" for n, a in nodes.items() if a not in by_addr]
    problems += [
        f"member {m.address} on port {m.protocol_port}, the Service's NodePort is {node_port}"
        for m in members
        if m.protocol_port != node_port
    ]
    problems += [f"member {m.address} is not a node of the cluster" for m in members if m.address not in nodes.values()]
    out.append(
        CloudFinding(
            not problems, "pool members", "; ".join(problems) or f"{len(members)} members, the nodes on NodePort {node_port}"
        )
    )
    out.append(_fip_finding(conn, lb, " (floating-network-id in cloud.conf?)"))
    # what decides is every group on each node's port (OCCM adds its own with manage-security-groups);
    # the amphora (or OVN's distributed LB) reaches the members from the VIP's subnet
    closed, names = [], set()
    for node, address in nodes.items():
        port_ = next(iter(conn.network.ports(fixed_ips=f"ip_address={address}")), None)
        groups = list(port_.security_group_ids or []) if port_ else []
        rules = [r for g in groups for r in conn.network.security_group_rules(security_group_id=g)]
        if not any(rule_allows(r, node_port, lb.vip_address) for r in rules):
            closed.append(node)
            names |= {conn.network.get_security_group(g).name for g in groups} or {f"(no port with {address})"}
    out.append(
        CloudFinding(
            not closed,
            "NodePort rule",
            f"the nodes' security groups allow tcp {node_port} from {lb.vip_address}"
            if not closed
            else f"{', '.join(sorted(names))} has no ingress rule for tcp {node_port} (the "
            f"NodePort) from {lb.vip_address}, on {', '.join(closed)}: the load balancer cannot reach the "
            f"nodes. Fix: inv openstack.prepare (opens 30000-32767 in {secgroup}) or manage-security-groups = true",
        )
    )
    return out


def check_volume(conn, volume_name: str, server_id: str) -> list[CloudFinding]:
    vol = next((v for v in conn.block_storage.volumes(details=True) if v.name == volume_name), None)
    if vol is None:
        return [
            CloudFinding(
                False, "volume", f"no Cinder volume {volume_name}: did the PVC bind? (csi-cinder-controllerplugin logs)"
            )
        ]
    attached = [a.get("server_id") for a in (vol.attachments or [])]
    if vol.status == "available":
        return [
            CloudFinding(
                False,
                "volume",
                f"{volume_name} is available, not attached: the CSI attach did not happen "
                "(VolumeAttachment events, csi-cinder-controllerplugin logs)",
            )
        ]
    if vol.status != "in-use":
        return [CloudFinding(False, "volume", f"{volume_name} is {vol.status}")]
    if server_id not in attached:
        return [CloudFinding(False, "volume", f"{volume_name} is attached to {attached}, not to the Pod's node {server_id}")]
    return [CloudFinding(True, "volume", f"{volume_name} in-use on {server_id}")]


def check_ingress_lb(conn, name: str, paths: set[str]) -> list[CloudFinding]:
    """octavia-ingress-controller's load balancer: ACTIVE, an HTTP listener on 80, an L7 policy per
    Ingress path whose pool has members, and a floating IP on the VIP."""
    lbs = conn.load_balancer
    lb = next((x for x in lbs.load_balancers() if x.name == name), None)
    if lb is None or lb.provisioning_status != "ACTIVE":
        state = "does not exist" if lb is None else f"is {lb.provisioning_status}"
        return [CloudFinding(False, "load balancer", f"{name} {state} (octavia-ingress-controller logs)")]
    out = [CloudFinding(True, "load balancer", f"{name} ACTIVE, VIP {lb.vip_address}")]
    listener = next((x for x in lbs.listeners(load_balancer_id=lb.id) if x.protocol_port == 80), None)
    if listener is None:
        return out + [CloudFinding(False, "listener", "no listener on port 80")]
    routed, problems = set(), []
    for policy in lbs.l7_policies(listener_id=listener.id):
        for rule in lbs.l7_rules(policy):
            if rule.type == "PATH" and rule.compare_type == "STARTS_WITH":
                routed.add(rule.rule_value)
                if not policy.redirect_pool_id or not list(lbs.members(policy.redirect_pool_id)):
                    problems.append(f"path {rule.rule_value}: its pool has no members")
    problems += [f"no L7 policy routes {p}" for p in sorted(paths - routed)]
    out.append(
        CloudFinding(
            not problems, "L7 policies", "; ".join(problems) or f"{', '.join(sorted(routed))} routed to pools with members"
        )
    )
    out.append(_fip_finding(conn, lb))
    return out
