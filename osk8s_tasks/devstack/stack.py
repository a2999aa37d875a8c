"""stack.sh: started detached on the VM under a flock (so it survives an SSH drop and can never run
twice at once), followed phase by phase, with a watchdog that restarts a devstack@ service whose
unit is down or whose API stops answering (the write-up restarted g-api and q-svc by hand)."""

from __future__ import annotations

import os
import shlex
import time

import yaml

from osk8s_tasks.core import lab, log
from osk8s_tasks.core.engine import Status, Step, StepFailed
from osk8s_tasks.core.files import open_private
from osk8s_tasks.core.shapes import private_file_step
from osk8s_tasks.devstack import facts
from osk8s_tasks.devstack import secrets as labsecrets
from osk8s_tasks.devstack.steps import configure_step, fetch_step, host_ip, patch_steps, prepare_steps


def stack_state(s, r) -> facts.StackState:
    return facts.parse_stack_probe(r.run(facts.stack_probe(s.settings.devstack.dest)).stdout)


def register_vm_secrets(s, r) -> None:
    """The passwords in the VM's local.conf, masked from here on: they may predate this lab's
    secrets.yaml (lost, or changed), and stack.sh's trace prints them (mysql -p<password>)."""
    conf = shlex.quote(f"{s.settings.devstack.dest}/devstack/local.conf")
    for value in facts.secret_values(r.run(f"cat {conf} 2>/dev/null", warn=True).stdout):
        log.secret(value)


def _failure(s, r, st: facts.StackState) -> str:
    register_vm_secrets(s, r)
    d = shlex.quote(s.settings.devstack.dest)
    tail = r.run(f"tail -n 12 {d}/{facts.LOG} 2>/dev/null || tail -n 12 {d}/{facts.OUT} 2>/dev/null", warn=True).stdout
    lines = "\n    ".join(x for x in tail.splitlines() if x.strip())
    return (
        f"stack.sh failed (exit {st.rc if st.rc is not None else '?'}) in phase {st.phase!r}; last log lines:\n    "
        f"{lines}\n  Fix the cause, then: inv devstack.stack --force (runs unstack.sh and clean.sh first)"
    )


class Watchdog:
    """Restarts a devstack@ unit that has been unhealthy for `unhealthy_seconds`."""

    def __init__(self, s, r, ip: str, clock=time.monotonic):
        w = s.settings.devstack.watchdog
        self.s, self.r, self.limit, self.clock = s, r, w.unhealthy_seconds, clock
        self.services = [(x.unit, x.url.format(host_ip=ip)) for x in w.services]
        self.since: dict[str, float] = {}
        self.restarts: dict[str, int] = {}

    def tick(self) -> None:
        if not self.services:
            return
        seen = facts.parse_watchdog_probe(self.r.run(facts.watchdog_probe(self.services), warn=True).stdout)
        now = self.clock()
        for unit, (state, code) in seen.items():
            if state == "absent" or facts.healthy(state, code):
                self.since.pop(unit, None)
                continue
            first = self.since.setdefault(unit, now)
            if now - first >= self.limit:
                why = f"unit {state}" if state != "active" else f"API answered {code or 'nothing'}"
                self.s.log.warning("watchdog.restart", unit=f"devstack@{unit}", reason=f"{why} for {now - first:.0f} s")
                self.r.run(f"systemctl restart devstack@{unit}.service", sudo=True)
                self.restarts[unit] = self.restarts.get(unit, 0) + 1
                self.since.pop(unit, None)

    def summary(self) -> str:
        return ", ".join(f"devstack@{u} x{n}" for u, n in self.restarts.items()) or "none"


def follow(s, r) -> facts.StackState:
    """Wait for the running stack.sh, printing each new phase and running the watchdog."""
    d = s.settings.devstack
    dog = Watchdog(s, r, host_ip(r))
    t0, shown = time.monotonic(), 0
    while True:
        st = stack_state(s, r)
        for phase in st.phases[shown:]:
            s.log.info("stack.phase", phase=phase, elapsed=f"{time.monotonic() - t0:.0f}s")
        shown = len(st.phases)
        if st.state != "running":
            if dog.restarts:
                s.log.info("watchdog.summary", restarted=dog.summary())
            s.watchdog_restarts = dog.summary()
            return st
        if time.monotonic() - t0 > d.stack_timeout:
            raise StepFailed(
                f"stack.sh still running after {d.stack_timeout} s (phase {st.phase!r}); it goes on on the VM. "
                "Fix: re-run inv devstack.stack to follow it again, or raise devstack.stack_timeout"
            )
        dog.tick()
        time.sleep(min(d.watchdog.interval, 5) if dog.since else d.watchdog.interval)


def stack_step(s, r, force: bool) -> Step:
    d = s.settings.devstack
    where, dest = shlex.quote(f"{d.dest}/devstack"), shlex.quote(d.dest)
    forced = {"done": False}

    def check():
        st = stack_state(s, r)
        if force and not forced["done"] and st.state != "running":
            return Status(False, "--force: unstack, clean and stack again", "unstack.sh; clean.sh; stack.sh (detached)")
        if st.state == "completed":
            restarts = getattr(s, "watchdog_restarts", None)
            extra = f"; watchdog restarts: {restarts}" if restarts and restarts != "none" else ""
            return Status(True, f"stack.sh completed in {st.seconds} seconds (summary log){extra}")
        if st.state == "running":
            return Status(
                False, f"stack.sh is running (phase {st.phase!r})", "follow the running stack.sh (no second start)"
            )
        if st.state == "failed":
            raise StepFailed(_failure(s, r, st))
        return Status(False, "DevStack has not been stacked", "start stack.sh detached and follow it")

    def apply():
        st = stack_state(s, r)
        if force and not forced["done"] and st.state != "running":
            r.run(
                f"cd {where} && ./unstack.sh > /dev/null 2>&1; ./clean.sh > /dev/null 2>&1; "
                f"rm -f {dest}/{facts.RC} {dest}/{facts.SUMMARY}",
                warn=True,
                timeout=1800,
            )
            forced["done"] = True
            st = stack_state(s, r)
        if st.state != "running":
            # `;` not `&&` before the `&`: an and-list would be backgrounded whole, and its shell
            # would hold the SSH channel open until stack.sh ends.
            r.run(
                f"mkdir -p {dest}/logs && rm -f {dest}/{facts.RC} && cd {where} || exit 1; "
                f"nohup setsid flock -n {dest}/{facts.LOCK} bash -c "
                f"{shlex.quote(f'./stack.sh > {d.dest}/{facts.OUT} 2>&1; echo $? > {d.dest}/{facts.RC}')} "
                "> /dev/null 2>&1 < /dev/null &"
            )
            s.log.info("stack.started", where=f"{r.conn.host}:{d.dest}/devstack")
            time.sleep(1)
        st = follow(s, r)
        if st.state == "failed":
            raise StepFailed(_failure(s, r, st))

    return Step("stack.sh", check, apply, node=r.conn.host)


def clouds_yaml(s, ip: str, secrets: dict) -> str:
    auth = f"http://{ip}/identity"

    def cloud(user, project):
        return {
            "auth": {
                "auth_url": auth,
                "username": user,
                "password": secrets["admin"],
                "project_name": project,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": "RegionOne",
            "identity_api_version": 3,
            "interface": "public",
        }

    doc = {
        "clouds": {
            "devstack-admin": cloud("admin", "admin"),
            "devstack": cloud("demo", "demo"),
            "devstack-alt": cloud("alt_demo", "alt_demo"),
        }
    }
    return "# written by osk8s devstack.stack: DevStack gives every user the admin password\n" + yaml.safe_dump(
        doc, sort_keys=False
    )


def clouds_step(s, r) -> Step:
    def wanted():
        if stack_state(s, r).state != "completed":
            raise StepFailed("DevStack is not stacked yet: no clouds to describe")
        stored = labsecrets.stored(s.settings)
        if "admin" not in stored and not os.environ.get(lab.ENV_ADMIN):
            raise StepFailed(f"the admin password is not in {lab.secrets_file(s.settings)}. Fix: inv devstack.configure")
        return clouds_yaml(s, host_ip(r), labsecrets.load(s.settings))

    return private_file_step("clouds.yaml", lab.clouds_yaml(s.settings), wanted)


def run_stack(s, r, force: bool) -> None:
    s.converge([stack_step(s, r, force), clouds_step(s, r)])


def run_deploy(s, r, force: bool) -> None:
    """prepare -> fetch -> patch -> configure -> stack, on one connection."""
    s.converge(prepare_steps(s, r))
    s.converge([fetch_step(s, r)])
    s.converge(patch_steps(s, r))
    s.converge([configure_step(s, r)])
    run_stack(s, r, force)


def unstack_step(s, r) -> Step:
    dest, where = shlex.quote(s.settings.devstack.dest), shlex.quote(f"{s.settings.devstack.dest}/devstack")

    def active_units() -> list[str]:
        return [u.name for u in facts.parse_units(r.run(facts.UNITS_PROBE, warn=True).stdout) if u.active == "active"]

    def check():
        st = stack_state(s, r)
        if st.state == "running":
            raise StepFailed("stack.sh is running. Fix: wait for it (inv devstack.stack) before unstacking")
        units = active_units()
        if not units and st.state in ("never", "failed"):
            return Status(True, "no devstack@ service is running")
        return Status(False, f"{len(units)} devstack@ services running", "unstack.sh; the next devstack.stack stacks again")

    def apply():
        r.run(f"cd {where} && ./unstack.sh", timeout=1800)
        r.run(f"cd {dest} && for f in {facts.SUMMARY} {facts.RC}; do [ -e $f ] && mv -f $f $f.unstacked; done; true")

    return Step("devstack stopped", check, apply, node=r.conn.host)


def status_text(s, r) -> str:
    d = s.settings.devstack
    st = stack_state(s, r)
    head = r.run(
        f"git -C {shlex.quote(d.dest)}/devstack log -1 --format='%h %cs %s' 2>/dev/null || echo 'no checkout'", warn=True
    ).stdout.strip()
    state = {
        "completed": f"completed in {st.seconds} s",
        "running": f"running, phase {st.phase!r}",
        "failed": f"FAILED in phase {st.phase!r} (exit {st.rc})",
        "never": "not stacked",
    }[st.state]
    rows = [("host", r.conn.host), ("devstack", head), ("stack.sh", state)]
    units = [f"{u.name} {u.load} {u.active} {u.sub}" for u in facts.parse_units(r.run(facts.UNITS_PROBE, warn=True).stdout)]
    rows.append(("units", "\n".join(("" if i == 0 else " " * 10) + ln for i, ln in enumerate(units)) or "none"))
    ip = host_ip(r)
    probe = facts.parse_watchdog_probe(
        r.run(facts.watchdog_probe([(x.unit, x.url.format(host_ip=ip)) for x in d.watchdog.services]), warn=True).stdout
    )
    for unit, (state_, code) in sorted(probe.items()):
        rows.append((f"api {unit}", "absent" if state_ == "absent" else f"unit {state_}, HTTP {code or 'no answer'}"))
    return "\n".join(f"{k:<8}  {v}" for k, v in rows)


def collect_logs(s, r, out) -> str:
    dest = shlex.quote(s.settings.devstack.dest)
    remote_tgz = r.run("mktemp /tmp/osk8s-devstack-logs.XXXXXX").stdout.strip()
    units = " ".join(shlex.quote(u.name) for u in facts.parse_units(r.run(facts.UNITS_PROBE, warn=True).stdout))
    r.run(
        f"t=$(mktemp -d) && mkdir -p $t/journal && "
        f"for u in {units}; do "
        "  if command -v journalctl >/dev/null; then journalctl -u $u --no-pager > $t/journal/$u.log 2>&1; "
        "  else echo 'no journalctl on this host' > $t/journal/$u.log; fi; done; "
        f"cp -L {dest}/{facts.LOG} {dest}/{facts.SUMMARY} {dest}/{facts.OUT} $t/ 2>/dev/null; "
        f"tar czf {remote_tgz} -C $t . && rm -rf $t",
        sudo=True,
    )
    r.run(f"chown {r.user} {remote_tgz}", sudo=True)
    part = out.with_name(f".{out.name}.part")
    try:
        with open_private(part, "wb") as fh:  # 0600 from the first byte: the journals may hold passwords
            r.conn.get(remote_tgz, fh)
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
        r.run(f"rm -f {remote_tgz}", warn=True)
    return f"{out} ({out.stat().st_size} bytes; may hold passwords: mode 600)"
