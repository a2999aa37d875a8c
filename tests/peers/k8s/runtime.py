"""The container runtime of the test nodes: containers are host processes, each under a shim
(shim.py), recorded in a state directory so that they outlive the kubelet, as containerd's do.

Why a stand-in: no container runtime can run here (no images, no registry); the Kubernetes
programs themselves are real (osk8s_tasks/embedded/build.py), so a "container" is the built binary
run with the container's command and args on the node (every kubeadm static pod uses
hostNetwork, so the node's network namespace is the pod's).

What it keeps from containerd + the CRI (k8s.io/cri-api RuntimeService, containerd
internal/cri/server):
- RunContainer: the process starts under its shim; stdout/stderr go to the CRI log file the
  kubelet names (/var/log/pods/<ns>_<pod>_<uid>/<container>/<restartCount>.log).
- ListContainers: the records in STATE (default /var/lib/osk8s-standin/runtime), each checked
  against the live shim (PID and its command line, so a reused PID is not mistaken for it).
- StopContainer(timeout): SIGTERM, SIGKILL after the grace period; exit code 128+signal.
- A kubelet restart does not stop containers; `remove-all` is what kubeadm reset asks the CRI
  for (cmd/kubeadm/app/cmd/phases/reset/cleanupnode.go removeContainers: stop and remove every
  Kubernetes container), called by the kubeadm wrapper after the real `kubeadm reset`, since the
  stand-in containerd has no CRI socket for kubeadm to reach.

    python -m tests.peers.k8s.runtime list | remove-all [--state DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE = Path("/var/lib/osk8s-standin/runtime")
SHIM = Path(__file__).resolve().parent / "shim.py"


@dataclass
class Container:
    id: str
    pod_uid: str
    pod: str  # pod name
    namespace: str
    name: str  # container name
    restart_count: int
    argv: list[str]
    log_path: str
    grace: float
    shim_pid: int = 0
    started_at: float = 0.0
    labels: dict = field(default_factory=dict)
    exit: dict | None = None  # {"exitCode", "signal", "finishedAt"} once exited

    @property
    def running(self) -> bool:
        return self.exit is None


def _pid_is_shim(pid: int, cid: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(SHIM).encode() in cmdline and cid.encode() in cmdline


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Runtime:
    def __init__(self, state: Path = STATE, python: str = sys.executable):
        self.state = Path(state)
        self.python = python

    def _record(self, cid: str) -> Path:
        return self.state / f"{cid}.json"

    def run(
        self,
        *,
        pod_uid: str,
        pod: str,
        namespace: str,
        name: str,
        restart_count: int,
        argv: list[str],
        log_path: str,
        grace: float = 30,
        labels: dict | None = None,
    ) -> Container:
        """Start a container (its process under a detached shim) and record it."""
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        cid = secrets.token_hex(32)  # containerd's IDs: 64 hex digits
        c = Container(
            cid, pod_uid, pod, namespace, name, restart_count, list(argv), log_path, grace, labels=dict(labels or {})
        )
        shim_log = open(self.state / f"{cid}.shim.log", "ab")
        proc = subprocess.Popen(
            [self.python, "-S", "-B", str(SHIM), str(self.state), cid, log_path, str(grace), "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=shim_log,
            stderr=shim_log,
            start_new_session=True,
            close_fds=True,
        )
        shim_log.close()
        c.shim_pid, c.started_at = proc.pid, time.time()
        tmp = self._record(cid).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(c)))
        os.replace(tmp, self._record(cid))
        return c

    def get(self, cid: str) -> Container | None:
        try:
            data = json.loads(self._record(cid).read_text())
        except (OSError, ValueError):
            return None
        c = Container(**data)
        exit_file = self.state / f"{cid}.exit"
        if exit_file.exists():
            try:
                c.exit = json.loads(exit_file.read_text())
            except ValueError:
                c.exit = None
        if c.exit is None and not (_alive(c.shim_pid) and _pid_is_shim(c.shim_pid, cid)):
            # the shim died without recording (SIGKILL, or the machine's namespace went away)
            c.exit = {"exitCode": 255, "signal": None, "finishedAt": None, "reason": "shim gone"}
        return c

    def list(self) -> list[Container]:
        if not self.state.exists():
            return []
        return [c for c in (self.get(p.stem) for p in sorted(self.state.glob("*.json"))) if c is not None]

    def process_pid(self, c: Container) -> int | None:
        """The container's own process (the shim's child), while it runs."""
        try:
            pid = int((self.state / f"{c.id}.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if c.running and _alive(pid) else None

    def stop(self, c: Container, grace: float | None = None) -> None:
        """StopContainer: SIGTERM through the shim, SIGKILL after the grace period."""
        grace = c.grace if grace is None else grace
        if c.running and _pid_is_shim(c.shim_pid, c.id):
            # the shim forwards SIGTERM and kills after its own grace; ours bounds the wait
            os.kill(c.shim_pid, signal.SIGTERM)
            deadline = time.monotonic() + grace + 5
            while time.monotonic() < deadline and _alive(c.shim_pid) and _pid_is_shim(c.shim_pid, c.id):
                time.sleep(0.1)
            child = self.process_pid(c)
            for pid in (child, c.shim_pid):
                if pid and _alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    def remove(self, c: Container) -> None:
        """RemoveContainer: the record goes; the log file stays (the kubelet removes pod log dirs)."""
        for suffix in (".json", ".exit", ".pid", ".shim.log"):
            (self.state / f"{c.id}{suffix}").unlink(missing_ok=True)

    def remove_all(self, grace: float = 10) -> list[Container]:
        """What kubeadm reset asks the CRI for: stop and remove every container."""
        containers = self.list()
        threads = [threading.Thread(target=self.stop, args=(c, grace)) for c in containers]
        for t in threads:  # all at once: a slow container does not hold the others up
            t.start()
        for t in threads:
            t.join()
        for c in containers:
            self.remove(c)
        return containers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.peers.k8s.runtime")
    parser.add_argument("command", choices=["list", "remove-all"])
    parser.add_argument("--state", default=str(STATE))
    args = parser.parse_args(argv)
    rt = Runtime(Path(args.state))
    if args.command == "list":
        for c in rt.list():
            state = "running" if c.running else f"exited({c.exit.get('exitCode')})"
            print(f"{c.id[:13]}  {c.namespace}/{c.pod}  {c.name}  restarts={c.restart_count}  {state}")
        return 0
    removed = rt.remove_all()
    print(
        f"[reset] stand-in runtime: stopped and removed {len(removed)} containers"
        + (f" ({', '.join(sorted({c.name for c in removed}))})" if removed else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
