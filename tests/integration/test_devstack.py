"""`devstack.*` over real SSH against sshd test hosts in network namespaces, with the DevStack
stand-in (tests/peers/devstack_standin: DevStack itself needs the internet and most of an hour).
Every call goes through the real `inv` CLI."""

import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from osk8s_tasks.embedded.sshd import SshHosts
from tests.conftest import INV, ROOT, require_root_tools, run_inv
from tests.peers.devstack import patch_for_standin, standin_repo

pytestmark = pytest.mark.sshd
PRIVATE = ("/opt/stack", "/etc/sysctl.d", "/etc/systemd/system", "/usr/local/bin", "/var/lib/osk8s-standin")


@pytest.fixture(scope="module")
def lab(request):
    require_root_tools("sshd", "ip", "unshare", "git", "curl", "flock")
    hosts = SshHosts(Path(f"/run/osk8s-ds-{uuid.uuid4().hex[:6]}"), count=4, prefix="o8d", private_dirs=PRIVATE).start()
    request.addfinalizer(hosts.stop)  # runs even when the rest of the setup fails
    shared = hosts.workdir / "shared"  # readable by the hosts' user, unlike pytest's 0700 tmp
    shared.mkdir()
    repo = standin_repo(shared)
    patch = patch_for_standin(shared)
    subprocess.run(["chown", "-R", "osk8s:", str(repo)], check=True)  # git refuses others' repos

    class Lab:
        def __init__(self):
            self.hosts, self.state = hosts, shared / "state"

        def config(self, host, **devstack):
            cfg = {
                "ssh_target": host.name,
                "ssh_config": str(hosts.ssh_config),
                "repo": f"file://{repo}",
                "branch": "master",
                "packages": ["git", "curl"],
                "patches": [str(patch)],
                "watchdog": {
                    "services": [
                        {"unit": "keystone", "url": "http://{host_ip}:15000/"},
                        {"unit": "g-api", "url": "http://{host_ip}:19292/"},
                    ],
                    "unhealthy_seconds": 3,
                    "interval": 1,
                },
                **devstack,
            }
            path = shared / f"{host.name}.yaml"
            path.write_text(yaml.safe_dump({"lab": {"name": host.name, "state_dir": str(self.state)}, "devstack": cfg}))
            return path

        def inv(self, host, *args, **devstack):
            return run_inv(["-f", str(self.config(host, **devstack)), *args], timeout=300)

        def file(self, host, path):
            """A file under the host's /opt/stack, links resolved inside the host's own view."""
            f = hosts.private(host, "/opt/stack") / path
            while f.is_symlink() and os.readlink(f).startswith("/opt/stack/"):
                f = hosts.private(host, "/opt/stack") / os.readlink(f)[len("/opt/stack/") :]
            return f

        def netns(self, host, *cmd):
            return subprocess.run(["ip", "netns", "exec", host.netns, *cmd], capture_output=True, text=True)

        def stack_count(self, host):
            f = self.file(host, ".standin-stack-count")
            return int(f.read_text()) if f.exists() else 0

    return Lab()


def _rows(out, outcome):
    return [ln for ln in out.splitlines() if re.search(rf"\s{re.escape(outcome)}\s", ln)]


def test_dry_run_shows_plan_and_changes_nothing(lab):
    h = lab.hosts.hosts[0]
    lab.netns(h, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
    r = lab.inv(h, "devstack.deploy", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "net.ipv6.conf.all.disable_ipv6 1 -> 0" in out  # the live value, then the wanted one
    assert "clone file://" in out and "apply add-phase.patch to stack.sh" in out
    assert f"HOST_IP={h.address}" in out and "ADMIN_PASSWORD=***" in out  # the local.conf it would write
    assert lab.netns(h, "sysctl", "-n", "net.ipv6.conf.all.disable_ipv6").stdout.strip() == "1"
    assert not lab.file(h, "devstack").exists() and lab.stack_count(h) == 0


def test_deploy_then_second_deploy_changes_nothing(lab):
    h = lab.hosts.hosts[0]
    log_json = lab.state / "deploy.jsonl"
    first = lab.inv(h, "devstack.deploy", "--log-json", str(log_json))
    assert first.returncode == 0, first.stdout + first.stderr
    for step in (
        "ipv6 sysctls",
        "/opt/stack owner",
        "devstack checkout",
        "patch add-phase.patch",
        "local.conf",
        "stack.sh",
        "clouds.yaml",
    ):
        assert re.search(rf"{re.escape(step)}\s.*\schanged\s", first.stdout), step
    assert "Patched by osk8s" in first.stderr  # the patch took effect: its phase ran
    # nova's metadata API runs (DevStack starts it only when local.conf enables n-api-meta): the
    # nodes' cloud-init gets its SSH key from it
    meta = lab.netns(h, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", f"http://{h.address}:18775/")
    assert meta.stdout == "200", "no nova metadata API: the nodes would never get their SSH key"
    assert lab.netns(h, "sysctl", "-n", "net.ipv6.conf.all.disable_ipv6").stdout.strip() == "0"
    conf = lab.file(h, "devstack/local.conf")
    assert oct(conf.stat().st_mode & 0o777) == "0o600" and f"HOST_IP={h.address}" in conf.read_text()
    clouds = lab.state / h.name / "clouds.yaml"
    assert oct(clouds.stat().st_mode & 0o777) == "0o600"
    assert set(yaml.safe_load(clouds.read_text())["clouds"]) == {"devstack-admin", "devstack", "devstack-alt"}

    second = lab.inv(h, "devstack.deploy")
    assert second.returncode == 0, second.stdout + second.stderr
    assert not _rows(second.stdout, "changed") and "8 ok, 0 failed" in second.stdout
    assert "already applied" in second.stdout and "stack.sh completed in" in second.stdout
    assert lab.stack_count(h) == 1

    secrets = yaml.safe_load((lab.state / h.name / "secrets.yaml").read_text())
    logs = [first.stdout, first.stderr, second.stdout, second.stderr, log_json.read_text()]
    logs += [p.read_text() for p in (lab.state / h.name / "logs").glob("*.jsonl")]
    for value in secrets.values():
        assert value in conf.read_text()
        assert not any(value in text for text in logs), "a password reached a log"
    assert all(json.loads(line) for line in log_json.read_text().splitlines())


def test_patch_that_applies_neither_way_names_the_file(lab, tmp_path):
    h = lab.hosts.hosts[0]
    bad = tmp_path / "bad.patch"
    bad.write_text("--- a/stack.sh\n+++ b/stack.sh\n@@ -1,2 +1,2 @@\n-no such line\n-nor this\n+x\n+y\n")
    r = lab.inv(h, "devstack.patch", patches=[str(bad)])
    assert r.returncode == 1 and "patch bad.patch applies neither forward nor in reverse" in r.stdout + r.stderr


def test_watchdog_restarts_a_hung_service_and_the_stack_completes(lab):
    h = lab.hosts.hosts[1]
    lab.file(h, ".").mkdir(parents=True, exist_ok=True)
    lab.file(h, ".standin-hang-g-api").write_text("")
    r = lab.inv(h, "devstack.deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "watchdog.restart" in r.stderr and "devstack@g-api" in r.stderr
    assert "watchdog restarts: devstack@g-api x1" in r.stderr
    assert not lab.file(h, ".standin-hang-g-api").exists() and lab.stack_count(h) == 1


def test_killed_connection_mid_stack_reattaches_and_nothing_runs_twice(lab):
    h = lab.hosts.hosts[2]
    lab.file(h, ".").mkdir(parents=True, exist_ok=True)
    lab.file(h, ".standin-phase-seconds").write_text("1.5")
    cfg = lab.config(h)
    proc = subprocess.Popen(
        [INV, "-f", str(cfg), "devstack.deploy"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 120
    while not (
        (summary := lab.file(h, "logs/stack.sh.log.summary")).exists() and "Starting Keystone" in summary.read_text()
    ):
        assert time.monotonic() < deadline and proc.poll() is None, (
            proc.stdout.read() if proc.poll() is not None else "timeout"
        )
        time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)  # the tool and its SSH connection die mid-stack
    proc.wait()
    again = lab.inv(h, "devstack.stack")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "follow the running stack.sh" in again.stdout
    assert "stack.sh completed in" in lab.file(h, "logs/stack.sh.log.summary").read_text() and lab.stack_count(h) == 1
    assert lab.inv(h, "devstack.stack").stdout.count(" ok ") == 2


def test_failed_stack_names_the_phase_then_force_restacks(lab):
    h = lab.hosts.hosts[3]
    lab.file(h, ".").mkdir(parents=True, exist_ok=True)
    lab.file(h, ".standin-fail-at").write_text("Starting Cinder")
    r = lab.inv(h, "devstack.deploy")
    assert r.returncode == 1
    assert "stack.sh failed (exit 1) in phase 'Starting Cinder'" in r.stdout + r.stderr
    assert "stand-in told to fail" in r.stdout + r.stderr and "--force" in r.stdout + r.stderr
    again = lab.inv(h, "devstack.stack")  # a failed stack is not silently retried
    assert again.returncode == 1 and lab.stack_count(h) == 1
    lab.file(h, ".standin-fail-at").unlink()
    forced = lab.inv(h, "devstack.stack", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert lab.stack_count(h) == 2 and "stack.sh completed in" in lab.file(h, "logs/stack.sh.log.summary").read_text()


def test_passwords_the_run_did_not_make_are_never_printed(lab):
    """The VM's local.conf holds passwords this lab no longer knows (secrets.yaml lost): a failed
    stack's log tail (DevStack's xtrace: mysql -p<password>) and configure's diff print neither
    the old nor the new ones, on the console, in the run logs or in the final error."""
    h = lab.hosts.hosts[3]
    conf = lab.file(h, "devstack/local.conf")
    old = re.sub(r"(?m)^ADMIN_PASSWORD=.*$", "ADMIN_PASSWORD=OldAdminPw123", conf.read_text())
    conf.write_text(re.sub(r"(?m)^DATABASE_PASSWORD=.*$", "DATABASE_PASSWORD=LiveDbPw789", old))
    (lab.state / h.name / "secrets.yaml").unlink()
    lab.file(h, ".standin-fail-at").write_text("Starting Keystone")
    try:
        failed = lab.inv(h, "devstack.stack", "--force")
    finally:
        lab.file(h, ".standin-fail-at").unlink()
    assert failed.returncode == 1 and "mysql -uroot -p***" in failed.stdout + failed.stderr, failed.stdout + failed.stderr
    assert "LiveDbPw789" in lab.file(h, "logs/stack.sh.log").read_text()  # the trace really held it
    planned = lab.inv(h, "devstack.configure", "--dry-run")  # a check never writes: no secrets.yaml from a dry run
    planned_out = planned.stdout + planned.stderr  # the table shows what it would do; the console log says why
    assert planned.returncode == 0 and "passwords are not generated yet" in planned.stderr, planned_out
    assert "generate the lab's passwords" in planned.stdout, planned_out
    assert not (lab.state / h.name / "secrets.yaml").exists()
    configured = lab.inv(h, "devstack.configure")
    assert configured.returncode == 0, configured.stdout + configured.stderr
    assert "ADMIN_PASSWORD=*** (changed)" in configured.stdout + configured.stderr
    new = yaml.safe_load((lab.state / h.name / "secrets.yaml").read_text()).values()
    texts = [failed.stdout, failed.stderr, configured.stdout, configured.stderr]
    texts += [p.read_text() for p in (lab.state / h.name / "logs").glob("*.jsonl")]
    for secret in ["OldAdminPw123", "LiveDbPw789", *new]:
        assert not any(secret in t for t in texts), secret


def test_status_logs_and_unstack(lab):
    h = lab.hosts.hosts[0]
    st = lab.inv(h, "devstack.status")
    assert st.returncode == 0 and "completed in" in st.stdout and "devstack@g-api.service" in st.stdout
    assert re.search(r"api g-api\s+unit active, HTTP 200", st.stdout), st.stdout
    out = lab.state / "logs.tgz"
    lg = lab.inv(h, "devstack.logs", "--output", str(out))
    assert lg.returncode == 0 and oct(out.stat().st_mode & 0o777) == "0o600"
    names = subprocess.run(["tar", "tzf", str(out)], capture_output=True, text=True).stdout
    assert "stack.sh.log" in names and "journal/devstack@g-api.service.log" in names
    un = lab.inv(h, "devstack.unstack")
    assert un.returncode == 0 and _rows(un.stdout, "changed"), un.stdout + un.stderr
    assert "unit inactive" in lab.inv(h, "devstack.status").stdout
    again = lab.inv(h, "devstack.unstack")
    assert again.returncode == 0 and not _rows(again.stdout, "changed")
