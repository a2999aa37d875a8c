"""What `devstack` converges on the DevStack host before stack.sh: IPv6 sysctls, packages, the
stack user's /opt/stack (prepare), the checkout (fetch), patches (patch) and local.conf
(configure). stack.sh itself, its watchdog and logs are in devstack.stack."""

from __future__ import annotations

import difflib
import re
import shlex
from contextlib import contextmanager
from pathlib import Path

from osk8s_tasks.core import lab, log, render
from osk8s_tasks.core import ssh as remote
from osk8s_tasks.core.engine import Status, Step, StepFailed
from osk8s_tasks.core.shapes import sysctl_step
from osk8s_tasks.core.ssh import Remote
from osk8s_tasks.devstack import facts
from osk8s_tasks.devstack import secrets as labsecrets

SYSCTL_FILE = "/etc/sysctl.d/60-osk8s-devstack.conf"
SYSCTLS = {f"net.ipv6.conf.{i}.disable_ipv6": "0" for i in ("all", "default", "lo")}


def target(settings) -> tuple[Path, str]:
    """(ssh_config, alias) of the DevStack host (core.lab.jump_host), which must exist."""
    path, alias = lab.jump_host(settings)
    if not settings.devstack.ssh_target and not path.exists():
        raise StepFailed(
            f"no ssh_config for the lab VM ({path}). Fix: inv host.up, or point devstack.ssh_target at another host"
        )
    return path, alias


@contextmanager
def connected(s):
    path, alias = target(s.settings)
    conn = remote.connect(path, alias)
    try:
        yield Remote(conn, s.log)
    finally:
        conn.close()


def checkout_dir(s) -> str:
    return f"{s.settings.devstack.dest}/devstack"


# --- prepare ---------------------------------------------------------------------------------------


def prepare_steps(s, r: Remote) -> list[Step]:
    d = s.settings.devstack

    def check_packages():
        out = r.run("dpkg-query -W -f='${Package} ${Status}\\n' " + " ".join(d.packages), warn=True).stdout
        have = {ln.split()[0] for ln in out.splitlines() if ln.endswith("install ok installed")}
        missing = [p for p in d.packages if p not in have]
        if missing:
            return Status(False, f"missing packages: {', '.join(missing)}", f"apt-get install {' '.join(missing)}")
        return Status(True, f"installed: {', '.join(d.packages)}")

    def apply_packages():
        r.run(f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q {' '.join(d.packages)}", sudo=True, timeout=1800)

    def check_dest():
        owner = r.run(f"stat -c %U {shlex.quote(d.dest)} 2>/dev/null || echo -", warn=True).stdout.strip()
        if owner == r.user:
            return Status(True, f"{d.dest} is owned by {r.user}")
        what = "create" if owner == "-" else f"chown (owner is {owner})"
        return Status(False, f"{d.dest} is not owned by the stack user {r.user}", f"{what} {d.dest} for {r.user}")

    def apply_dest():
        r.run(f"mkdir -p {shlex.quote(d.dest)} && chown {r.user}: {shlex.quote(d.dest)}", sudo=True)

    return [
        sysctl_step("ipv6 sysctls", r, SYSCTLS, SYSCTL_FILE, "IPv6 sysctls would break neutron's IPv6 networks"),
        Step("packages", check_packages, apply_packages, node=r.conn.host),
        Step(f"{d.dest} owner", check_dest, apply_dest, node=r.conn.host),
    ]


# --- fetch and patch -----------------------------------------------------------------------------


def fetch_step(s, r: Remote) -> Step:
    d, where = s.settings.devstack, checkout_dir(s)
    q = shlex.quote

    def upstream() -> str:
        out = r.run(f"git ls-remote {q(d.repo)} refs/heads/{q(d.branch)}", timeout=300).stdout.split()
        if not out:
            raise StepFailed(f"branch {d.branch} not found in {d.repo}. Fix: set devstack.branch (e.g. {d.branch})")
        return out[0]

    def check():
        want = upstream()
        out = r.run(
            f"git -C {q(where)} remote get-url origin 2>/dev/null && git -C {q(where)} rev-parse HEAD", warn=True
        ).stdout.split()
        if len(out) < 2:
            return Status(False, f"no DevStack checkout in {where}", f"clone {d.repo} {d.branch} ({want[:12]})")
        url, head = out
        if url != d.repo:
            return Status(False, f"{where} tracks {url}", f"switch origin to {d.repo}, check out {d.branch} ({want[:12]})")
        if head != want:
            return Status(
                False,
                f"{where} is at {head[:12]}",
                f"check out {d.branch} {head[:12]} -> {want[:12]} (local changes dropped; patches re-applied)",
            )
        return Status(True, f"{d.branch} at {head[:12]} from {d.repo}")

    def apply():
        exists = r.run(f"test -d {q(where)}/.git", warn=True).exited == 0
        if not exists:
            r.run(f"git clone -q --branch {q(d.branch)} {q(d.repo)} {q(where)}", timeout=1800)
        else:
            r.run(
                f"cd {q(where)} && git remote set-url origin {q(d.repo)} && git fetch -q origin {q(d.branch)} "
                f"&& git checkout -q --force -B {q(d.branch)} FETCH_HEAD",
                timeout=1800,
            )

    return Step("devstack checkout", check, apply, node=r.conn.host)


def patch_steps(s, r: Remote) -> list[Step]:
    d, where = s.settings.devstack, shlex.quote(checkout_dir(s))
    steps = []
    for name in d.patches:
        text = d.patch_path(name).read_text()

        label = Path(name).name
        files = ", ".join(ln[6:] for ln in text.splitlines() if ln.startswith("+++ b/"))

        def check(name=label, text=text, files=files):
            if r.run(f"test -d {where}/.git", warn=True).exited:
                return Status(False, f"{name} not applied: no checkout yet", f"apply {name} to {files} after the clone")
            tmp = r.temp_file(text)
            try:
                if r.run(f"git -C {where} apply --check -R {tmp}", warn=True).exited == 0:
                    return Status(True, f"{name} is already applied")
                forward = r.run(f"git -C {where} apply --check {tmp}", warn=True)
            finally:
                r.run(f"rm -f {tmp}")
            if forward.exited == 0:
                return Status(False, f"{name} is not applied", f"apply {name} to {files}")
            why = (forward.stderr or "").strip().splitlines()[:2]
            raise StepFailed(
                f"patch {name} applies neither forward nor in reverse to {d.branch}: {' | '.join(why)}. "
                "Fix: refresh the patch for this branch or remove it from devstack.patches"
            )

        def apply(text=text):
            tmp = r.temp_file(text)
            r.run(f"git -C {where} apply {tmp}; rc=$?; rm -f {tmp}; exit $rc")

        steps.append(Step(f"patch {label}", check, apply, node=r.conn.host))
    return steps


# --- configure -------------------------------------------------------------------------------------


def host_ip(r: Remote) -> str:
    ip = facts.parse_host_ip(r.run(facts.HOST_IP_PROBE).stdout)
    if ip is None:
        raise StepFailed(
            f"no IPv4 address on the default route's interface of {r.conn.host}. Fix: give the host a default route"
        )
    return ip


def ovn_agent(branch: str) -> str:
    """The OVN metadata service under the name `branch` expects: stackrc enables `q-ovn-agent`
    from stable/2025.2 on (and master); `q-ovn-metadata-agent` before, and it goes away in 2026.2
    (lib/neutron_plugins/ovn_agent, TARGET_ENABLE_OVN_AGENT)."""
    m = re.fullmatch(r"(?:stable|unmaintained)/(\d{4})\.(\d)", branch)
    if m and (int(m[1]), int(m[2])) < (2025, 2):
        return "q-ovn-metadata-agent"
    return "q-ovn-agent"


def local_conf(s, ip: str, secrets: dict) -> str:
    d = s.settings.devstack
    return render.render(
        "devstack/local.conf.j2",
        lab=s.settings.lab.name,
        host_ip=ip,
        dest=d.dest,
        branch=d.branch,
        ovn_agent=ovn_agent(d.branch),
        secrets=secrets,
        octavia_provider=d.octavia_provider,
        amphora_image=d.amphora_image,
        cinder_lvm_size=d.cinder_lvm_size,
        enable_barbican=d.enable_barbican,
    )


def configure_step(s, r: Remote) -> Step:
    """local.conf from the lab's secrets: the check compares with passwords that are not kept yet
    when secrets.yaml is missing (a check never writes); the apply keeps them first."""
    path = f"{checkout_dir(s)}/local.conf"

    def check():
        text = local_conf(s, host_ip(r), labsecrets.load(s.settings))
        out = r.run(
            f"sha256sum {shlex.quote(path)} 2>/dev/null; stat -c %a {shlex.quote(path)} 2>/dev/null", warn=True
        ).stdout.split()
        missing = labsecrets.missing(s.settings)
        if not missing and len(out) >= 3 and out[0] == render.digest(text) and out[2] == "600":
            return Status(True, f"local.conf is current (sha256 {out[0][:12]}, mode 600)")
        if len(out) < 3:
            diff = f"write {path} (mode 600):\n" + text
        else:  # what changes on the VM, its passwords masked (they may not be this run's)
            current = r.run(f"cat {shlex.quote(path)}").stdout
            for value in facts.secret_values(current):
                log.secret(value)
            old, new = facts.mask_secret_lines(current, text)
            diff = (
                "".join(
                    difflib.unified_diff(
                        old.splitlines(True), new.splitlines(True), "local.conf (VM)", "local.conf (wanted)"
                    )
                )
                or f"mode {out[2]} -> 600"
            )
        if missing:  # a check never writes: the passwords are made by the apply
            return Status(
                False,
                "the lab's passwords are not generated yet",
                f"generate the lab's passwords ({lab.secrets_file(s.settings)}, 0600), then {diff}",
            )
        return Status(False, "no local.conf yet" if len(out) < 3 else "local.conf differs", diff)

    def apply():
        text = local_conf(s, host_ip(r), labsecrets.ensure(s.settings))
        r.put_text(f"{path}.tmp", text)
        r.run(f"mv {shlex.quote(path + '.tmp')} {shlex.quote(path)}")

    return Step("local.conf", check, apply, node=r.conn.host)
