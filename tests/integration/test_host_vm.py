"""`host.*` against the real vagrant-libvirt lab: libvirtd in a network namespace, a Debian box
built with debootstrap, a TCG VM. Every call goes through the real `inv` CLI, as a user's would."""

import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_root_tools, run_inv

pytestmark = pytest.mark.vm
VMLAB = ROOT / "tests" / "peers" / "vmlab.sh"
NETNS = "osk8s-vmlab"
LAB = f"osk8s-ci-{uuid.uuid4().hex[:4]}"


def _vmlab(cmd):
    return subprocess.run(["bash", str(VMLAB), cmd], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_root_tools("vagrant", "libvirtd", "debootstrap", "qemu-system-x86_64")
    running = "libvirtd: running" in _vmlab("status")
    if not running:
        _vmlab("start")
    box = _vmlab("box").splitlines()[-1]
    state = tmp_path_factory.mktemp("lab")
    cfg = state / "lab.yaml"
    cfg.write_text(
        f"lab: {{name: {LAB}, state_dir: {state}}}\n"
        f"host: {{driver: qemu, box: {Path(box).stem}, box_url: {box}, memory: 1024, cpus: 1, disk_gb: 8,"
        " boot_timeout: 600}\n"
        # devstack.* on the VM itself, with the DevStack stand-in copied there (no internet here)
        "devstack: {repo: 'file:///home/vagrant/devstack-standin.git', branch: master, packages: [git, curl],\n"
        "  watchdog: {services: [{unit: keystone, url: 'http://{host_ip}:15000/'}, {unit: g-api, url: 'http://{host_ip}:19292/'}],\n"
        "             unhealthy_seconds: 20, interval: 3}}\n"
    )

    def inv(*args):
        return run_inv(["-f", str(cfg), *args], netns=NETNS)

    inv.lab_dir = state / LAB
    yield inv
    inv("host.destroy")  # also when a test failed half-way
    if not running:
        _vmlab("stop")


def _domains():
    import libvirt

    conn = libvirt.open("qemu:///system")
    try:
        return [d.name() for d in conn.listAllDomains()]
    finally:
        conn.close()


def _rows(out, outcome):
    return [ln for ln in out.splitlines() if re.search(rf"\s{re.escape(outcome)}\s", ln)]


def test_dry_run_changes_nothing(lab):
    r = lab("host.up", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would-change" in r.stdout and "vagrant up" in r.stdout and "dry run: nothing was changed" in r.stdout
    assert LAB not in _domains()
    assert not (lab.lab_dir / "host.json").exists() and not (lab.lab_dir / "vagrant").exists()


def test_up_boots_and_second_up_changes_nothing(lab):
    first = lab("host.up")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "lab VM running" in first.stdout and _rows(first.stdout, "changed")
    assert LAB in _domains()
    second = lab("host.up")
    assert second.returncode == 0, second.stdout + second.stderr
    assert not _rows(second.stdout, "changed") and "6 ok, 0 failed" in second.stdout
    assert all("reason=" in ln for ln in second.stderr.splitlines() if "step.ok" in ln)


def test_ssh_through_the_generated_config(lab):
    r = lab("host.ssh", "-c", "uname -a")
    assert r.returncode == 0 and r.stdout.startswith(f"Linux {LAB} "), r.stdout + r.stderr
    assert lab("host.ssh", "-c", "exit 7").returncode == 7
    cfg = (lab.lab_dir / "ssh_config").read_text()
    assert "StrictHostKeyChecking yes" in cfg and "StrictHostKeyChecking no" not in cfg
    assert oct((lab.lab_dir / "ssh_config").stat().st_mode & 0o777) == "0o600"
    plain = subprocess.run(
        ["ip", "netns", "exec", NETNS, "ssh", "-F", str(lab.lab_dir / "ssh_config"), LAB, "hostname"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.stdout.strip() == LAB, plain.stderr  # OpenSSH accepts the file and the recorded keys


def test_devstack_deploy_on_the_vm_then_again_changes_nothing(lab, tmp_path):
    from tests.peers.devstack import standin_repo

    repo = standin_repo(tmp_path)
    tar = subprocess.run(["tar", "czf", "-", "-C", str(repo.parent), repo.name], capture_output=True, check=True).stdout
    copy = subprocess.run(
        ["ip", "netns", "exec", NETNS, "ssh", "-F", str(lab.lab_dir / "ssh_config"), LAB, "tar xzf - -C /home/vagrant"],
        input=tar,
        capture_output=True,
        timeout=120,
    )
    assert copy.returncode == 0, copy.stderr
    first = lab("devstack.deploy")
    assert first.returncode == 0, first.stdout + first.stderr
    assert re.search(r"stack\.sh\s.*\schanged\s", first.stdout) and "stack.sh completed in" in first.stderr
    units = lab("host.ssh", "-c", "systemctl is-active devstack@g-api.service devstack@keystone.service")
    assert units.stdout.split() == ["active", "active"], units.stdout  # real systemd units on the VM
    second = lab("devstack.deploy")
    assert second.returncode == 0 and not _rows(second.stdout, "changed"), second.stdout + second.stderr
    assert "7 ok, 0 failed" in second.stdout
    assert lab("host.ssh", "-c", "cat /opt/stack/.standin-stack-count").stdout.strip() == "1"


def test_snapshot_round_trip(lab):
    assert lab("host.ssh", "-c", "echo kept > ~/marker && sync").returncode == 0
    snap = lab("host.snapshot", "base")
    assert snap.returncode == 0 and _rows(snap.stdout, "changed"), snap.stdout + snap.stderr
    assert lab("host.ssh", "-c", "rm ~/marker").returncode == 0
    restored = lab("host.restore", "base")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert lab("host.ssh", "-c", "cat ~/marker").stdout.strip() == "kept"
    again = lab("host.snapshot", "base")
    assert again.returncode == 0 and "snapshot base exists" in again.stdout and not _rows(again.stdout, "changed")
    listing = lab("host.snapshots")
    assert re.search(r"^base\s.*\*$", listing.stdout, re.M), listing.stdout


def test_restore_of_unknown_snapshot_names_the_existing_ones(lab):
    r = lab("host.restore", "nope")
    assert r.returncode == 1 and "no snapshot 'nope' (snapshots: base)" in r.stdout + r.stderr


def test_status_reports_the_running_vm(lab):
    r = lab("host.status")
    assert r.returncode == 0
    assert re.search(r"^state\s+running$", r.stdout, re.M) and "host key verified" in r.stdout


def test_destroy_twice_second_is_a_no_op(lab):
    first = lab("host.destroy")
    assert first.returncode == 0 and _rows(first.stdout, "changed"), first.stdout + first.stderr
    assert LAB not in _domains()
    second = lab("host.destroy")
    assert second.returncode == 0 and "nothing to destroy" in second.stdout and not _rows(second.stdout, "changed")
