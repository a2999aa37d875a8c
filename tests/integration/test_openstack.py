"""`openstack.*` against the real loopback control plane (osk8s_tasks/embedded/openstack/loopback.py):
Keystone, Glance, Placement, Nova, Neutron, Cinder and Octavia on 127.0.0.1. Every call goes
through the real `inv` CLI; assertions read the cloud back with openstacksdk."""

import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import SDK_WARNINGS_AS_ERRORS, run_inv
from tests.peers.httpserver import QuietHTTPServer

pytestmark = pytest.mark.openstack
BASE = Path(os.environ.get("OSK8S_OPENSTACK_BASE", "/var/lib/osk8s-openstack"))
LAB = f"os{uuid.uuid4().hex[:4]}"
TAG = f"osk8s:{LAB}"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, loopback_cloud):
    work = tmp_path_factory.mktemp("openstack")
    # A node image of realistic size (Ubuntu's cloud image is ~600 MB; this one holds 256 MB of
    # data), so the first run pays for an upload as it would on a real cloud.
    raw = work / "node.raw"
    subprocess.run(["dd", "if=/dev/urandom", f"of={raw}", "bs=1M", "count=256", "status=none"], check=True)
    image = work / "node.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(image)], check=True)
    raw.unlink()

    class Cloud:
        state = work / "state"

        def config(self, **openstack):
            cfg = {
                "lab": {"name": LAB, "state_dir": str(self.state)},
                "openstack": {
                    "clouds_yaml": str(BASE / "clouds.yaml"),
                    "cloud": "demo",
                    "admin_cloud": "admin",
                    "image": {"name": "node", "file": str(image)},
                    "server_timeout": 120,
                    # nova on sqlite cannot build servers concurrently ("database is locked")
                    "boot_concurrency": 1,
                    **openstack,
                },
                "cluster": {
                    "nodes": [
                        {"name": "master", "role": "control-plane"},
                        {"name": "worker-1", "role": "worker"},
                        {"name": "worker-2", "role": "worker"},
                    ]
                },
            }
            path = work / f"lab-{uuid.uuid4().hex[:6]}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            return path

        def inv(self, *args, **openstack):
            log = work / f"log-{uuid.uuid4().hex[:6]}.jsonl"
            r = run_inv(
                ["-f", str(self.config(**openstack)), *args, "--log-json", str(log)], timeout=600, env=SDK_WARNINGS_AS_ERRORS
            )
            r.events = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
            r.writes = sum(e["writes"] for e in r.events if e["event"] == "openstack.api")
            m = re.search(r": .* in ([\d.]+) s", r.stdout)
            r.seconds = float(m.group(1)) if m else None
            return r

        def sdk(self, name="demo"):
            import openstack

            return openstack.connect(cloud=name)

        image_file = image

    yield Cloud()
    Cloud().inv("openstack.teardown")


def _owned(conn):
    return (
        list(conn.compute.servers(tags=TAG))
        + list(conn.network.security_groups(tags=TAG))
        + list(conn.network.ips(tags=TAG))
        + list(conn.image.images(tag=TAG))
    )


@pytest.mark.parametrize(
    "case, args, expect",
    [
        ("unknown cloud", {"cloud": "nosuchcloud"}, "cloud 'nosuchcloud' is not in clouds.yaml"),
        ("missing external network", {"external_network": "nosuchnet"}, "external network 'nosuchnet' not found"),
        ("unreachable image URL", {"image": {"name": "node", "url": "https://127.0.0.1:9/node.qcow2"}}, "is unreachable"),
    ],
)
def test_bad_input_fails_before_any_write(cloud, case, args, expect):
    r = cloud.inv("openstack.deploy", **args)
    assert r.returncode == 1 and expect in r.stdout + r.stderr, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and r.writes == 0 and not _owned(cloud.sdk())


def test_wrong_password_is_a_401_before_any_write(cloud, tmp_path):
    clouds = yaml.safe_load((BASE / "clouds.yaml").read_text())
    clouds["clouds"]["demo"]["auth"]["password"] = "wrong-password"
    bad = tmp_path / "clouds.yaml"
    bad.write_text(yaml.safe_dump(clouds))
    r = cloud.inv("openstack.deploy", clouds_yaml=str(bad))
    assert r.returncode == 1 and "authentication refused" in r.stdout + r.stderr and "(401)" in r.stdout + r.stderr
    assert "wrong-password" not in r.stdout + r.stderr and not _owned(cloud.sdk())


def test_node_name_with_underscore_is_a_config_error(cloud):
    path = cloud.config()
    cfg = yaml.safe_load(path.read_text())
    cfg["cluster"]["nodes"][1]["name"] = "worker_1"
    path.write_text(yaml.safe_dump(cfg))
    r = run_inv(["-f", str(path), "openstack.deploy"])
    assert r.returncode == 2 and "cluster.nodes.1.name" in r.stderr and "DNS-1123" in r.stderr and not _owned(cloud.sdk())


def test_dry_run_creates_nothing(cloud):
    r = cloud.inv("openstack.deploy", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "create flavor" in r.stdout and "boot " in r.stdout and r.writes == 0 and not _owned(cloud.sdk())


def test_dry_run_with_an_image_url_downloads_nothing_and_leaves_no_file(cloud):
    """The image decision compares the source recorded on the image; the download is the apply's.
    The URL's server records every request: the check may ask whether the URL answers (HEAD), a dry
    run downloads nothing (no GET), and the lab dir gains only logs."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802
            hits.append(("HEAD", self.path))
            self.send_response(200)
            self.send_header("Content-Length", "12")
            self.end_headers()

        def do_GET(self):  # noqa: N802
            hits.append(("GET", self.path))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"not an image")

        def log_message(self, *args):
            pass

    server = QuietHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    before = {p for p in cloud.state.rglob("*") if p.is_file() and "logs" not in p.parts}
    try:
        url = f"http://127.0.0.1:{server.server_port}/node.qcow2"
        r = cloud.inv("openstack.prepare", "--dry-run", image={"name": "node", "url": url, "checksum": "sha256:" + "0" * 64})
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"upload {url}" in r.stdout and r.writes == 0
    assert not [h for h in hits if h[0] != "HEAD"], hits  # nothing downloaded
    after = {p for p in cloud.state.rglob("*") if p.is_file() and "logs" not in p.parts}
    assert after <= before, sorted(map(str, after - before))


def test_deploy_then_second_run_is_all_ok_with_zero_writes(cloud):
    t0 = time.monotonic()
    first = cloud.inv("openstack.deploy")
    wall1 = time.monotonic() - t0
    assert first.returncode == 0, first.stdout + first.stderr
    conn, admin = cloud.sdk(), cloud.sdk("admin")

    flavor = next(f for f in admin.compute.flavors() if f.name == f"{LAB}-k8s")
    assert (flavor.ram, flavor.vcpus, flavor.disk) == (4096, 2, 20)
    sg = next(conn.network.security_groups(name=f"{LAB}-k8s"))
    rules = {
        (r.protocol, r.port_range_min, r.port_range_max) for r in conn.network.security_group_rules(security_group_id=sg.id)
    }
    assert {
        ("tcp", 30000, 32767),
        ("udp", 30000, 32767),
        ("tcp", 22, 22),
        ("tcp", 6443, 6443),
        ("tcp", 10250, 10250),
    } <= rules
    image = next(conn.image.images(name=f"{LAB}-node"))
    assert image.hash_value == hashlib.sha512(cloud.image_file.read_bytes()).hexdigest() and TAG in image.tags
    servers = list(conn.compute.servers(tags=TAG))
    assert sorted(x.name for x in servers) == [f"{LAB}-master", f"{LAB}-worker-1", f"{LAB}-worker-2"]
    for srv in servers:
        assert srv.status == "ACTIVE" and srv.key_name == f"{LAB}-key"
        assert srv.has_config_drive  # cloud-init reads the SSH key from it, metadata API or not
        assert {g["name"] for g in srv.security_groups} == {f"{LAB}-k8s"}
        port = next(conn.network.ports(device_id=srv.id))
        fip = next(conn.network.ips(port_id=port.id))
        assert fip.floating_ip_address and TAG in fip.tags
    key = cloud.state / LAB / "id_ed25519"
    assert key.stat().st_mode & 0o777 == 0o600

    t0 = time.monotonic()
    second = cloud.inv("openstack.deploy")
    wall2 = time.monotonic() - t0
    assert second.returncode == 0 and not re.search(r"\schanged\s", second.stdout), second.stdout
    assert second.writes == 0 and first.writes > 0
    print(
        f"\nfirst run {first.seconds:.2f} s in the tool ({wall1:.2f} s wall, {first.writes} API writes); "
        f"second run {second.seconds:.2f} s ({wall2:.2f} s wall, 0 writes): {second.seconds / first.seconds:.1%}"
    )
    assert second.seconds <= 0.10 * first.seconds


def test_deleted_rule_is_recreated_and_reported(cloud):
    conn = cloud.sdk()
    sg = next(conn.network.security_groups(name=f"{LAB}-k8s"))
    rule = next(
        r
        for r in conn.network.security_group_rules(security_group_id=sg.id)
        if (r.protocol, r.port_range_min) == ("tcp", 30000)
    )
    conn.network.delete_security_group_rule(rule)
    r = cloud.inv("openstack.prepare")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"security group .*changed.*NodePort services \(tcp 30000-32767 from [0-9./]+\)", r.stdout), r.stdout
    assert r.writes == 1  # exactly that rule
    again = cloud.inv("openstack.prepare")
    assert again.writes == 0 and not re.search(r"\schanged\s", again.stdout)


def test_nodes_are_open_only_to_the_allowed_cidrs_and_a_change_is_drift(cloud):
    conn = cloud.sdk()
    sg = next(conn.network.security_groups(name=f"{LAB}-k8s"))

    def outside():
        return {
            (r.protocol, r.port_range_min, r.remote_ip_prefix)
            for r in conn.network.security_group_rules(security_group_id=sg.id, direction="ingress")
            if r.remote_group_id is None
        }

    public = next(conn.network.subnets(network_id=next(conn.network.networks(name="public")).id)).cidr
    private = next(conn.network.subnets(name="private-subnet")).cidr
    assert {cidr for _, _, cidr in outside()} == {public, private}  # the default: never 0.0.0.0/0
    assert ("tcp", 22, public) in outside() and ("tcp", 30000, private) in outside()
    narrowed = cloud.inv("openstack.prepare", allowed_cidrs=["203.0.113.0/24"])
    assert narrowed.returncode == 0 and re.search(r"security group .*changed", narrowed.stdout), narrowed.stdout
    assert {cidr for _, _, cidr in outside()} == {"203.0.113.0/24"}
    assert cloud.inv("openstack.prepare", allowed_cidrs=["203.0.113.0/24"]).writes == 0
    back = cloud.inv("openstack.prepare")
    assert back.returncode == 0 and {cidr for _, _, cidr in outside()} == {public, private}


def test_a_server_without_config_drive_is_drift_with_the_fix_never_replaced(cloud):
    conn = cloud.sdk()
    name = f"{LAB}-nodrive"
    flavor = next(f for f in cloud.sdk("admin").compute.flavors() if f.name == f"{LAB}-k8s")
    net = next(conn.network.networks(name="private"))
    image = next(conn.image.images(name=f"{LAB}-node"))
    srv = conn.compute.create_server(
        name=name,
        flavor_id=flavor.id,
        image_id=image.id,
        key_name=f"{LAB}-key",
        networks=[{"uuid": net.id}],
        security_groups=[{"name": f"{LAB}-k8s"}],
        tags=[TAG],
    )
    srv = conn.compute.wait_for_server(srv, wait=120)
    try:
        path = cloud.config()
        cfg = yaml.safe_load(path.read_text())
        cfg["cluster"]["nodes"].append({"name": "nodrive", "role": "worker"})
        path.write_text(yaml.safe_dump(cfg))
        r = run_inv(["-f", str(path), "openstack.servers"], timeout=600)
        out = r.stdout + r.stderr
        assert r.returncode == 1 and f"server {name} differs" in out and "no config drive" in out, out
        assert "openstack.teardown" in out  # the fix: recreate it
        assert conn.compute.get_server(srv.id).id == srv.id  # not replaced behind the user's back
    finally:
        conn.compute.delete_server(srv)
        conn.compute.wait_for_delete(srv, wait=120)


def test_a_service_that_dies_mid_run_is_named_and_the_rerun_converges_without_duplicates(cloud):
    """glance stopped (the loopback cloud keeps its data): openstack.prepare creates the flavor,
    keypair and security group, then fails at the image naming glance and its endpoint, with the
    fix; glance started again, the re-run converges and every object exists once."""
    lab = f"gl{uuid.uuid4().hex[:4]}"
    path = cloud.config()
    cfg = yaml.safe_load(path.read_text())
    cfg["lab"]["name"] = lab
    path.write_text(yaml.safe_dump(cfg))
    loopback = [
        sys.executable,
        str(Path(__file__).resolve().parents[2] / "osk8s_tasks" / "embedded" / "openstack" / "loopback.py"),
    ]
    env = SDK_WARNINGS_AS_ERRORS
    subprocess.run([*loopback, "stop-service", "glance"], check=True, capture_output=True)
    try:
        failed = run_inv(["-f", str(path), "openstack.prepare"], env=env)
    finally:
        subprocess.run([*loopback, "start-service", "glance"], check=True, capture_output=True)
    out = failed.stdout + failed.stderr
    try:
        assert failed.returncode == 1 and "Traceback" not in out and "internal error" not in out, out
        assert "glance (image) at http://127.0.0.1:9292 does not answer" in out and "devstack.status" in out, out
        assert re.search(rf"security group {lab}-k8s\s.*changed", failed.stdout), failed.stdout  # done before glance died
        again = run_inv(["-f", str(path), "openstack.prepare"], env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        conn, admin = cloud.sdk(), cloud.sdk("admin")
        assert len([f for f in admin.compute.flavors() if f.name == f"{lab}-k8s"]) == 1
        assert len(list(conn.network.security_groups(name=f"{lab}-k8s"))) == 1
        assert len(list(conn.image.images(name=f"{lab}-node"))) == 1
    finally:
        run_inv(["-f", str(path), "openstack.teardown"])


def test_secrets_never_reach_logs(cloud):
    r = cloud.inv("openstack.prepare")
    cred = yaml.safe_load((cloud.state / LAB / "app-credential.yaml").read_text())
    assert (cloud.state / LAB / "app-credential.yaml").stat().st_mode & 0o777 == 0o600
    logs = r.stdout + r.stderr + "".join(p.read_text() for p in (cloud.state / LAB / "logs").glob("*.jsonl"))
    for secret in (cred["secret"], "demopw", "adminpw"):
        assert secret not in logs


def test_teardown_deletes_cluster_objects_first_then_everything_twice(cloud):
    conn = cloud.sdk()
    subnet = next(conn.network.subnets(name="private-subnet"))
    name = f"kube_service_{LAB}_default_echo"  # as openstack-cloud-controller-manager names and tags it
    lb = conn.load_balancer.create_load_balancer(name=name, vip_subnet_id=subnet.id, tags=[name])
    conn.load_balancer.wait_for_load_balancer(lb.id, wait=60)
    vol = conn.block_storage.create_volume(size=1, name="pvc-1234", metadata={"cinder.csi.openstack.org/cluster": LAB})
    conn.block_storage.wait_for_status(vol, "available", wait=60)

    r = cloud.inv("openstack.teardown")
    assert r.returncode == 0, r.stdout + r.stderr
    order = [e["kind"] for e in r.events if e["event"] == "teardown.delete"]
    assert order.index("load balancers (cluster)") < order.index("servers")
    assert order.index("volumes (cluster)") < order.index("servers")
    assert "0 objects with tag" in r.stdout
    admin = cloud.sdk("admin")
    left = (
        _owned(conn)
        + [x for x in conn.load_balancer.load_balancers() if x.name == name]
        + [v for v in conn.block_storage.volumes() if v.name == "pvc-1234"]
        + [f for f in admin.compute.flavors() if f.name == f"{LAB}-k8s"]
        + [k for k in conn.compute.keypairs() if k.name == f"{LAB}-key"]
    )
    assert left == []
    again = cloud.inv("openstack.teardown")
    assert again.returncode == 0 and again.writes == 0 and not re.search(r"\schanged\s", again.stdout)
