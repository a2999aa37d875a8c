"""lab.kind embedded through the CLI, as `./dev lab` runs it on a machine without KVM: the loopback
OpenStack (already running here: ./dev test started it, so the lab leaves it running), simulated
nodes, the real Kubernetes control plane from kubeadm, the real OCCM, cinder-csi,
octavia-ingress-controller and k8s-keystone-auth (osk8s_tasks/embedded; the nodes' stand-ins are
those of tests/peers/k8s_standin). verify judges the control plane; every data-plane row is skipped
with the reason.

Then a break is planted in the tool's own manifests (in a copy of this checkout, run as a user runs
it) and lab.up must fail at the check that owns it, naming the cause:
- cloud.conf with the 2018 key use-octavia: current OCCM ignores it silently, so the cluster stage's
  lint of what it renders is the check that owns it;
- OCCM's ClusterRole without services/status: OCCM builds the load balancer but cannot publish its
  address; verify.lb names the Service's SyncLoadBalancerFailed event;
- k8s-keystone-auth's RBAC as a namespaced Role: its cluster-wide ConfigMap informer is forbidden and it
  never becomes ready; verify.keystone names what its pod logged."""

import re
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from osk8s_tasks.core.embedded import EMBEDDED_RUN
from osk8s_tasks.embedded import build
from osk8s_tasks.embedded.steps import PREFIX
from tests.conftest import ROOT, require_root_tools, run_inv

pytestmark = pytest.mark.sshd
LAB = f"e{uuid.uuid4().hex[:4]}"


def _copy_checkout(dest: Path) -> Path:
    """This checkout's tracked files (as they are now) in `dest`: a user's clone, to plant a break in."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    dest.mkdir(parents=True)
    with tarfile.open(dest / ".copy.tar", "w") as t:
        for name in files.decode().split("\0"):
            if name and (ROOT / name).exists():
                t.add(ROOT / name, arcname=name)
    with tarfile.open(dest / ".copy.tar") as t:
        t.extractall(dest, filter="tar")
    (dest / ".copy.tar").unlink()
    return dest


@pytest.fixture(scope="module")
def lab(loopback_cloud, tmp_path_factory):
    require_root_tools("sshd", "ip", "unshare", "openssl", "qemu-img", "gpg", "busybox")
    d = tmp_path_factory.mktemp("embedded")
    doc = yaml.safe_load((ROOT / "examples" / "embedded-lab.yaml").read_text())
    doc["lab"].update(name=LAB, state_dir=str(d / "state"))

    class Lab:
        state = d / "state" / LAB
        netns = f"{PREFIX}1"  # the control plane's network namespace

        def config(self, **verify) -> Path:
            cfg = d / f"lab-{uuid.uuid4().hex[:6]}.yaml"
            cfg.write_text(yaml.safe_dump({**doc, "verify": {**doc["verify"], **verify}}))
            return cfg

        def inv(self, *args, cwd=ROOT, config=None, timeout=1500):
            t0 = time.monotonic()
            r = run_inv(["-f", str(config or self.cfg), *args], cwd=cwd, timeout=timeout)
            r.seconds, r.out = time.monotonic() - t0, r.stdout + r.stderr
            return r

        def kubectl(self, *args) -> subprocess.CompletedProcess:
            cmd = [str(build.binary("kubectl")), "--kubeconfig", str(self.state / "admin.conf"), *args]
            return subprocess.run(["ip", "netns", "exec", self.netns, *cmd], capture_output=True, text=True, timeout=120)

        def planted(self, name: str, template: str, old: str, new: str) -> Path:
            copy = _copy_checkout(d / name)
            path = copy / "manifests" / template
            text = path.read_text()
            assert old in text, f"the break cannot be planted: {template} no longer holds {old!r}"
            path.write_text(text.replace(old, new))
            return copy

    lab = Lab()
    lab.cfg = lab.config()
    try:
        yield lab
    finally:
        lab.inv("lab.down")


def _checks(out: str) -> dict[str, tuple[int, int, int, str]]:
    """lab.up's verify table: check -> (passed, failed, skipped, note)."""
    m = re.search(r"^CHECK\s+PASSED\s+FAILED", out, re.M)
    table = out[m.start() :] if m else ""
    rows = {}
    for line in table.splitlines()[1:]:
        m = re.match(r"^(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s*(.*)$", line)
        if not m:
            break
        rows[m.group(1)] = (int(m.group(2)), int(m.group(3)), int(m.group(4)), m.group(5))
    return rows


def _show(out: str, needle: str) -> None:
    """The first line naming the cause, as the user reads it (in the test log)."""
    print("\n" + next(line for line in out.splitlines() if needle in line)[:700])


def _stage(out: str, stage: str) -> str:
    m = re.search(rf"^{stage}\s+(\S+)", out, re.M)
    assert m, out[-3000:]
    return m.group(1)


def _ours() -> list[str]:
    """Network namespaces and processes of an embedded lab left on this machine."""
    left = [
        n
        for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        if n.startswith(PREFIX)
    ]
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = p.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(EMBEDDED_RUN / LAB) in cmd or "osk8s_tasks.embedded.netfwd" in cmd:
            left.append(f"pid {p.parent.name}: {cmd[:120]}")
    return left


def test_dry_run_on_nothing_lists_the_stages_and_starts_nothing(lab):
    r = lab.inv("lab.up", "--dry-run")
    assert r.returncode == 0, r.out[-3000:]
    assert _stage(r.stdout, "embedded") == "would-change" and "simulated nodes" in r.out
    for stage in ("openstack", "cluster", "verify"):
        assert _stage(r.stdout, stage) == "would-change", r.stdout[-3000:]
    assert not re.search(r"^(host|devstack)\s", r.stdout, re.M)
    assert "(dry run: nothing was changed)" in r.stdout
    assert not _ours() and not (EMBEDDED_RUN / LAB).exists()


def test_up_runs_the_whole_pipeline_and_a_second_run_changes_nothing(lab):
    first = lab.inv("lab.up")
    assert first.returncode == 0, first.out[-5000:]
    checks = _checks(first.stdout)
    assert set(checks) == {"lb", "pv", "ingress", "keystone"}, first.stdout[-3000:]
    for check in ("lb", "ingress", "keystone", "pv"):
        assert checks[check][0] > 0 and checks[check][1] == 0, checks
    assert checks["keystone"][2] == 0  # authn and authz are all control plane
    for check in ("lb", "ingress", "pv"):  # HTTP through floating IPs; the PVC's data
        assert checks[check][2] >= 2 and checks[check][3] == "skipped: embedded lab has no data plane", checks
    assert re.search(r"verify\.pv cinder: volume in-use on the pod's node\s+cluster\s+ok", first.stdout)
    assert re.search(
        r"verify\.lb HTTP from the devstack VM\s+cluster\s+skipped\s+\S+\s+embedded lab has no data plane", first.stdout
    )
    second = lab.inv("lab.up")
    assert second.returncode == 0, second.out[-5000:]
    for stage in ("embedded", "openstack", "cluster"):
        assert _stage(second.stdout, stage) == "ok", second.stdout[-3000:]
    assert all(c[1] == 0 for c in _checks(second.stdout).values()), second.stdout[-2000:]
    print(f"embedded lab.up: first {first.seconds:.0f} s, second {second.seconds:.0f} s")
    status = lab.inv("lab.status")
    assert status.returncode == 0, status.out[-2000:]
    assert re.search(
        r"^embedded\s+14 Kubernetes programs built.*loopback OpenStack runs.*gateway and 2 nodes run", status.stdout, re.M
    )
    assert "2 nodes, 2 Ready, 2 with an OpenStack providerID" in status.stdout, status.stdout
    assert not re.search(r"^(host|devstack)\s", status.stdout, re.M), status.stdout


def test_cloud_conf_with_use_octavia_fails_the_cluster_stage_naming_the_key(lab):
    copy = lab.planted("use-octavia", "cloud.conf.j2", "[LoadBalancer]\n", "[LoadBalancer]\nuse-octavia = true\n")
    r = lab.inv("lab.up", cwd=copy)
    assert r.returncode != 0, r.out[-3000:]
    assert _stage(r.stdout, "cluster") == "failed" and _stage(r.stdout, "verify") == "not", r.stdout[-2000:]
    assert "manifests/cloud.conf.j2" in r.out and "[LoadBalancer] use-octavia: removed" in r.out, r.out[-3000:]
    assert "lb-provider" in r.out  # the fix: choose the Octavia driver instead
    _show(r.out, "use-octavia")


def test_occm_without_services_status_fails_verify_lb_naming_it(lab):
    copy = lab.planted("no-services-status", "occm.yaml.j2", "[nodes/status, services/status]", "[nodes/status]")
    r = lab.inv("lab.up", cwd=copy, config=lab.config(checks=["lb"], timeout=60))
    assert r.returncode != 0, r.out[-3000:]
    assert _stage(r.stdout, "cluster") == "changed" and _stage(r.stdout, "verify") == "failed", r.stdout[-2000:]
    checks = _checks(r.stdout)
    assert checks["lb"][1] >= 1 and checks["lb"][3].startswith("external IP: Service echo got no external IP"), checks
    assert "SyncLoadBalancerFailed" in r.out and "services/status" in r.out, r.out[-4000:]
    _show(r.out, "SyncLoadBalancerFailed")
    fixed = lab.inv("lab.up", "--until", "cluster")  # the tool's own manifest again
    assert fixed.returncode == 0 and _stage(fixed.stdout, "cluster") == "changed", fixed.out[-3000:]


def test_keystone_auth_under_a_namespaced_role_fails_verify_keystone_naming_it(lab):
    copy = lab.planted(
        "namespaced-role",
        "keystone-auth.yaml.j2",
        "kind: ClusterRole\nmetadata:\n  name: osk8s:k8s-keystone-auth\n",
        "kind: Role\nmetadata:\n  name: osk8s:k8s-keystone-auth\n  namespace: kube-system\n",
    )
    path = copy / "manifests" / "keystone-auth.yaml.j2"
    path.write_text(
        path.read_text()
        .replace(
            "kind: ClusterRoleBinding\nmetadata:\n  name: osk8s:k8s-keystone-auth\n",
            "kind: RoleBinding\nmetadata:\n  name: osk8s:k8s-keystone-auth\n  namespace: kube-system\n",
        )
        .replace("  kind: ClusterRole\n  name: osk8s:k8s-keystone-auth", "  kind: Role\n  name: osk8s:k8s-keystone-auth")
    )
    # as on a lab that never had the right RBAC: no cluster-wide grant left over, a new pod
    for kind, name in (
        ("deployment", "k8s-keystone-auth"),
        ("clusterrolebinding", "osk8s:k8s-keystone-auth"),
        ("clusterrole", "osk8s:k8s-keystone-auth"),
    ):
        out = lab.kubectl("-n", "kube-system", "delete", kind, name, "--ignore-not-found", "--wait=true")
        assert out.returncode == 0, out.stderr
    r = lab.inv("lab.up", cwd=copy, config=lab.config(checks=["keystone"], timeout=60))
    assert r.returncode != 0, r.out[-3000:]
    assert _stage(r.stdout, "verify") == "failed", r.stdout[-2000:]
    assert "k8s-keystone-auth ready: not reached" in r.out, r.out[-4000:]
    assert re.search(r"configmaps.{0,4} is forbidden.*cannot (list|watch) resource .{0,2}configmaps", r.out), r.out[-4000:]
    assert "at the cluster scope" in r.out
    _show(r.out, "at the cluster scope")


def test_down_twice_leaves_no_process_port_or_namespace(lab):
    down = lab.inv("lab.down")
    assert down.returncode == 0, down.out[-3000:]
    assert "0 objects with tag" in down.stdout, down.stdout[-2000:]
    assert not _ours(), _ours()
    assert not (EMBEDDED_RUN / LAB).exists() and not (lab.state / "admin.conf").exists()
    assert "left running: this lab did not start it" in down.stdout  # the loopback cloud ./dev test started
    again = lab.inv("lab.down")
    assert again.returncode == 0 and not re.search(r"\schanged\s", again.stdout), again.out[-3000:]
