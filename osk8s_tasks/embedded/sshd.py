"""Real sshd test hosts, each in its own network namespace, reached over a veth pair.

Every host has its own address (198.18.N.2, the benchmarking range, only inside namespaces this
harness creates), its own host key (recorded in known_hosts from the key file itself, so the
tests exercise strict host key checking), and its own copy of `private_dirs` (a mount namespace
bind-mounts a per-host directory over each), so that hosts do not see each other's files.
Used by the tests' fixtures; `python -m osk8s_tasks.embedded.sshd 3` starts three by hand.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

USER = "osk8s"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


@dataclass
class TestHost:
    name: str
    netns: str
    address: str
    host_key: Path
    pid: int | None = None


@dataclass
class SshHosts:
    workdir: Path
    count: int = 3
    prefix: str = "o8s"
    private_dirs: tuple[str, ...] = ()
    private_files: tuple[str, ...] = ()  # files each host gets its own copy of (e.g. /etc/fstab)
    names: tuple[str, ...] = ()  # ssh_config aliases (default: the namespace names)
    gateway: bool = False  # host 0 is a jump host; the others are reachable only through it
    hosts: list[TestHost] = field(default_factory=list)

    @property
    def client_key(self) -> Path:
        return self.workdir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.workdir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.workdir / "ssh_config"

    def start(self) -> SshHosts:
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)  # sshd reads authorized_keys as the test user
        Path("/run/sshd").mkdir(exist_ok=True)
        _ensure_user()
        if not self.client_key.exists():
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "osk8s-tests", "-f", str(self.client_key))
        keys = self.workdir / "authorized_keys"
        shutil.copy(self.client_key.with_suffix(".pub"), keys)
        os.chmod(keys, 0o644)
        try:
            for i in range(self.count):
                self.hosts.append(self._start_host(i))
        except BaseException:
            self.stop()  # a half-started set would keep its addresses and links
            raise
        self.known_hosts.write_text(
            "".join(f"{h.address} {' '.join(h.host_key.with_suffix('.pub').read_text().split()[:2])}\n" for h in self.hosts)
        )
        self.ssh_config.write_text(
            "".join(
                f"Host {h.name}\n  HostName {h.address}\n  User {USER}\n  IdentityFile {self.client_key}\n"
                f"  IdentitiesOnly yes\n  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n"
                for h in self.hosts
            )
        )
        for h in self.hosts[:1] if self.gateway else self.hosts:
            _wait_port(h.address, 22)
        for h in self.hosts[1:] if self.gateway else []:  # reachable from the gateway's namespace only
            sh(
                "ip",
                "netns",
                "exec",
                self.hosts[0].netns,
                "bash",
                "-c",
                f"for i in $(seq 150); do (exec 3<>/dev/tcp/{h.address}/22) 2>/dev/null && exit 0; sleep 0.1; done; exit 1",
            )
        return self

    def private(self, host: TestHost, path: str) -> Path:
        """Where a host's private directory lives on this machine (to set up or inspect files)."""
        return self.workdir / host.netns / path.strip("/")

    def _start_host(self, i: int) -> TestHost:
        ns, outer, inner = f"{self.prefix}{i}", f"{self.prefix}{i}h", f"{self.prefix}{i}n"
        behind = self.gateway and i > 0  # linked to the gateway's namespace, not to this machine
        sh("ip", "netns", "del", ns, check=False)  # a leftover of an interrupted run
        sh("ip", "link", "del", outer, check=False)
        net = f"198.19.{i}" if behind else _free_net()
        name = self.names[i] if i < len(self.names) else ns
        host = TestHost(name, ns, f"{net}.2", self.workdir / f"{ns}_host_key")
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        sh("ip", "link", "set", inner, "netns", ns)
        side = ["ip", "netns", "exec", self.hosts[0].netns] if behind else []
        if behind:
            sh("ip", "link", "set", outer, "netns", self.hosts[0].netns)
        sh(*side, "ip", "addr", "add", f"{net}.1/24", "dev", outer)
        sh(*side, "ip", "link", "set", outer, "up")
        for cmd in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", f"{host.address}/24", "dev", inner],
            ["ip", "link", "set", inner, "up"],
            ["ip", "route", "add", "default", "via", f"{net}.1"],
        ):
            sh("ip", "netns", "exec", ns, *cmd)
        if not host.host_key.exists():
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host.host_key))
        cfg = self.workdir / f"{ns}_sshd_config"
        cfg.write_text(
            "\n".join(
                [
                    f"ListenAddress {host.address}",
                    "Port 22",
                    f"HostKey {host.host_key}",
                    f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
                    f"AllowUsers {USER}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    f"PidFile {self.workdir / (ns + '.pid')}",
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        mounts = []
        for d in self.private_dirs:
            own = self.workdir / ns / d.strip("/")
            own.mkdir(parents=True, exist_ok=True)
            mounts.append(f"mkdir -p {d} && mount --bind {own} {d}")
        for f in self.private_files:
            own = self.workdir / ns / "files" / f.strip("/").replace("/", "_")
            own.parent.mkdir(parents=True, exist_ok=True)
            if Path(f).exists():
                shutil.copy(f, own)
            else:
                own.touch()
            mounts.append(f"mount --bind {own} {f}")
        script = " && ".join([*mounts, f"exec /usr/sbin/sshd -D -e -f {cfg}"])
        log = open(self.workdir / f"{ns}_sshd.log", "a")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        host.pid = proc.pid  # every program in the chain execs, so this is sshd's own PID
        return host

    def stop(self) -> None:
        for h in self.hosts:
            # Everything in a test host's namespace was started by the tests (sshd, and what ran
            # through it: stand-in services, a detached stack.sh): end it all, by PID.
            pids = sh("ip", "netns", "pids", h.netns, check=False).stdout.split()
            for pid in pids:
                if int(pid) != h.pid:
                    try:
                        os.kill(int(pid), 15)
                    except ProcessLookupError:
                        pass
            if runs(h.pid, f"{h.netns}_sshd_config"):  # never a process that reused the PID
                end(h.pid)
            empty_namespace(h.netns)
            sh("ip", "netns", "del", h.netns, check=False)
            sh("ip", "link", "del", f"{h.netns}h", check=False)
        self.hosts = []
        shutil.rmtree(self.workdir, ignore_errors=True)


def empty_namespace(netns: str, grace: float = 5) -> None:
    """What is still in the namespace after SIGTERM (a slow exit, a container the kubelet stand-in
    restarted meanwhile) gets SIGTERM again, then SIGKILL: nothing is left in a namespace that
    `ip netns del` would make unnamed and unfindable."""
    deadline = time.monotonic() + grace
    while pids := [int(p) for p in sh("ip", "netns", "pids", netns, check=False).stdout.split()]:
        signal = 15 if time.monotonic() < deadline else 9
        for pid in pids:
            try:
                os.kill(pid, signal)
            except ProcessLookupError:
                pass
        if signal == 9:
            time.sleep(0.2)
            break
        time.sleep(0.2)


def runs(pid: int | None, mark: str) -> bool:
    """Is `pid` alive and still the program we started, `mark` on its command line (a PID may be reused)?"""
    if not pid:
        return False
    try:
        return mark in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def end(pid: int, timeout: float = 10) -> None:
    """SIGTERM to a process this harness started, then wait until it is gone: reaped when it is our
    child, else (started by an earlier run of the tool, now init's child) polled."""
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    try:
        os.waitpid(pid, 0)
        return
    except ChildProcessError:
        pass
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _free_net() -> str:
    """The first 198.18.N.0/24 no link on this machine routes yet. Two host sets alive at once (a
    fixture that failed half-way, another module's hosts) then never share an address: with a
    fixed 198.18.0.2 each, the client reached whichever sshd the route picked (BadHostKey)."""
    used = set(sh("ip", "-o", "route", "show", "table", "main").stdout.split())
    for n in range(256):
        if f"198.18.{n}.0/24" not in used:
            return f"198.18.{n}"
    raise RuntimeError("no free 198.18.N.0/24 left: delete the test namespaces of earlier runs (ip netns list)")


def _ensure_user() -> None:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        sh("useradd", "-m", "-s", "/bin/bash", USER)
    sh("usermod", "-p", "*", USER)  # no password, but not locked: sshd refuses locked accounts
    sudoers = Path(f"/etc/sudoers.d/{USER}")
    sudoers.parent.mkdir(exist_ok=True)
    if not sudoers.exists():
        sudoers.write_text(f"{USER} ALL=(ALL) NOPASSWD:ALL\n")
        os.chmod(sudoers, 0o440)


def _wait_port(address: str, port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd on {address}:{port} did not start") from None
            time.sleep(0.1)


if __name__ == "__main__":
    import sys

    hosts = SshHosts(Path(sys.argv[2] if len(sys.argv) > 2 else "/run/osk8s-sshd"), int(sys.argv[1])).start()
    print(f"{len(hosts.hosts)} hosts up; ssh -F {hosts.ssh_config} {hosts.hosts[0].name}; Ctrl-C stops them")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hosts.stop()
