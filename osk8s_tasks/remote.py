"""SSH through Fabric, with host keys recorded and checked.

Fabric installs paramiko's AutoAddPolicy and never reads known_hosts; every connection made here
instead loads the UserKnownHostsFile named in the ssh_config and rejects unknown or changed keys.
Host keys are recorded once, when the tool itself has just created the machine (``keyscan``),
and a recreated machine gets its keys re-recorded by the same step, never silently.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .facts.host import parse_ssh_config
from .steps import StepFailed


def connect(ssh_config: Path, host: str, gateway=None, connect_timeout: int = 15):
    """A Fabric Connection to `host` as described in `ssh_config`, host key checked."""
    from fabric import Config, Connection
    from paramiko import RejectPolicy

    cfg = Config(runtime_ssh_path=str(ssh_config))
    cfg.load_ssh_config()
    cfg.run.in_stream = False  # automation: remote commands never read our stdin
    conn = Connection(host, config=cfg, gateway=gateway, connect_timeout=connect_timeout)
    known = conn.ssh_config.get("userknownhostsfile")
    if not known or known == "/dev/null":
        raise StepFailed(f"{ssh_config}: host {host} has no UserKnownHostsFile; host keys must be recorded. "
                         "Fix: regenerate it (inv host.ssh-config)")
    conn.client.set_missing_host_key_policy(RejectPolicy())
    path = os.path.expanduser(known.split()[0])
    if os.path.exists(path):
        conn.client.load_host_keys(path)
    return conn


def describe_ssh_error(exc: Exception, host: str) -> str:
    import paramiko

    if isinstance(exc, paramiko.BadHostKeyException):
        return (f"host key of {host} does not match the recorded one: the machine was replaced, or "
                "something is in the way. Fix: if you recreated it, run inv host.ssh-config")
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return f"host key of {host} is not recorded. Fix: inv host.ssh-config"
    if isinstance(exc, paramiko.AuthenticationException):
        return f"ssh authentication to {host} failed: {exc}"
    return f"ssh to {host} failed: {exc.__class__.__name__}: {exc}"


def probe(ssh_config: Path, host: str, timeout: int = 15) -> tuple[bool, str]:
    """(reachable, detail): open a connection and run `true`."""
    try:
        conn = connect(ssh_config, host, connect_timeout=timeout)
    except StepFailed as exc:
        return False, str(exc)
    try:
        conn.run("true", hide=True, timeout=timeout)
        return True, f"ssh {conn.user}@{conn.host}:{conn.port} works, host key verified"
    except Exception as exc:  # any transport error is the fact we report
        return False, describe_ssh_error(exc, host)
    finally:
        conn.close()


def keyscan(address: str, port: int = 22, timeout: int = 10) -> list[str]:
    """known_hosts lines for address:port (all key types)."""
    proc = subprocess.run(["ssh-keyscan", "-T", str(timeout), "-p", str(port), address],
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln and not ln.startswith("#")]
    if not lines:
        raise StepFailed(f"ssh-keyscan {address}:{port} returned no host key: {proc.stderr.strip()[-300:]}")
    return lines


def known_host_entry(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def has_known_host(known_hosts: Path, address: str, port: int) -> bool:
    if not known_hosts.exists():
        return False
    entry = known_host_entry(address, port)
    return any(line.split(" ", 1)[0] == entry for line in known_hosts.read_text().splitlines())


def read_ssh_config(path: Path) -> dict[str, str]:
    return parse_ssh_config(path.read_text()) if path.exists() else {}


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
