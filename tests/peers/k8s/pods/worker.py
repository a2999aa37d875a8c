"""One pod's worker (kubelet's pod_workers.go and kuberuntime_manager.go SyncPod): volumes first,
then init containers in order, then the containers, restarted per restartPolicy (and the
container restart rules: pkg/api/v1/pod/util.go ContainerShouldRestart) with the crash-loop
back-off (kuberuntime_manager.go doBackOff: waiting reason CrashLoopBackOff with kubelet's
message); each container in its own mount and UTS namespace (`unshare`, then enter.py); stop with
the grace period (kuberuntime_container.go killContainer), then the status manager's final delete
(grace 0, UID precondition). The topics of a pod are mixed in: containers.py, envvars.py,
volumes.py, probes.py, status.py.
"""

from __future__ import annotations

import json
import logging
import os
import secrets as _random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.peers.k8s.pods.client import ApiError, rfc3339
from tests.peers.k8s.pods.containers import Containers
from tests.peers.k8s.pods.envvars import Environment
from tests.peers.k8s.pods.errors import ConfigError, MountError
from tests.peers.k8s.pods.logs import CriLog
from tests.peers.k8s.pods.probes import Probes
from tests.peers.k8s.pods.state import Ctr, ProbeState
from tests.peers.k8s.pods.status import PodStatus
from tests.peers.k8s.pods.volumes import Volumes

if TYPE_CHECKING:
    from tests.peers.k8s.pods.runner import PodRunner

log = logging.getLogger("osk8s.pods")
ENTER = Path(__file__).resolve().with_name("enter.py")  # run inside the container's namespaces
SYNC_FREQUENCY = 60.0  # volumes re-read (kubelet syncFrequency)
DEFAULT_GRACE = 30


def _signal_text(sig: int) -> str:
    return {
        signal.SIGTERM: "terminated",
        signal.SIGINT: "interrupt",
        signal.SIGHUP: "hangup",
        signal.SIGQUIT: "quit",
        signal.SIGABRT: "aborted",
        signal.SIGSEGV: "segmentation fault",
    }.get(sig, f"signal {sig}")


def _proc_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[19]
    except (OSError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------------------------------------------


class PodWorker(Containers, Environment, Volumes, Probes, PodStatus, threading.Thread):
    """One pod: volumes, containers, probes and status (kubelet's podWorkers + SyncPod)."""

    def __init__(self, runner: PodRunner, pod: dict):
        md = pod["metadata"]
        super().__init__(daemon=True, name=f"pod-{md['namespace']}/{md['name']}")
        self.runner, self.api, self.pod = runner, runner.api, pod
        self.uid, self.ns, self.name = md["uid"], md["namespace"], md["name"]
        self.dir = runner.pod_dir(self.uid)
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.stopping: dict | None = None
        self.finished = False
        self.first_seen = time.time()
        self.volumes_ready = False
        self.volume_error = ""
        self.pvc_paths: dict[str, Path] = {}
        self.next_volume_sync = 0.0
        self.tokens: dict[str, tuple[str, float, float]] = {}  # volume/path -> (token, issued, expires)
        self.status_sent: dict | None = None
        self.next_status_sync = 0.0
        self.sandbox = False
        self.init = [Ctr(c, init=True) for c in pod["spec"].get("initContainers", [])]
        self.ctrs = [Ctr(c) for c in pod["spec"].get("containers", [])]
        self.probe_epoch = time.monotonic()
        for c in self.init + self.ctrs:
            for kind in ("startup", "readiness", "liveness"):
                spec = c.spec.get(f"{kind}Probe")
                if spec and not c.init:
                    c.probes.append(ProbeState(spec, kind))

    def update(self, pod: dict) -> None:
        with self.lock:
            self.pod = pod
            if pod["metadata"].get("deletionTimestamp") and not self.stopping:
                grace = pod["metadata"].get("deletionGracePeriodSeconds")
                self.stopping = {"grace": grace if grace is not None else self._grace(), "delete": True}
        self.wake.set()

    def terminate(self, gone: bool = False, shutdown: bool = False) -> None:
        with self.lock:
            if not self.stopping:
                self.stopping = {"grace": self._grace(), "delete": False}
            if gone:
                self.stopping["delete"] = False
            self.stopping["shutdown"] = shutdown
        self.wake.set()

    def _grace(self) -> int:
        g = self.pod["spec"].get("terminationGracePeriodSeconds")
        return DEFAULT_GRACE if g is None else g

    # -- loop ------------------------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            with self.lock:
                stopping = self.stopping
            if stopping:
                break
            try:
                self.step()
            except Exception:  # keep the pod worker alive, as kubelet's does; the log says why
                log.exception("pod %s/%s: sync failed", self.ns, self.name)
            self.wake.wait(timeout=self._sleep())
            self.wake.clear()
        try:
            self.kill_all(stopping["grace"])
            if not stopping.get("shutdown"):
                self.push_status(force=True)
            if stopping.get("delete"):
                try:  # the status manager's final delete (status_manager.go: canBeDeleted -> Delete, grace 0)
                    self.api.request(
                        "DELETE",
                        f"/api/v1/namespaces/{self.ns}/pods/{self.name}",
                        {
                            "kind": "DeleteOptions",
                            "apiVersion": "v1",
                            "gracePeriodSeconds": 0,
                            "preconditions": {"uid": self.uid},
                        },
                    )
                except ApiError as e:
                    if e.status not in (404, 409):
                        log.warning("pod %s/%s: final delete: %s", self.ns, self.name, e)
        except Exception:
            log.exception("pod %s/%s: stop failed", self.ns, self.name)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.finished = True

    def _sleep(self) -> float:
        now = time.monotonic()
        due = [p.next_at for c in self.ctrs for p in c.probes if c.running and not p.on_hold]
        due += [c.next_try for c in self.init + self.ctrs if c.next_try]
        nearest = min(due, default=now + 1.0)
        return max(0.05, min(1.0, nearest - now))  # PLEG relists every second

    def step(self) -> None:
        now = time.monotonic()
        if not self.volumes_ready or now >= self.next_volume_sync:
            try:
                self.setup_volumes()
                self.volumes_ready, self.volume_error = True, ""
                self.next_volume_sync = now + SYNC_FREQUENCY
            except (MountError, ApiError, OSError) as e:
                if str(e) != self.volume_error:
                    self.runner.event(self.pod, "FailedMount", str(e), "Warning")
                    log.warning("pod %s/%s: %s", self.ns, self.name, e)
                self.volume_error = str(e)
                self.next_volume_sync = now + 2.0
                if not self.volumes_ready:
                    self.push_status()
                    return
        self.sandbox = True
        for c in self.init + self.ctrs:
            if c.proc is not None and c.proc.poll() is not None:
                self.on_exit(c)
        initialized = self.run_init()
        if initialized:
            for c in self.ctrs:
                if not c.running:
                    self.maybe_start(c)
        self.run_probes()
        self.push_status()

    def run_init(self) -> bool:
        for c in self.init:
            if c.terminated and c.terminated["exitCode"] == 0:
                continue
            if c.running:
                return False
            self.maybe_start(c)
            return False
        return True

    def should_restart(self, container: dict, exit_code: int) -> bool:
        """pkg/api/v1/pod/util.go ContainerShouldRestart (ContainerRestartRules is on in 1.37)."""
        if container.get("restartPolicy"):
            for rule in container.get("restartPolicyRules") or []:
                codes = rule.get("exitCodes") or {}
                hit = exit_code in (codes.get("values") or [])
                if (hit if codes.get("operator") == "In" else not hit) and rule.get("action") == "Restart":
                    return True
            if container["restartPolicy"] in ("Always", "OnFailure", "Never"):
                return container["restartPolicy"] == "Always" or (
                    container["restartPolicy"] == "OnFailure" and exit_code != 0
                )
        policy = self.pod["spec"].get("restartPolicy", "Always")
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    def maybe_start(self, c: Ctr) -> None:
        now = time.monotonic()
        if c.terminated is not None:
            return  # stays terminated (restartPolicy)
        if c.next_try and now < c.next_try:
            return
        if c.last_terminated is not None:  # an exited container: kuberuntime doBackOff
            key = f"{self.name}_{self.ns}_{self.uid}_{c.name}"  # GetBackoffKey (without the spec hash)
            finished = c.last_terminated["_finished"]
            wall = time.time()
            if self.runner.backoff.in_backoff_since(key, finished, wall):
                backoff = self.runner.backoff.get(key)
                msg = f"back-off {int(backoff)}s restarting failed container={c.name} pod={self.name}_{self.ns}({self.uid})"
                if c.waiting is None or c.waiting[0] != "CrashLoopBackOff":
                    self.runner.event(
                        self.pod,
                        "BackOff",
                        f"Back-off restarting failed container {c.name} in pod {self.name}_{self.ns}({self.uid})",
                        "Warning",
                        self._field(c),
                    )
                c.waiting = ("CrashLoopBackOff", msg)
                c.next_try = now + max(0.05, finished + backoff - wall)
                return
            self.runner.backoff.next(key, finished, wall)
            c.restart_count += 1
        c.next_try = 0.0
        try:
            self.start_container(c)
        except ConfigError as e:
            if c.last_terminated is not None:
                c.restart_count -= 1
            c.waiting = ("CreateContainerConfigError", str(e))
            c.next_try = now + 10.0  # kubelet's backOffPeriod after a failed sync
            self.runner.event(self.pod, "Failed", f"Error: {e}", "Warning", self._field(c))

    def _field(self, c: Ctr) -> str:
        return f"spec.{'initContainers' if c.init else 'containers'}{{{c.name}}}"

    # -- start / stop ----------------------------------------------------------------------------------
    def start_container(self, c: Ctr) -> None:
        spec = self.container_spec(c)
        cdir = self.dir / "containers"
        cdir.mkdir(parents=True, exist_ok=True)
        c.cid = _random.token_hex(32)
        err_file = cdir / f"{c.name}.error"
        err_file.unlink(missing_ok=True)
        spec["error_file"] = str(err_file)
        spec_file = cdir / f"{c.name}.spec.json"
        fd = os.open(spec_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f)
        logdir = self.runner.log_dir / f"{self.ns}_{self.name}_{self.uid}" / c.name
        if c.log:
            c.log.close()
        c.log = CriLog(logdir / f"{c.restart_count}.log")
        if c.go_runner:
            for line in spec.pop("go_runner_preamble", []):
                c.log.record("stderr", line.encode())
        out_r, out_w = os.pipe()
        err_r, err_w = (out_r, out_w) if spec.get("merge_stderr") else os.pipe()
        argv = [
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "slave",
            "--",
            sys.executable,
            "-I",
            "-S",
            str(ENTER),
            "--container",
            str(spec_file),
        ]
        try:
            c.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                close_fds=True,
                start_new_session=True,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        finally:
            os.close(out_w)
            if err_w != out_w:
                os.close(err_w)
        c.pumps = [c.log.pump(out_r, "stdout")] + ([] if err_r == out_r else [c.log.pump(err_r, "stderr")])
        (cdir / f"{c.name}.pid").write_text(f"{c.proc.pid} {_proc_start(c.proc.pid) or ''}\n")
        c.started_at = time.time()
        c.waiting, c.ready, c.started = None, False, not any(p.kind == "startup" for p in c.probes)
        for p in c.probes:
            p.last, p.run, p.on_hold = "", 0, False
            p.next_at = self._first_probe(p)
        self.runner.event(self.pod, "Started", f"Started container {c.name}", field_path=self._field(c))

    def _first_probe(self, p: ProbeState) -> float:
        """The probe worker ticks every periodSeconds from when it was created (worker.go run)."""
        period = p.spec.get("periodSeconds", 10)
        now = time.monotonic()
        ticks = int((now - self.probe_epoch) // period) + 1
        return self.probe_epoch + ticks * period

    def on_exit(self, c: Ctr, final: bool = False) -> None:
        rc = c.proc.returncode
        for t in c.pumps:
            t.join(timeout=2)
        finished = time.time()
        code = rc if rc >= 0 else 128 - rc
        err_file = self.dir / "containers" / f"{c.name}.error"
        reason, message = ("Completed" if code == 0 else "Error"), None
        if err_file.exists() and err_file.stat().st_size:
            reason, message, code = "StartError", err_file.read_text().strip(), 128
        elif c.go_runner and code != 0 and rc != -signal.SIGKILL:
            # go-runner: cmd.Wait() fails -> log.Fatal("running command: ...") on its stderr, exit 1 (a SIGKILL
            # of the container kills go-runner itself: 137)
            what = f"exit status {code}" if rc >= 0 else f"signal: {_signal_text(-rc)}"
            c.log.record("stderr", f"{time.strftime('%Y/%m/%d %H:%M:%S')} running command: {what}".encode())
            code = 1
        term = {
            "exitCode": code,
            "reason": reason,
            "startedAt": rfc3339(c.started_at),
            "finishedAt": rfc3339(finished),
            "containerID": f"osk8s-pods://{c.cid}",
            "_finished": finished,
        }
        if message:
            term["message"] = message
        c.proc, c.ready, c.started = None, False, False
        (self.dir / "containers" / f"{c.name}.pid").unlink(missing_ok=True)
        if final or (c.init and code == 0):
            c.terminated = term
        elif self.should_restart(c.spec, code):
            c.last_terminated, c.waiting = term, ("ContainerCreating", "")
        else:
            c.terminated = term

    def kill(self, c: Ctr, grace: float, reason: str = "") -> None:
        if c.proc is None:
            return
        if reason:
            self.runner.event(self.pod, "Killing", f"Stopping container {c.name}{reason}", field_path=self._field(c))
        try:
            os.killpg(c.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            c.proc.wait(timeout=max(grace, 0))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(c.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            c.proc.wait()
        self.on_exit(c)

    def kill_all(self, grace: float) -> None:
        """Containers stopped at once, each with the grace period (kubelet's minimum is 2 s)."""
        live = [c for c in self.ctrs + self.init if c.running]
        for c in live:
            try:
                os.killpg(c.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + max(grace, 2 if grace else 0)
        for c in live:
            try:
                c.proc.wait(timeout=max(0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(c.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                c.proc.wait()
            self.on_exit(c, final=True)  # stopped for good, whatever the restart policy
        for c in self.ctrs + self.init:
            if c.log:
                c.log.close()
