"""The OpenStack side of verify.lb / verify.pv against the real loopback Octavia, Neutron, Nova and
Cinder: a load balancer built the way openstack-cloud-controller-manager builds one passes; then
the peer is broken on purpose, and each check fails naming that cause."""

import sqlite3
import subprocess
import uuid

import pytest

from osk8s_tasks.verify import octavia as vc

pytestmark = pytest.mark.openstack
LAB = f"v{uuid.uuid4().hex[:4]}"
NODE_PORT = 31320


@pytest.fixture(scope="module")
def env(loopback_cloud, tmp_path_factory):
    import openstack

    conn, admin = openstack.connect(cloud="demo"), openstack.connect(cloud="admin")
    net, subnet = next(conn.network.networks(name="private")), next(conn.network.subnets(name="private-subnet"))
    public = next(conn.network.networks(name="public"))
    sg = conn.network.create_security_group(name=f"{LAB}-k8s")
    rule = conn.network.create_security_group_rule(
        security_group_id=sg.id, direction="ingress", protocol="tcp", port_range_min=30000, port_range_max=32767
    )
    name = vc.occm_lb_name(LAB, "default", "echo")
    # as OCCM makes it: Octavia allocates the VIP port on the subnet; the floating IP goes on that port
    lb = conn.load_balancer.create_load_balancer(name=name, vip_subnet_id=subnet.id, tags=[name])
    lb = conn.load_balancer.wait_for_load_balancer(lb.id, wait=60)
    fip = conn.network.create_ip(floating_network_id=public.id, port_id=lb.vip_port_id)
    listener = conn.load_balancer.create_listener(
        name=f"listener_{name}_0", protocol="TCP", protocol_port=80, load_balancer_id=lb.id
    )
    conn.load_balancer.wait_for_load_balancer(lb.id, wait=60)
    pool = conn.load_balancer.create_pool(
        name=f"pool_{name}_0", protocol="TCP", lb_algorithm="ROUND_ROBIN", listener_id=listener.id
    )
    conn.load_balancer.wait_for_load_balancer(lb.id, wait=60)
    # Neutron picks the addresses: the VIP port above, or another test's port, may hold any fixed one
    ports = [
        conn.network.create_port(
            network_id=net.id,
            name=f"{LAB}-{n}",
            security_group_ids=[sg.id],
            fixed_ips=[{"subnet_id": subnet.id}],
        )
        for n in ("worker-1", "worker-2")
    ]
    nodes = {f"{LAB}-worker-{i}": p.fixed_ips[0]["ip_address"] for i, p in enumerate(ports, 1)}
    for address in nodes.values():
        conn.load_balancer.create_member(pool, address=address, protocol_port=NODE_PORT, subnet_id=subnet.id)
        conn.load_balancer.wait_for_load_balancer(lb.id, wait=60)
    image_file = tmp_path_factory.mktemp("img") / "i.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image_file), "16M"], check=True)
    flavor = admin.compute.create_flavor(name=f"{LAB}-f", ram=512, vcpus=1, disk=1)
    image = conn.image.create_image(
        name=f"{LAB}-img", filename=str(image_file), disk_format="qcow2", container_format="bare", wait=True
    )
    server = conn.compute.wait_for_server(
        conn.compute.create_server(
            name=f"{LAB}-worker-1", flavor_id=flavor.id, image_id=image.id, networks=[{"uuid": net.id}]
        ),
        wait=120,
    )
    yield {
        "conn": conn,
        "lb": lb,
        "name": name,
        "nodes": nodes,
        "pool": pool,
        "sg": sg,
        "rule": rule,
        "server": server,
        "subnet": subnet,
    }
    conn.network.delete_ip(fip)
    conn.load_balancer.delete_load_balancer(lb, cascade=True)
    conn.load_balancer.wait_for_delete(lb, wait=60)
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=120)
    for v in conn.block_storage.volumes():
        if v.name.startswith(f"pvc-{LAB}"):
            conn.block_storage.delete_volume(v)
    for p in ports:
        conn.network.delete_port(p)
    conn.network.delete_security_group(sg)
    conn.image.delete_image(image)
    admin.compute.delete_flavor(flavor)


def failed(findings):
    return {f.aspect: f.detail for f in findings if not f.ok}


def check(env):
    return vc.check_load_balancer(env["conn"], env["name"], 80, NODE_PORT, env["nodes"], env["sg"].name)


def test_a_load_balancer_built_like_occm_builds_it_passes(env):
    findings = check(env)
    assert not failed(findings), findings
    assert {f.aspect for f in findings} == {"load balancer", "listener", "pool members", "floating IP", "NodePort rule"}


@pytest.mark.parametrize("wrong", [31000, 80])  # another NodePort; the Service's own port (a common mistake)
def test_member_on_the_wrong_port_is_named(env, wrong):
    conn, lb, address = env["conn"], env["lb"], env["nodes"][f"{LAB}-worker-2"]
    member = next(m for m in conn.load_balancer.members(env["pool"]) if m.address == address)
    conn.load_balancer.delete_member(member, env["pool"])
    conn.load_balancer.wait_for_load_balancer(lb.id, wait=60)
    conn.load_balancer.create_member(env["pool"], address=address, protocol_port=wrong, subnet_id=env["subnet"].id)
    conn.load_balancer.wait_for_load_balancer(lb.id, wait=60)
    assert f"member {address} on port {wrong}, the Service's NodePort is 31320" in failed(check(env))["pool members"]


def test_missing_nodeport_rule_is_named(env):
    """Real Neutron gives the group egress rules (the loopback creates its default rule templates):
    they admit nothing inbound, so the diagnosis must still fire."""
    conn = env["conn"]
    assert {r.direction for r in conn.network.security_group_rules(security_group_id=env["sg"].id)} == {"ingress", "egress"}
    conn.network.delete_security_group_rule(env["rule"])
    detail = failed(check(env))["NodePort rule"]
    assert f"{env['sg'].name} has no ingress rule for tcp {NODE_PORT}" in detail and "openstack.prepare" in detail
    assert f"{LAB}-worker-1" in detail and f"{LAB}-worker-2" in detail


def test_load_balancer_in_error_is_named(env):
    db = sqlite3.connect("/var/lib/osk8s-openstack/octavia/octavia.db")  # break the peer on purpose
    with db:
        db.execute("UPDATE load_balancer SET provisioning_status='ERROR' WHERE id=?", (env["lb"].id,))
    try:
        assert "is ERROR: Octavia failed to build it" in failed(check(env))["load balancer"]
    finally:
        with db:
            db.execute("UPDATE load_balancer SET provisioning_status='ACTIVE' WHERE id=?", (env["lb"].id,))
        db.close()


def test_volume_stuck_available_is_named_then_in_use_passes(env):
    conn, server = env["conn"], env["server"]
    vol = conn.block_storage.wait_for_status(
        conn.block_storage.create_volume(size=1, name=f"pvc-{LAB}-data"), "available", wait=60
    )
    assert "is available, not attached" in failed(vc.check_volume(conn, vol.name, server.id))["volume"]
    conn.compute.create_volume_attachment(server, volume_id=vol.id)
    conn.block_storage.wait_for_status(vol, "in-use", wait=60)
    assert not failed(vc.check_volume(conn, vol.name, server.id))
    conn.compute.delete_volume_attachment(server, vol.id)
    conn.block_storage.wait_for_status(vol, "available", wait=60)
