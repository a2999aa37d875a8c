"""SSH through Fabric, with host keys recorded and checked.

Fabric installs paramiko's AutoAddPolicy and never reads known_hosts; every connection made here
instead loads the UserKnownHostsFile named in the ssh_config and rejects unknown or changed keys.
Host keys are recorded once, when the tool itself has just created the machine (``keyscan``),
and a recreated machine gets its keys re-recorded by the same step, never silently.
"""

from __future__ import annotations

import io
import os
import shlex
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


class Remote:
    """One SSH connection (the DevStack host, a node); commands fail with the command and its stderr."""

    def __init__(self, conn, log):
        self.conn, self.log = conn, log

    @property
    def user(self) -> str:
        return self.conn.user

    def run(self, cmd: str, sudo: bool = False, warn: bool = False, timeout: int | None = None):
        full = f"sudo -n sh -c {shlex.quote(cmd)}" if sudo else cmd
        self.log.debug("remote.run", command=full)
        try:
            result = self.conn.run(full, hide=True, warn=True, in_stream=False, timeout=timeout)
        except Exception as exc:
            raise StepFailed(describe_ssh_error(exc, self.conn.host)) from None
        if result.exited and not warn:
            err = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise StepFailed(f"`{cmd[:120]}` failed on {self.conn.host} (exit {result.exited}): {' | '.join(err)}")
        return result

    def put_text(self, path: str, text: str, mode: int = 0o600) -> None:
        """Write a file over SFTP (never on a command line, never through Invoke's char-by-char
        stdin): created empty with `mode` first, so its content is never readable by others."""
        self.run(f"install -m {mode:o} /dev/null {shlex.quote(path)}")
        try:
            self.conn.put(io.BytesIO(text.encode()), path)
        except OSError as exc:
            raise StepFailed(f"upload of {path} to {self.conn.host} failed: {exc}") from None

    def install(self, path: str, text: str, mode: int = 0o644, then: str = "") -> None:
        """A root-owned file with this content (parent directories created), then `then`, as root."""
        tmp = self.temp_file(text)
        after = f" && {then}" if then else ""
        self.run(f"install -D -m {mode:o} {tmp} {shlex.quote(path)} && rm -f {tmp}{after}", sudo=True)

    def temp_file(self, text: str) -> str:
        path = self.run("mktemp /tmp/osk8s.XXXXXX").stdout.strip()
        self.put_text(path, text)
        return path
