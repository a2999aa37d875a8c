"""What the runner keeps per container (kubelet's runtime cache and probe workers' state), and
the restart back-off: client-go util/flowcontrol/backoff.go with kubelet's HasExpiredFunc
(pkg/kubelet/kubelet.go: 10 s doubling to 300 s, reset after 10 minutes of running), no jitter."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field

from tests.peers.k8s.pods.logs import CriLog

INITIAL_BACKOFF, MAX_BACKOFF, BACKOFF_RESET = 10.0, 300.0, 600.0  # kubelet.go, flowcontrol HasExpiredFunc


@dataclass
class Backoff:
    """client-go util/flowcontrol Backoff with kubelet's HasExpiredFunc (600 s), no jitter."""

    initial: float = INITIAL_BACKOFF
    maximum: float = MAX_BACKOFF
    entries: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (backoff, lastUpdate)

    def in_backoff_since(self, key: str, event: float, now: float) -> bool:
        if key not in self.entries:
            return False
        backoff, last = self.entries[key]
        if event - last > BACKOFF_RESET:
            return False
        return now - event < backoff

    def get(self, key: str) -> float:
        return self.entries.get(key, (0.0, 0.0))[0]

    def next(self, key: str, event: float, now: float) -> None:
        if key not in self.entries or event - self.entries[key][1] > BACKOFF_RESET:
            self.entries[key] = (self.initial, now)
        else:
            self.entries[key] = (min(self.entries[key][0] * 2, self.maximum), now)


@dataclass
class ProbeState:
    spec: dict
    kind: str  # readiness | liveness | startup
    next_at: float = 0.0
    last: str = ""
    run: int = 0
    on_hold: bool = False


@dataclass
class Ctr:
    spec: dict
    init: bool = False
    restart_count: int = 0
    proc: subprocess.Popen | None = None
    cid: str = ""
    started_at: float = 0.0
    waiting: tuple[str, str] | None = None  # (reason, message) when not running
    terminated: dict | None = None  # the state when it stays terminated
    last_terminated: dict | None = None
    next_try: float = 0.0
    ready: bool = False
    started: bool = False
    probes: list[ProbeState] = field(default_factory=list)
    log: CriLog | None = None
    pumps: list[threading.Thread] = field(default_factory=list)
    go_runner: bool = False
    user: tuple[int, int, list[int]] = (0, 0, [])
    env: dict[str, str] = field(default_factory=dict)
    image_id: str = ""

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def running(self) -> bool:
        return self.proc is not None


# ---------------------------------------------------------------------------------------------------
