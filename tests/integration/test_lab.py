"""lab.* through the CLI, against the test peers: the loopback OpenStack, and sshd nodes behind a
gateway (osk8s_tasks/embedded/nodes.py) on which the tool builds the real Kubernetes control plane with
kubeadm and runs the real cloud controllers (see test_cluster_remote.py for what is real and what
stands in). The host and devstack stages need the lab VM and DevStack: the gateway plays the
DevStack host (devstack.ssh_target), so `lab.up` shows the host stage skipped and the tests start
at `--from openstack`, as a user with an existing DevStack would."""

import re
import tarfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import openstack
import pytest
import yaml

from osk8s_tasks.embedded.nodes import on_loopback_cloud
from osk8s_tasks.embedded.simnodes import calls
from tests.conftest import require_root_tools, run_inv

pytestmark = pytest.mark.sshd
LAB = f"l{uuid.uuid4().hex[:4]}"
TAG = f"osk8s:{LAB}"


@pytest.fixture(scope="module")
def lab(loopback_cloud):
    require_root_tools("sshd", "ip", "unshare", "openssl", "qemu-img", "gpg")
    with ExitStack() as cleanup:
        nodes, ep = on_loopback_cloud(cleanup, "lab", LAB, "o8l", loopback_cloud, workers=1, verify={"timeout": 180})

        class Lab:
            def inv(self, *args, timeout=1200):
                t0 = time.monotonic()
                r = run_inv(["-f", str(ep.invoke_config), *args], timeout=timeout)
                r.seconds = time.monotonic() - t0
                return r

        lab = Lab()
        lab.nodes, lab.ep, lab.hosts, lab.state = nodes, ep, nodes.hosts, ep.state_dir
        lab.conn = openstack.connect(cloud="demo")
        lab.clouds_yaml = Path(loopback_cloud)
        cleanup.callback(lab.inv, "openstack.teardown")
        yield lab


def _owned(conn) -> list:
    return (
        list(conn.compute.servers(tags=TAG))
        + list(conn.network.security_groups(tags=TAG))
        + list(conn.network.ips(tags=TAG))
        + list(conn.image.images(tag=TAG))
        + [lb for lb in conn.load_balancer.load_balancers() if f"_{LAB}_" in lb.name]
    )


def _stage(out: str, stage: str) -> str:
    """The RESULT column of a stage's row in lab.up's table."""
    m = re.search(rf"^{stage}\s+(\S+)", out, re.M)
    assert m, out
    return m.group(1)


def test_dry_run_on_empty_state_lists_every_stage_and_creates_nothing(lab):
    r = lab.inv("lab.up", "--dry-run")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert _stage(r.stdout, "host") == "skipped" and "devstack.ssh_target gateway" in r.stdout
    for stage in ("openstack", "cluster", "verify"):
        assert _stage(r.stdout, stage) == "would-change", out
    assert "after openstack.deploy" in r.stdout  # the cluster's prerequisites: what the stage above makes
    assert "(dry run: nothing was changed)" in r.stdout
    assert not _owned(lab.conn)
    for h in lab.hosts.hosts[1:]:  # the nodes were read, never changed
        assert not [c for c in calls(lab.hosts, h) if not c.startswith(("sysctl -n", "kubeadm version"))]
    made = [p for p in lab.state.rglob("*") if p.is_file() and "logs" not in p.parts]
    assert not made, made


def test_up_builds_the_lab_and_a_second_run_changes_nothing(lab):
    first = lab.inv("lab.up", "--from", "openstack", "--until", "cluster")
    assert first.returncode == 0, first.stdout + first.stderr
    assert _stage(first.stdout, "openstack") == "changed" and _stage(first.stdout, "cluster") == "changed"
    assert not re.search(r"^(host|devstack|verify)\s", first.stdout, re.M)  # --from / --until: not even checked
    second = lab.inv("lab.up", "--from", "openstack", "--until", "cluster")
    assert second.returncode == 0, second.stdout + second.stderr
    assert _stage(second.stdout, "openstack") == "ok" and _stage(second.stdout, "cluster") == "ok", second.stdout
    assert not re.search(r"\schanged\s", second.stdout), second.stdout
    lab.first, lab.second = first.seconds, second.seconds
    print(
        f"lab.up --from openstack --until cluster: first {first.seconds:.1f} s, second {second.seconds:.1f} s "
        f"({second.seconds / first.seconds:.2f})"
    )
    status = lab.inv("lab.status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert (
        "devstack.ssh_target gateway" in status.stdout
        and "2 nodes, 2 Ready, 2 with an OpenStack providerID" in status.stdout
    )


def _lab_secrets(lab) -> list[str]:
    """Every secret of this lab that a bundle could hold: the application credential's secret, the
    clouds' passwords, the kubeadm bootstrap tokens the control plane issued, the admin client key."""
    cred = yaml.safe_load((lab.state / "app-credential.yaml").read_text())
    clouds = yaml.safe_load(lab.clouds_yaml.read_text())["clouds"]
    secrets = [cred["secret"]] + [c["auth"]["password"] for c in clouds.values() if c["auth"].get("password")]
    master = lab.hosts.hosts[1]
    tokens = lab.hosts.private(master, "/var/lib/osk8s-standin") / "tokens"
    secrets += tokens.read_text().split() if tokens.exists() else []
    admin = yaml.safe_load((lab.state / "admin.conf").read_text())
    secrets += [u["user"]["client-key-data"] for u in admin["users"] if u["user"].get("client-key-data")]
    return [s for s in secrets if len(s) >= 8]


def test_collect_holds_every_part_the_peers_can_give_and_no_secret(lab, tmp_path):
    out = tmp_path / "bundle.tar.gz"
    r = lab.inv("lab.collect", "--output", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    with tarfile.open(out) as t:
        members = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    index = members["index.txt"].decode()
    for part in (
        "octavia load balancers",
        "cinder volumes",
        "server consoles",
        "cluster objects and events",
        "controller pod logs",
        "node journals",
    ):
        assert re.search(rf"^ok\s+{re.escape(part)}", index, re.M), index
    # the gateway is no DevStack host: the one part that cannot be read is one line, not a failure
    assert re.search(r"^missing devstack", index, re.M), index
    blob = b"\n".join(members.values())
    for secret in _lab_secrets(lab):
        assert secret.encode() not in blob, f"a secret of the lab is in the bundle ({secret[:4]}...)"
    with tarfile.open(out) as t:
        names = t.getnames()
    assert any(n.startswith("cluster/") for n in names) and any(n.startswith("openstack/") for n in names)


def test_down_twice_leaves_nothing(lab):
    down = lab.inv("lab.down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "0 objects with tag" in down.stdout, down.stdout  # openstack.teardown's orphan report
    assert not _owned(lab.conn)
    for h in lab.hosts.hosts[1:]:
        assert [comm for _, comm in lab.nodes.processes(h.name)] == ["sshd"]
        assert not list(lab.hosts.private(h, "/etc/kubernetes").glob("*.conf"))
    assert not (lab.state / "admin.conf").exists()
    again = lab.inv("lab.down")
    assert again.returncode == 0 and not re.search(r"\schanged\s", again.stdout), again.stdout + again.stderr
