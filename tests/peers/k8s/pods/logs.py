"""Container log files in the CRI format (`<RFC3339Nano> <stream> <F|P> <line>`; the CRI spec,
containerd's CRI log writer: lines longer than 16 KiB split into P records), at
<log_dir>/<ns>_<pod>_<uid>/<container>/<restartCount>.log (pkg/kubelet/kuberuntime/helpers.go
BuildContainerLogsDirectory)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def _nano(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


class CriLog:
    """containerd's CRI log format: one `<RFC3339Nano> <stream> <F|P> <content>` line per output line;
    lines longer than 16 KiB are split into P(artial) records."""

    MAX_LINE = 16 * 1024

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.f = open(path, "ab", buffering=0)
        self.lock = threading.Lock()

    def record(self, stream: str, content: bytes, full: bool = True) -> None:
        with self.lock:
            self.f.write(f"{_nano(time.time())} {stream} {'F' if full else 'P'} ".encode() + content + b"\n")

    def pump(self, fd: int, stream: str) -> threading.Thread:
        def run():
            buf = b""
            try:
                while chunk := os.read(fd, 65536):
                    buf += chunk
                    while True:
                        nl = buf.find(b"\n")
                        if nl == -1:
                            if len(buf) >= self.MAX_LINE:
                                self.record(stream, buf[: self.MAX_LINE], full=False)
                                buf = buf[self.MAX_LINE :]
                                continue
                            break
                        line, buf = buf[:nl], buf[nl + 1 :]
                        while len(line) > self.MAX_LINE:
                            self.record(stream, line[: self.MAX_LINE], full=False)
                            line = line[self.MAX_LINE :]
                        self.record(stream, line)
            except OSError:
                pass
            finally:
                if buf:
                    self.record(stream, buf)
                os.close(fd)

        t = threading.Thread(target=run, daemon=True, name=f"log-{self.path.parent.name}-{stream}")
        t.start()
        return t

    def close(self) -> None:
        self.f.close()


# ---------------------------------------------------------------------------------------------------
