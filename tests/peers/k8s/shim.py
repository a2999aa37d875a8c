"""One container's shim: runs the container's process, writes its output as the CRI log, records
its exit. The stand-in for containerd's shim plus the CRI plugin's log writer, because no
container runtime runs on the test nodes (no images, no CRI socket).

    python -S shim.py STATE_DIR CONTAINER_ID LOG_PATH GRACE_SECONDS -- argv...

Followed upstream:
- containerd internal/cri/io/logger.go (redirectLogs): each line of stdout/stderr becomes
  `<RFC3339Nano time> <stdout|stderr> <F|P> <content>`; a line longer than 16 KiB is cut into
  partial (`P`) pieces, the last piece `F`; what is left at EOF is written as a full line.
- The process is the shim's child and lives as long as the shim (containerd's shim outlives the
  kubelet: a restarted kubelet finds its containers running, pkg/kubelet/kuberuntime).
- SIGTERM to the shim = StopContainer with the pod's grace period: SIGTERM to the process, SIGKILL
  after GRACE_SECONDS (internal/cri/server/container_stop.go).
- On exit: STATE_DIR/CONTAINER_ID.exit = {"exitCode", "signal", "finishedAt"}; killed by a signal
  the exit code is 128+signal, as the runtime reports it (137 for SIGKILL).

Standard library only (started with -S: no site-packages, fast, small).
"""

import json
import os
import selectors
import signal
import subprocess
import sys
import time

MAX_LINE = 16 * 1024  # containerd's defaultBufSize-based limit (maxContainerLogLineSize 16 KiB)


def rfc3339nano(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped, no '.' when zero."""
    sec, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    frac_text = f"{frac:09d}".rstrip("0")
    return f"{text}.{frac_text}Z" if frac_text else f"{text}Z"


class LogWriter:
    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        self.f = open(path, "ab", buffering=0)
        self.pending = {"stdout": b"", "stderr": b""}

    def _write(self, stream: str, tag: str, content: bytes) -> None:
        self.f.write(f"{rfc3339nano(time.time_ns())} {stream} {tag} ".encode() + content + b"\n")

    def feed(self, stream: str, data: bytes) -> None:
        buf = self.pending[stream] + data
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line, buf = buf[:nl], buf[nl + 1 :]
            while len(line) > MAX_LINE:
                self._write(stream, "P", line[:MAX_LINE])
                line = line[MAX_LINE:]
            self._write(stream, "F", line)
        while len(buf) > MAX_LINE:
            self._write(stream, "P", buf[:MAX_LINE])
            buf = buf[MAX_LINE:]
        self.pending[stream] = buf

    def close(self) -> None:
        for stream, rest in self.pending.items():
            if rest:
                self._write(stream, "F", rest)
        self.f.close()


def main(argv: list[str]) -> int:
    sep = argv.index("--")
    state_dir, cid, log_path, grace = argv[1], argv[2], argv[3], float(argv[4])
    cmd = argv[sep + 1 :]
    log = LogWriter(log_path)
    try:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:  # the runtime's "StartError": recorded like an exit, with the reason in the log
        log.feed("stderr", f"shim: cannot start {cmd[0]}: {exc}\n".encode())
        log.close()
        _exit_record(state_dir, cid, 128, None)
        return 128
    with open(os.path.join(state_dir, f"{cid}.pid.tmp"), "w") as f:
        f.write(str(child.pid))
    os.replace(os.path.join(state_dir, f"{cid}.pid.tmp"), os.path.join(state_dir, f"{cid}.pid"))

    def stop(signum, frame):
        try:
            child.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        signal.signal(signal.SIGALRM, lambda *_: child.kill())
        signal.setitimer(signal.ITIMER_REAL, max(grace, 0.1))

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sel = selectors.DefaultSelector()
    sel.register(child.stdout, selectors.EVENT_READ, "stdout")
    sel.register(child.stderr, selectors.EVENT_READ, "stderr")
    open_streams = 2
    while open_streams:
        try:
            events = sel.select()
        except InterruptedError:
            continue
        for key, _ in events:
            data = os.read(key.fd, 65536)
            if data:
                log.feed(key.data, data)
            else:
                sel.unregister(key.fileobj)
                open_streams -= 1
    while True:
        try:
            code = child.wait()
            break
        except InterruptedError:
            continue
    log.close()
    sig = -code if code < 0 else None
    _exit_record(state_dir, cid, 128 + sig if sig else code, sig)
    return 0


def _exit_record(state_dir: str, cid: str, code: int, sig) -> None:
    path = os.path.join(state_dir, f"{cid}.exit")
    with open(path + ".tmp", "w") as f:
        json.dump({"exitCode": code, "signal": sig, "finishedAt": rfc3339nano(time.time_ns())}, f)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
