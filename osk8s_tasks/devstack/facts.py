"""Read-only facts about DevStack on the VM: the probe commands (shell text run over SSH) and the
pure functions that parse what they print."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

# DevStack's outfilter.py prefixes every summary line with a timestamp.
_SUMMARY_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) \| (.*)$")
_COMPLETED = re.compile(r"^stack\.sh completed in (\d+) seconds\.$")

LOCK = ".osk8s-stack.lock"  # held by the detached stack.sh for its whole life (flock)
RC = "logs/osk8s-stack.rc"  # stack.sh's exit status, written when it ends
OUT = "logs/osk8s-stack.out"  # its stdout/stderr
SUMMARY = "logs/stack.sh.log.summary"  # DevStack's link to the newest summary log
LOG = "logs/stack.sh.log"  # DevStack's link to the newest full log


def parse_summary(text: str) -> list[str]:
    """The phase lines of a DevStack summary log, without timestamps."""
    out = []
    for line in text.splitlines():
        m = _SUMMARY_LINE.match(line.rstrip())
        out.append(m.group(2) if m else line.rstrip())
    return [x for x in out if x]


def completed_seconds(phases: list[str]) -> int | None:
    for line in reversed(phases):
        m = _COMPLETED.match(line)
        if m:
            return int(m.group(1))
    return None


def current_phase(phases: list[str]) -> str | None:
    real = [p for p in phases if not p.startswith("stack.sh log ")]
    return real[-1] if real else None


@dataclass(frozen=True)
class StackState:
    state: str  # never | running | completed | failed
    phases: tuple[str, ...]
    rc: int | None
    seconds: int | None

    @property
    def phase(self) -> str | None:
        return current_phase(list(self.phases))


def stack_probe(dest: str) -> str:
    """Prints: lock state, then rc, then the summary log (sections split by markers)."""
    d = shlex.quote(dest)
    return (
        f"cd {d} 2>/dev/null || {{ echo '@@lock idle'; echo '@@rc'; echo '@@summary'; exit 0; }}; "
        f"if [ -e {LOCK} ] && ! flock -n {LOCK} true; then echo '@@lock running'; else echo '@@lock idle'; fi; "
        f"echo '@@rc'; cat {RC} 2>/dev/null; echo '@@summary'; cat {SUMMARY} 2>/dev/null; true"
    )


def parse_stack_probe(text: str) -> StackState:
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@"):
            name, _, rest = line[2:].partition(" ")
            current = name
            sections[name] = [rest] if rest else []
        elif current:
            sections[current].append(line)
    running = (sections.get("lock") or ["idle"])[0] == "running"
    rc_text = "".join(sections.get("rc", [])).strip()
    rc = int(rc_text) if rc_text.lstrip("-").isdigit() else None
    phases = parse_summary("\n".join(sections.get("summary", [])))
    seconds = completed_seconds(phases)
    if running:
        state = "running"
    elif seconds is not None and (rc in (None, 0)):
        state = "completed"
    elif phases or rc is not None:
        state = "failed"
    else:
        state = "never"
    return StackState(state, tuple(phases), rc, seconds)


def watchdog_probe(units_urls: list[tuple[str, str]]) -> str:
    """One line per service: `<unit> <absent|active|inactive> <http code or 000>`, probed in parallel."""
    parts = []
    for unit, url in units_urls:
        u, q = shlex.quote(unit), shlex.quote(url)
        parts.append(
            f"( if [ -f /etc/systemd/system/devstack@{u}.service ]; then "
            f"s=$(systemctl is-active devstack@{u}.service 2>/dev/null | head -1); "
            f"c=$(curl -s -o /dev/null -m 3 -w '%{{http_code}}' {q} 2>/dev/null); "
            f"echo \"{unit} ${{s:-inactive}} ${{c:-000}}\"; else echo '{unit} absent 000'; fi ) &"
        )
    return " ".join(parts) + " wait"


def parse_watchdog_probe(text: str) -> dict[str, tuple[str, int]]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            out[parts[0]] = (parts[1], int(parts[2]))
    return out


def healthy(unit_state: str, http_code: int) -> bool:
    return unit_state == "active" and 100 <= http_code < 500


HOST_IP_PROBE = "ip -4 -o route show default; echo @@; ip -4 -o addr show"


def parse_host_ip(text: str) -> str | None:
    """The IPv4 address of the default route's interface (what DevStack itself picks)."""
    routes, _, addrs = text.partition("@@")
    dev = None
    for line in routes.splitlines():
        m = re.search(r"\bdev (\S+)", line)
        if line.startswith("default") and m:
            dev = m.group(1)
            break
    for line in addrs.splitlines():
        m = re.match(r"^\d+:\s+(\S+)\s+inet (\d+\.\d+\.\d+\.\d+)/", line)
        if m and (dev is None or m.group(1) == dev) and not m.group(2).startswith("127."):
            return m.group(2)
    return None


_SECRET_ASSIGNMENT = re.compile(r"^(\s*[A-Za-z_][A-Za-z0-9_]*(?:PASSWORD|SECRET|TOKEN|_KEY)[A-Za-z0-9_]*\s*=)(.*)$", re.I)


def secret_values(local_conf: str) -> list[str]:
    """The values of local.conf's password-like assignments (ADMIN_PASSWORD=...): a VM's old
    local.conf holds passwords this run may not know, and stack.sh's trace prints them."""
    out = []
    for line in local_conf.splitlines():
        m = _SECRET_ASSIGNMENT.match(line)
        if m and m.group(2).strip():
            out.append(m.group(2).strip().strip("'\""))
    return out


def mask_secret_lines(old: str, new: str) -> tuple[str, str]:
    """Both sides of a local.conf diff with every password-like value masked: the old side shows
    `KEY=***`, the new side `KEY=*** (changed)` where the value differs, so a diff says which
    password changes and never what either value is."""

    def values(text):
        return {m.group(1).strip(): m.group(2) for m in map(_SECRET_ASSIGNMENT.match, text.splitlines()) if m}

    before = values(old)

    def mask(text, mark_changes):
        lines = []
        for line in text.splitlines(True):
            m = _SECRET_ASSIGNMENT.match(line.rstrip("\n"))
            if m:
                changed = mark_changes and before.get(m.group(1).strip()) != m.group(2)
                line = f"{m.group(1)}***{' (changed)' if changed else ''}" + ("\n" if line.endswith("\n") else "")
            lines.append(line)
        return "".join(lines)

    return mask(old, False), mask(new, True)


UNITS_PROBE = "systemctl list-units 'devstack@*' --all --no-legend --plain 2>/dev/null"


@dataclass(frozen=True)
class Unit:
    name: str
    load: str
    active: str
    sub: str


def parse_units(text: str) -> list[Unit]:
    """The devstack@ units `systemctl list-units --plain --no-legend` prints (unit load active sub desc)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0].startswith("devstack@"):
            out.append(Unit(*parts[:4]))
    return out
