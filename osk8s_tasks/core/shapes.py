"""The step shapes several namespaces share, one helper each: a local private file with exact
content, a root-owned remote file with exact content, and kernel parameters set and persisted
(checked live AND in their file: the two copies this replaces had drifted, one read only the file)."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from osk8s_tasks.core.engine import Status, Step
from osk8s_tasks.core.files import write_private


def private_file_step(name: str, path: Path, wanted: Callable[[], str], node: str = "local") -> Step:
    """A local file readable by its owner only (0600) with exactly `wanted()`."""

    def check() -> Status:
        text = wanted()
        if not path.exists():
            return Status(False, f"{path.name} missing", f"write {path} (0600)")
        if path.read_text() != text:
            return Status(False, f"{path.name} out of date", f"write {path} (0600)")
        if path.stat().st_mode & 0o777 != 0o600:
            return Status(False, f"{path.name} is mode {path.stat().st_mode & 0o777:o}", f"chmod 600 {path}")
        return Status(True, f"{path.name} is current (0600)")

    return Step(name, check, lambda: write_private(path, wanted()), node=node)


def remote_file_step(
    name: str,
    r,
    path: str,
    wanted: Callable[[], str],
    mode: int = 0o644,
    then: str = "",
    node: str | None = None,
    read: Callable[[], str] | None = None,
) -> Step:
    """A root-owned file on a host (`r`: a core.ssh.Remote) with exactly `wanted()`, then `then` as root.
    `read`: the file's content from a probe the caller already ran (default: cat it as root)."""

    def check() -> Status:
        have = read() if read else r.run(f"cat {shlex.quote(path)} 2>/dev/null", sudo=True, warn=True).stdout
        text = wanted()
        if have == text:
            return Status(True, f"{path} is current")
        return Status(
            False, f"{path} is {'different' if have else 'missing'}", f"write {path}" + (f"; {then}" if then else "")
        )

    return Step(name, check, lambda: r.install(path, wanted(), mode=mode, then=then), node=node or r.conn.host)


def sysctl_probe(keys: list[str], file: str) -> str:
    """Prints the persisted file, a marker, then `key=value` for each key (empty when unknown).
    sysctl lives in /usr/sbin, which is not on a Debian user's PATH (the lab VM's vagrant user): it is
    looked up there last, so a sysctl earlier on the PATH still wins."""
    each = " ".join(shlex.quote(k) for k in keys)
    return (
        f'PATH="$PATH:/usr/sbin:/sbin"; cat {shlex.quote(file)} 2>/dev/null; echo @@osk8s-sysctl@@; '
        f'for k in {each}; do printf \'%s=%s\\n\' "$k" "$(sysctl -n "$k" 2>/dev/null)"; done'
    )


def parse_sysctl_probe(text: str) -> tuple[str, dict[str, str]]:
    """(the persisted file's content, {key: live value})."""
    persisted, _, live = text.partition("@@osk8s-sysctl@@\n")
    values = dict(line.split("=", 1) for line in live.splitlines() if "=" in line)
    return persisted, {k: v.strip() for k, v in values.items()}


def sysctl_file(values: dict[str, str]) -> str:
    return "".join(f"{k} = {v}\n" for k, v in values.items())


def sysctl_diff(values: dict[str, str], file: str, persisted: str, live: dict[str, str]) -> list[str]:
    """What differs: each live value not as wanted, and the file when it is not exactly ours."""
    diff = [f"{k} {live.get(k) or '(unset)'} -> {v}" for k, v in values.items() if live.get(k) != v]
    return diff + ([f"persist in {file}"] if persisted != sysctl_file(values) else [])


def sysctl_step(
    name: str, r, values: dict[str, str], file: str, why: str, node: str | None = None, read: Callable[[], str] | None = None
) -> Step:
    """Kernel parameters set now and persisted in `file` (sysctl -p reads it at boot). `read`: the
    output of sysctl_probe(values, file) from a probe the caller already ran (default: run it)."""

    def check() -> Status:
        text = read() if read else r.run(sysctl_probe(list(values), file), warn=True).stdout
        persisted, live = parse_sysctl_probe(text)
        diff = sysctl_diff(values, file, persisted, live)
        if not diff:
            return Status(True, f"{', '.join(f'{k}={v}' for k, v in values.items())}, persisted in {file}")
        return Status(False, why, "; ".join(diff))

    return Step(
        name, check, lambda: r.install(file, sysctl_file(values), then=f"sysctl -q -p {file}"), node=node or r.conn.host
    )
