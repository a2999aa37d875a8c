"""The kubelet service as systemd runs it and the systemctl stand-in calls it: the kubelet unit of
the Kubernetes deb/rpm packages (upstream kubernetes/release: ExecStart=/usr/bin/kubelet, Restart=always)
with kubeadm's drop-in 10-kubeadm.conf (its flags and EnvironmentFile=-/var/lib/kubelet/
kubeadm-flags.env, -/etc/default/kubelet); start detached, stop with SIGTERM then SIGKILL, status
and is-active."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.peers.k8s.kubelet.daemon import Kubelet
from tests.peers.k8s.kubelet.flags import STATE, UNIT_CONFIG_ARGS, UNIT_ENV_FILES, UNIT_KUBECONFIG_ARGS, log, parse_flags
from tests.peers.k8s.runtime import Runtime

LAUNCHER = "/usr/local/bin/kubelet"


@dataclass
class Status:
    active: bool
    pid: int | None = None
    node: str | None = None
    healthz: str | None = None
    api_server: str | None = None
    kwok_pid: int | None = None
    containers: list[str] = field(default_factory=list)
    detail: dict = field(default_factory=dict)


def _pid(state: Path) -> int | None:
    try:
        pid = int((state / "kubelet" / "kubelet.pid").read_text())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"tests.peers.k8s.kubelet" in cmd and b"run" in cmd.split(b"\0") else None


def unit_argv() -> list[str]:
    """ExecStart of the kubelet unit with kubeadm's drop-in: the flags from its environment files."""
    env = {}
    for path in UNIT_ENV_FILES:
        try:
            text = Path(path).read_text()
        except OSError:
            continue  # EnvironmentFile=-...: optional
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k.strip()] = " ".join(shlex.split(v))
    extra = env.get("KUBELET_KUBEADM_ARGS", "").split() + env.get("KUBELET_EXTRA_ARGS", "").split()
    return [*UNIT_KUBECONFIG_ARGS, *UNIT_CONFIG_ARGS, *extra]


def status(state: Path = STATE) -> Status:
    pid = _pid(state)
    try:
        detail = json.loads((state / "kubelet" / "status.json").read_text())
    except (OSError, ValueError):
        detail = {}
    containers = [f"{c.namespace}/{c.pod}/{c.name}" for c in Runtime(state / "runtime").list() if c.running]
    return Status(
        pid is not None,
        pid,
        detail.get("node"),
        detail.get("healthz") if pid else None,
        detail.get("api_server"),
        detail.get("kwok_pid") if pid else None,
        containers,
        detail,
    )


def start(state: Path = STATE, launcher: str = LAUNCHER) -> Status:
    """systemctl start kubelet: the launcher with the unit's arguments, detached; no-op when running."""
    if _pid(state) is None:
        d = state / "kubelet"
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        out = open(d / "kubelet.log", "ab")
        proc = subprocess.Popen(
            [launcher, *unit_argv()],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
        out.close()
        (d / "kubelet.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 10  # the launcher execs Python: wait until it is the daemon
        while _pid(state) is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    return status(state)


def stop(state: Path = STATE, timeout: float = 30) -> Status:
    """systemctl stop kubelet: SIGTERM, SIGKILL after `timeout` (systemd's TimeoutStopSec is 90 s)."""
    pid = _pid(state)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid(state) == pid and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid(state) == pid:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            kwok_pid = state / "kubelet" / "kwok.pid"
            try:
                os.kill(int(kwok_pid.read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    (state / "kubelet" / "kubelet.pid").unlink(missing_ok=True)
    return status(state)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "run":
        try:
            flags = parse_flags(argv[1:])
        except SystemExit as exc:
            log(str(exc))
            return 1
        return Kubelet(flags).run()
    parser = argparse.ArgumentParser(prog="python -m tests.peers.k8s.kubelet")
    parser.add_argument("command", choices=["start", "stop", "restart", "status", "is-active", "argv"])
    parser.add_argument("--state", default=str(STATE))
    args = parser.parse_args(argv)
    state = Path(args.state)
    if args.command == "argv":
        print(" ".join(shlex.quote(a) for a in unit_argv()))
        return 0
    if args.command in ("stop", "restart"):
        stop(state)
    if args.command in ("start", "restart"):
        st = start(state)
        return 0 if st.active else 1
    st = status(state)
    if args.command == "is-active":
        print("active" if st.active else "inactive")
        return 0 if st.active else 3
    if args.command == "status":
        print(json.dumps(asdict(st), indent=1))
        return 0 if st.active else 3
    return 0
