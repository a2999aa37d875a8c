"""The sshd harness and osk8s's Fabric layer against real sshd hosts in network namespaces."""

import uuid
from pathlib import Path

import pytest

from osk8s_tasks.core import ssh as remote
from osk8s_tasks.core.engine import StepFailed
from osk8s_tasks.embedded.sshd import SshHosts
from tests.conftest import require_root_tools

pytestmark = pytest.mark.sshd


@pytest.fixture(scope="module")
def hosts():
    require_root_tools("sshd", "ip", "unshare")
    h = SshHosts(
        Path(f"/run/osk8s-sshd-{uuid.uuid4().hex[:6]}"), count=3, prefix="o8t", private_dirs=("/var/lib/osk8s-test",)
    ).start()
    yield h
    h.stop()


def test_several_hosts_each_with_its_own_address_and_files(hosts):
    seen = {}
    for h in hosts.hosts:
        conn = remote.connect(hosts.ssh_config, h.name)
        out = conn.run("ip -4 -o addr show scope global; id -un; sudo -n true && echo sudo-ok", hide=True).stdout
        conn.run(f"echo {h.name} | sudo tee /var/lib/osk8s-test/whoami >/dev/null", hide=True)
        seen[h.name] = out
        conn.close()
    for h in hosts.hosts:
        assert h.address in seen[h.name] and "osk8s" in seen[h.name] and "sudo-ok" in seen[h.name]
        conn = remote.connect(hosts.ssh_config, h.name)
        assert conn.run("cat /var/lib/osk8s-test/whoami", hide=True).stdout.strip() == h.name
        conn.close()


def test_unknown_host_key_is_rejected(hosts, tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text(hosts.ssh_config.read_text().replace(str(hosts.known_hosts), str(tmp_path / "empty_known_hosts")))
    ok, detail = remote.probe(cfg, hosts.hosts[0].name)
    assert not ok and "not recorded" in detail


def test_changed_host_key_is_rejected(hosts, tmp_path):
    other = hosts.hosts[1].host_key.with_suffix(".pub").read_text().split()[:2]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{hosts.hosts[0].address} {' '.join(other)}\n")
    cfg = tmp_path / "ssh_config"
    cfg.write_text(hosts.ssh_config.read_text().replace(str(hosts.known_hosts), str(wrong)))
    ok, detail = remote.probe(cfg, hosts.hosts[0].name)
    assert not ok and "does not match" in detail


def test_config_without_known_hosts_file_is_refused(hosts, tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host x\n  HostName {hosts.hosts[0].address}\n  UserKnownHostsFile /dev/null\n")
    with pytest.raises(StepFailed, match="no UserKnownHostsFile"):
        remote.connect(cfg, "x")


def test_a_second_host_set_alive_at_once_gets_its_own_addresses(hosts):
    """CI once left a fixture's hosts behind after a failed setup; the next module's hosts took the
    same 198.18.0.2 and SSH reached the wrong sshd (BadHostKey). Each set now takes free subnets."""
    other = SshHosts(Path(f"/run/osk8s-sshd-{uuid.uuid4().hex[:6]}"), count=1, prefix="o8u").start()
    try:
        assert other.hosts[0].address not in {h.address for h in hosts.hosts}
        for s, h in ((hosts, hosts.hosts[0]), (other, other.hosts[0])):
            ok, detail = remote.probe(s.ssh_config, h.name)
            assert ok, detail
    finally:
        other.stop()


def test_a_proxyjump_hop_is_host_key_checked_too(tmp_path):
    """devstack.ssh_target behind a ProxyJump: Fabric builds the hop's connection itself, with
    AutoAddPolicy; osk8s checks the hop's key against the same known_hosts."""
    pair = SshHosts(Path(f"/run/osk8s-sshd-{uuid.uuid4().hex[:6]}"), count=2, prefix="o8j", gateway=True).start()
    try:
        jump, target = pair.hosts
        cfg = tmp_path / "ssh_config"
        cfg.write_text(
            pair.ssh_config.read_text() + f"Host via-jump\n  HostName {target.address}\n  User osk8s\n"
            f"  IdentityFile {pair.client_key}\n  UserKnownHostsFile {pair.known_hosts}\n  ProxyJump {jump.name}\n"
        )
        ok, detail = remote.probe(cfg, "via-jump")
        assert ok, detail
        only_target = tmp_path / "known_hosts"  # the jump host's key is missing
        only_target.write_text(
            "".join(ln + "\n" for ln in pair.known_hosts.read_text().splitlines() if not ln.startswith(f"{jump.address} "))
        )
        cfg.write_text(cfg.read_text().replace(str(pair.known_hosts), str(only_target)))
        ok, detail = remote.probe(cfg, "via-jump")
        assert not ok and "not recorded" in detail, detail
    finally:
        pair.stop()
