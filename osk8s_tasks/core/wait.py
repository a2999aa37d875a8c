"""Waiting for something the world does by itself (a VM booting, an API server restarting, a cloud
controller building a load balancer): one loop, with the reason of the last look and a progress
line every 30 s, so a long wait says what it is still waiting for."""

from __future__ import annotations

import time
from collections.abc import Callable

from osk8s_tasks.core import log
from osk8s_tasks.core.engine import Status, Step, StepFailed

PROGRESS_SECONDS = 30


def until(
    check: Callable[[], Status],
    timeout: float,
    interval: float = 2.0,
    what: str = "wait",
    sleep=time.sleep,
    clock=time.monotonic,
) -> tuple[bool, str]:
    """Poll check() until it is ok or `timeout` seconds passed: (ok, the last reason)."""
    start = said = clock()
    while True:
        st = check()
        now = clock()
        if st.ok or now - start > timeout:
            return st.ok, st.reason if st.ok else f"{st.reason} (after {timeout:.0f} s)"
        if now - said >= PROGRESS_SECONDS:
            log.get().info(f"{what}.waiting", reason=st.reason, seconds=round(now - start), timeout=timeout)
            said = now
        sleep(interval)


def wait_step(
    name: str, check: Callable[[], Status], timeout: float, interval: float = 2.0, why: Callable[[], str] | None = None
) -> Step:
    """A condition the world reaches by itself: the apply only waits for it (then it is re-checked).
    `why` reads the cause when it is not reached (a pod's errors, an object's events)."""

    def wait() -> None:
        ok, reason = until(check, timeout, interval, what=name.split()[0])
        if not ok:
            cause = why() if why else ""
            raise StepFailed(f"{name}: not reached: {reason}" + (f"; {cause}" if cause else ""))

    return Step(name, check, wait)
