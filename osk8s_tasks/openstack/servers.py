"""The Kubernetes node servers and their floating IPs (decision functions, as in openstack.py)."""

from __future__ import annotations

from osk8s_tasks.openstack import clouds as cloud
from osk8s_tasks.openstack.tasks import Decision, _find_image, flavor_named, names, resource_step
from osk8s_tasks.core.engine import Step, StepFailed


def server_name(settings, node) -> str:
    return f"{settings.lab.name}-{node.name}"


def _server(clouds, name):
    return clouds.servers().get(name)


def server_step(s, clouds, node) -> Step:
    o, n = s.settings.openstack, names(s.settings)
    name, lab_tag = server_name(s.settings, node), cloud.tag(s.settings)

    def decide():
        srv = _server(clouds, name)
        if srv is None:
            return Decision("create", f"no server {name}",
                            f"boot {name} ({node.role}): flavor {n['flavor']}, image {o.image.name}, keypair {n['keypair']}, "
                            f"security group {n['secgroup']}, network {o.network}")
        if srv.status == "ERROR":
            fault = (srv.fault or {}).get("message", "no fault message")
            raise StepFailed(f"server {name} is in ERROR: {fault}. Fix: inv openstack.teardown, then openstack.servers")
        if srv.status == "BUILD":
            return Decision("update", f"server {name} is still building", "wait until ACTIVE", srv)
        groups = {g["name"] for g in (srv.security_groups or [])}
        problems = []
        if srv.key_name != n["keypair"]:
            problems.append(f"keypair {srv.key_name} (want {n['keypair']})")
        if srv.flavor.get("original_name", srv.flavor.get("name")) != n["flavor"]:
            problems.append(f"flavor {srv.flavor.get('original_name')} (want {n['flavor']})")
        if o.config_drive and not srv.has_config_drive:
            problems.append("no config drive (cloud-init needs it, or the metadata API, for the SSH key; "
                            "openstack.config_drive is true)")
        if problems:
            raise StepFailed(f"server {name} differs in what cannot change in place: {', '.join(problems)}. "
                             "Fix: delete it (inv openstack.teardown) and run openstack.servers again")
        if n["secgroup"] not in groups:
            return Decision("update", f"server {name} lacks security group {n['secgroup']}", f"add {n['secgroup']} to {name}", srv)
        if srv.status != "ACTIVE":
            return Decision("update", f"server {name} is {srv.status}", f"start {name}", srv)
        drive = ", config drive" if srv.has_config_drive else ""
        return Decision("none", f"server {name} ACTIVE ({node.role}), keypair {n['keypair']}, group {n['secgroup']}{drive}")

    def act(d):
        compute = clouds.main.compute
        srv = d.obj
        if d.action == "create":
            net = cloud.by_name(clouds.main.network.networks(name=o.network))
            srv = compute.create_server(
                name=name, flavor_id=flavor_named(clouds, n["flavor"]).id, image_id=_find_image(s, clouds).id,
                key_name=n["keypair"], networks=[{"uuid": net.id}], security_groups=[{"name": n["secgroup"]}],
                config_drive=o.config_drive,
                metadata={"osk8s-lab": s.settings.lab.name, "osk8s-role": node.role}, tags=[lab_tag])
        elif n["secgroup"] not in {g["name"] for g in (srv.security_groups or [])} and srv.status == "ACTIVE":
            compute.add_security_group_to_server(srv, cloud.by_name(clouds.main.network.security_groups(name=n["secgroup"])))
        elif srv.status == "SHUTOFF":
            compute.start_server(srv)
        srv = compute.wait_for_server(srv, status="ACTIVE", wait=o.server_timeout)

    return resource_step(clouds, f"server {name}", decide, act)


def fip_step(s, clouds, node) -> Step:
    o, name, lab_tag = s.settings.openstack, server_name(s.settings, node), cloud.tag(s.settings)

    def port_of(srv):
        return next(iter(clouds.main.network.ports(device_id=srv.id)), None)

    def decide():
        srv = _server(clouds, name)
        if srv is None:
            raise StepFailed(f"server {name} does not exist")
        port = port_of(srv)
        if port is None:
            raise StepFailed(f"server {name} has no port on {o.network}")
        fip = next(iter(clouds.main.network.ips(port_id=port.id)), None)
        if fip is None:
            return Decision("create", f"{name} has no floating IP", f"allocate from {o.external_network} and bind to {name}",
                            data={"port": port})
        return Decision("none", f"{name}: floating IP {fip.floating_ip_address} -> {fip.fixed_ip_address}")

    def act(d):
        net = clouds.main.network
        ext = cloud.by_name(net.networks(name=o.external_network))
        fip = net.create_ip(floating_network_id=ext.id, port_id=d.data["port"].id,
                            description=f"osk8s lab {s.settings.lab.name}: {name}")
        net.set_tags(fip, [lab_tag])

    return resource_step(clouds, f"floating IP {name}", decide, act)


def server_plan(s, clouds) -> dict[str, list[Step]]:
    """Per node: the server, then its floating IP; the nodes are converged concurrently."""
    plan = {}
    for node in s.settings.cluster.nodes:
        steps = [server_step(s, clouds, node), fip_step(s, clouds, node)]
        for step in steps:
            step.node = server_name(s.settings, node)
        plan[server_name(s.settings, node)] = steps
    return plan
