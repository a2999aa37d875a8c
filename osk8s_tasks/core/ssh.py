"""SSH through Fabric, with host keys recorded and checked.

Fabric installs paramiko's AutoAddPolicy and never reads known_hosts; every connection made here
instead loads the UserKnownHostsFile named in the ssh_config and rejects unknown or changed keys.
Host keys are recorded once, when the tool itself has just created the machine (``keyscan``),
and a recreated machine gets its keys re-recorded by the same step, never silently.

Hosts behind a jump host (the nodes behind the devstack VM) share ONE connection to it
(:func:`through_jump_host`): each node's connection is a direct-tcpip channel on that one
transport, so a fan-out over 24 or 48 nodes makes one handshake with the jump host, never
enough to reach OpenSSH's ``MaxStartups`` (10:30:100 by default: sshd drops unauthenticated
connections beyond ten). Opening a connection is retried, with backoff and a log line, only when
it failed at the connection level (no banner, reset): never after a host-key or authentication
failure (:func:`is_transient`).
"""

from __future__ import annotations

import io
import os
import random
import select
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import paramiko
from fabric import Config, Connection
from paramiko import RejectPolicy

from osk8s_tasks.core.engine import StepFailed


def connect(ssh_config: Path, host: str, gateway=None, connect_timeout: int = 15):
    """A Fabric Connection to `host` as described in `ssh_config`, host key checked."""
    cfg = Config(runtime_ssh_path=str(ssh_config))  # parses the file (a second load_ssh_config() appended it again)
    cfg.run.in_stream = False  # automation: remote commands never read our stdin
    conn = Connection(host, config=cfg, gateway=gateway, connect_timeout=connect_timeout)
    known = conn.ssh_config.get("userknownhostsfile")
    if not known or known == "/dev/null":
        raise StepFailed(
            f"{ssh_config}: host {host} has no UserKnownHostsFile; host keys must be recorded. "
            "Fix: regenerate it (inv host.ssh-config)"
        )
    hop = conn
    while hop is not None:
        # Fabric builds a ProxyJump hop's Connection itself, with paramiko's AutoAddPolicy: every
        # hop gets the same strict check, against its own UserKnownHostsFile or the target's.
        own = hop.ssh_config.get("userknownhostsfile")
        hop.client.set_missing_host_key_policy(RejectPolicy())
        path = os.path.expanduser((own if own and own != "/dev/null" else known).split()[0])
        if os.path.exists(path):
            hop.client.load_host_keys(path)
        hop = hop.gateway if isinstance(hop.gateway, Connection) and hop.gateway is not gateway else None
    return conn


RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)  # seconds before each further attempt (plus up to 50% jitter)


def is_transient(exc: BaseException) -> bool:
    """A connection-level failure worth another attempt: sshd dropped the connection before its
    banner (MaxStartups, a restart) or the peer reset it. Never a host-key or authentication
    failure (those are SSHExceptions with other messages): trying again cannot fix them, and must
    not look as if it could."""
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError):
        return True
    return isinstance(exc, paramiko.SSHException) and str(exc).startswith("Error reading SSH protocol banner")


def retrying(attempt: Callable[[], object], host: str, log, delays=RETRY_DELAYS, sleep=time.sleep):
    """attempt(), tried again after each delay while it fails with a transient error (logged as
    `ssh.retry`); any other error, or the last transient one, is raised as it came."""
    for n, delay in enumerate((*delays, None), start=1):
        try:
            return attempt()
        except Exception as exc:
            if delay is None or not is_transient(exc):
                raise
            wait = delay * (1 + random.random() / 2)  # clients dropped together do not retry together
            log.warning("ssh.retry", host=host, attempt=n, error=f"{exc.__class__.__name__}: {exc}", retry_in=round(wait, 2))
            sleep(wait)


def open_connection(conn, log, delays=RETRY_DELAYS) -> None:
    """Open a Fabric Connection now (retrying transient failures); a failed attempt's transport is
    closed, and with it its channel on the jump host."""

    def attempt():
        try:
            conn.open()
        except BaseException:  # Ctrl-C during a handshake too: the half-open transport goes, the error goes on
            conn.client.close()
            raise

    retrying(attempt, f"{conn.user}@{conn.host}:{conn.port}", log, delays)


def describe_ssh_error(exc: Exception, host: str) -> str:
    if isinstance(exc, paramiko.BadHostKeyException):
        return (
            f"host key of {host} does not match the recorded one: the machine was replaced, or "
            "something is in the way. Fix: if you recreated it, run inv host.ssh-config"
        )
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
    proc = subprocess.run(["ssh-keyscan", "-T", str(timeout), "-p", str(port), address], capture_output=True, text=True)
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


def parse_ssh_config(text: str) -> dict[str, str]:
    """The first Host block of an ssh_config as {lower-case option: value}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and not parts[0].startswith("#"):
            key = parts[0].lower()
            if key == "host" and out:
                break
            out.setdefault(key, parts[1].strip().strip('"'))
    return out


def read_ssh_config(path: Path) -> dict[str, str]:
    return parse_ssh_config(path.read_text()) if path.exists() else {}


@contextmanager
def through_jump_host(jump_config: Path, jump_alias: str, hosts_config: Path, names, log) -> Iterator[dict]:
    """{name: Remote} for each host in `names`, every one through ONE connection to the jump host.

    The jump host is connected here, before any thread uses it (retrying transient failures; any
    other failure is the whole run's, named as the jump host's). Each host's own connection is
    opened on first use, in the thread that uses it: Fabric opens a direct-tcpip channel on the
    jump host's transport (`Connection.open_gateway`), and paramiko's `Transport.open_channel`
    takes the transport's lock, so threads can share it. Closed hosts first, the jump host last."""
    jump = connect(jump_config, jump_alias)
    try:
        open_connection(jump, log.bind(node=jump_alias))
    except Exception as exc:
        jump.close()
        raise StepFailed(f"jump host {jump_alias}: {describe_ssh_error(exc, jump_alias)}") from None
    with ExitStack() as stack:
        stack.callback(jump.close)  # registered first, so closed last
        out = {}
        for name in names:
            conn = connect(hosts_config, name, gateway=jump)
            stack.callback(conn.close)
            out[name] = Remote(conn, log.bind(node=name))
        log.info("ssh.jump_host", host=jump_alias, hosts=len(out), connections=1)
        yield out


class Remote:
    """One SSH connection (the DevStack host, a node); commands fail with the command and its stderr.
    The connection is opened on first use (transient failures retried); several threads may share it."""

    def __init__(self, conn, log):
        self.conn, self.log = conn, log
        self._opening = threading.Lock()

    @property
    def user(self) -> str:
        return self.conn.user

    def open(self) -> None:
        with self._opening:
            if not self.conn.is_connected:
                open_connection(self.conn, self.log)

    @contextmanager
    def forward(self, remote_host: str, remote_port: int, local_port: int = 0) -> Iterator[int]:
        """127.0.0.1:<port> forwarded to remote_host:remote_port through this connection (a
        direct-tcpip channel per accepted connection), listening before the context is entered;
        yields the local port (a free one unless `local_port` is given).

        Not Fabric's Connection.forward_local: it binds its listener in a thread after the context
        is entered (a request made at once was refused), and when the remote port refuses a channel
        (an API server restarting) its TunnelManager thread dies with the accepted socket open, so
        that request, and every later one through the forward, hangs (fabric/tunnels.py). Here a
        refused channel closes that one local connection; the forward keeps serving."""
        try:
            self.open()
        except Exception as exc:
            raise StepFailed(describe_ssh_error(exc, self.conn.host)) from None
        transport = self.conn.transport
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", local_port))
        local_port = listener.getsockname()[1]
        listener.listen(16)
        listener.settimeout(0.2)
        stop = threading.Event()
        log = self.log.bind(forward=f"127.0.0.1:{local_port}->{remote_host}:{remote_port}")

        def pump(sock: socket.socket, peer) -> None:
            try:
                chan = transport.open_channel("direct-tcpip", (remote_host, remote_port), peer, timeout=15)
            except Exception as exc:  # refused or unreachable over there: this connection only
                log.debug("ssh.forward_refused", error=f"{exc.__class__.__name__}: {exc}")
                sock.close()
                return
            try:
                while not stop.is_set():
                    ready, _, _ = select.select([sock, chan], [], [], 0.5)
                    if sock in ready:
                        data = sock.recv(65536)
                        if not data:
                            break
                        chan.sendall(data)
                    if chan in ready:
                        data = chan.recv(65536)
                        if not data:
                            break
                        sock.sendall(data)
            except Exception:  # noqa: BLE001 (either end went away: this connection ends)
                pass
            finally:
                chan.close()
                sock.close()

        def serve() -> None:
            while not stop.is_set():
                try:
                    sock, peer = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                threading.Thread(target=pump, args=(sock, peer), name="ssh-forward", daemon=True).start()

        server = threading.Thread(target=serve, name="ssh-forward-listener", daemon=True)
        server.start()
        try:
            yield local_port
        finally:
            stop.set()
            server.join()
            listener.close()

    def run(self, cmd: str, sudo: bool = False, warn: bool = False, timeout: int | None = None):
        full = f"sudo -n sh -c {shlex.quote(cmd)}" if sudo else cmd
        self.log.debug("remote.run", command=full)
        try:
            self.open()
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

    def put_file(self, local: Path, path: str) -> None:
        """Copy a local file to `path` over SFTP (an existing file there, say from mktemp, keeps its mode)."""
        try:
            self.open()
            self.conn.put(str(local), path)
        except OSError as exc:
            raise StepFailed(f"upload of {local} to {self.conn.host}:{path} failed: {exc}") from None
        except Exception as exc:
            raise StepFailed(describe_ssh_error(exc, self.conn.host)) from None

    def install(self, path: str, text: str, mode: int = 0o644, then: str = "") -> None:
        """A root-owned file with this content (parent directories created), then `then`, as root."""
        tmp = self.temp_file(text)
        after = f" && {then}" if then else ""
        self.run(f"install -D -m {mode:o} {tmp} {shlex.quote(path)} && rm -f {tmp}{after}", sudo=True)

    def temp_file(self, text: str) -> str:
        path = self.run("mktemp /tmp/osk8s.XXXXXX").stdout.strip()
        self.put_text(path, text)
        return path
