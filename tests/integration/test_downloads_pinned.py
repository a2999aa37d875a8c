"""What the tool applies or trusts from the network is checked against a pin before use, over real
SSH on sshd nodes behind a gateway (the Kubernetes tools there are the recording stand-ins of
tests/peers/k8s_standin, whose curl serves the test's files): a Release.key with another
fingerprint is never installed, a Calico manifest with another sha256 is never applied."""

import re
import uuid
from pathlib import Path

import pytest
import yaml

from osk8s_tasks.embedded.simnodes import calls, node_hosts
from tests.conftest import require_root_tools, run_inv

pytestmark = pytest.mark.sshd
LAB = f"p{uuid.uuid4().hex[:4]}"


@pytest.fixture(scope="module")
def hosts():
    require_root_tools("sshd", "ip", "unshare", "gpg")
    hosts = node_hosts(Path(f"/run/osk8s-pins-{uuid.uuid4().hex[:6]}"), LAB, workers=0, prefix="o8p")
    yield hosts
    hosts.stop()


def _inv(hosts, *args, **versions):
    cfg = hosts.workdir / f"lab-{uuid.uuid4().hex[:6]}.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "lab": {"name": LAB, "state_dir": str(hosts.workdir / "state")},
                "versions": {**hosts.pins, **versions},
                "devstack": {"ssh_target": "gateway", "ssh_config": str(hosts.ssh_config)},
                "cluster": {"ssh_config": str(hosts.ssh_config), "nodes": [{"name": "master", "role": "control-plane"}]},
            }
        )
    )
    return run_inv(["-f", str(cfg), *args], timeout=300)


def test_a_release_key_with_another_fingerprint_is_refused(hosts):
    r = _inv(hosts, "cluster.prepare-nodes", kubernetes_apt_key_fingerprint="DE15B14486CD377B9E876E1A234654DA9A296436")
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "not the pinned DE15B14486CD377B9E876E1A234654DA9A296436" in out, out
    master = hosts.hosts[1]
    assert not [c for c in calls(hosts, master) if re.match(r"apt-get .*install.*kubelet", c)]
    assert not (hosts.private(master, "/etc/apt/keyrings") / "kubernetes-apt-keyring.asc").exists()


def test_a_calico_manifest_with_another_sha256_is_never_applied(hosts):
    r = _inv(hosts, "cluster.deploy", calico_manifest_sha256="0" * 64)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "refused, nothing applied" in out and "0" * 64 in out, out
    master = hosts.hosts[1]
    assert [c for c in calls(hosts, master) if re.match(r"curl .*calico.yaml", c)]
    assert not [c for c in calls(hosts, master) if re.match(r"kubectl .* apply", c)]
