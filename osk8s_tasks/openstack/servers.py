"""The Kubernetes node servers and their floating IPs: one pure decision each (decide_server,
decide_fip), as for the other cloud objects (openstack.resources)."""

from __future__ import annotations

from osk8s_tasks.core import lab
from osk8s_tasks.core.engine import Decision, Step, StepFailed
from osk8s_tasks.openstack import clouds as cloud
from osk8s_tasks.openstack.images import find_image
from osk8s_tasks.openstack.resources import flavor_named, names, step


def server_of(clouds, name):
    return clouds.servers().get(name)


def decide_server(srv, name: str, role: str, want: dict) -> Decision:
    """srv: the server of that name or None; want: {flavor, keypair, secgroup, image, network,
    config_drive}. What cannot change in place (keypair, flavor, config drive) is drift with the fix
    (recreate it), never a silent replace."""
    if srv is None:
        return Decision(
            "create",
            f"no server {name}",
            f"boot {name} ({role}): flavor {want['flavor']}, image {want['image']}, keypair {want['keypair']}, "
            f"security group {want['secgroup']}, network {want['network']}",
        )
    if srv.status == "ERROR":
        fault = (srv.fault or {}).get("message", "no fault message")
        raise StepFailed(f"server {name} is in ERROR: {fault}. Fix: inv openstack.teardown, then openstack.servers")
    if srv.status == "BUILD":
        return Decision("update", f"server {name} is still building", "wait until ACTIVE", srv)
    groups = {g["name"] for g in (srv.security_groups or [])}
    problems = []
    if srv.key_name != want["keypair"]:
        problems.append(f"keypair {srv.key_name} (want {want['keypair']})")
    flavor = srv.flavor.get("original_name", srv.flavor.get("name"))
    if flavor != want["flavor"]:
        problems.append(f"flavor {flavor} (want {want['flavor']})")
    if want["config_drive"] and not srv.has_config_drive:
        problems.append(
            "no config drive (cloud-init needs it, or the metadata API, for the SSH key; openstack.config_drive is true)"
        )
    if problems:
        raise StepFailed(
            f"server {name} differs in what cannot change in place: {', '.join(problems)}. "
            "Fix: delete it (inv openstack.teardown) and run openstack.servers again"
        )
    if want["secgroup"] not in groups:
        return Decision(
            "update", f"server {name} lacks security group {want['secgroup']}", f"add {want['secgroup']} to {name}", srv
        )
    if srv.status != "ACTIVE":
        return Decision("update", f"server {name} is {srv.status}", f"start {name}", srv)
    drive = ", config drive" if srv.has_config_drive else ""
    return Decision("none", f"server {name} ACTIVE ({role}), keypair {want['keypair']}, group {want['secgroup']}{drive}")


def server_step(s, clouds, node) -> Step:
    o, n = s.settings.openstack, names(s.settings)
    name, lab_tag = lab.server_name(s.settings, node), cloud.tag(s.settings)
    want = {
        "flavor": n["flavor"],
        "keypair": n["keypair"],
        "secgroup": n["secgroup"],
        "image": o.image.name,
        "network": o.network,
        "config_drive": o.config_drive,
    }

    def act(d):
        compute = clouds.main.compute
        srv = d.obj
        if d.action == "create":
            net = cloud.by_name(clouds.main.network.networks(name=o.network))
            srv = compute.create_server(
                name=name,
                flavor_id=flavor_named(clouds, n["flavor"]).id,
                image_id=find_image(s, clouds).id,
                key_name=n["keypair"],
                networks=[{"uuid": net.id}],
                security_groups=[{"name": n["secgroup"]}],
                config_drive=o.config_drive,
                metadata={"osk8s-lab": s.settings.lab.name, "osk8s-role": node.role},
                tags=[lab_tag],
            )
        elif n["secgroup"] not in {g["name"] for g in (srv.security_groups or [])} and srv.status == "ACTIVE":
            compute.add_security_group_to_server(srv, cloud.by_name(clouds.main.network.security_groups(name=n["secgroup"])))
        elif srv.status == "SHUTOFF":
            compute.start_server(srv)
        compute.wait_for_server(srv, status="ACTIVE", wait=o.server_timeout)

    return step(
        clouds, f"server {name}", lambda: server_of(clouds, name), lambda srv: decide_server(srv, name, node.role, want), act
    )


def decide_fip(facts: tuple, name: str, network: str, external: str) -> Decision:
    """facts: (server or None, its port or None, the floating IP on that port or None)."""
    srv, port, fip = facts
    if srv is None:
        raise StepFailed(f"server {name} does not exist")
    if port is None:
        raise StepFailed(f"server {name} has no port on {network}")
    if fip is None:
        return Decision(
            "create", f"{name} has no floating IP", f"allocate from {external} and bind to {name}", data={"port": port}
        )
    return Decision("none", f"{name}: floating IP {fip.floating_ip_address} -> {fip.fixed_ip_address}")


def fip_step(s, clouds, node) -> Step:
    o, name, lab_tag = s.settings.openstack, lab.server_name(s.settings, node), cloud.tag(s.settings)

    def read():
        srv = server_of(clouds, name)
        port = next(iter(clouds.main.network.ports(device_id=srv.id)), None) if srv else None
        return srv, port, next(iter(clouds.main.network.ips(port_id=port.id)), None) if port else None

    def act(d):
        net = clouds.main.network
        ext = cloud.by_name(net.networks(name=o.external_network))
        fip = net.create_ip(
            floating_network_id=ext.id, port_id=d.data["port"].id, description=f"osk8s lab {s.settings.lab.name}: {name}"
        )
        net.set_tags(fip, [lab_tag])

    return step(
        clouds, f"floating IP {name}", read, lambda facts: decide_fip(facts, name, o.network, o.external_network), act
    )


def server_plan(s, clouds) -> dict[str, list[Step]]:
    """Per node: the server, then its floating IP; the nodes are converged concurrently."""
    plan = {}
    for node in s.settings.cluster.nodes:
        name = lab.server_name(s.settings, node)
        steps = [server_step(s, clouds, node), fip_step(s, clouds, node)]
        for st in steps:
            st.node = name
        plan[name] = steps
    return plan
