"""The step engine: check -> (dry run: report) -> apply -> re-check, and a summary at the end.

A :class:`Step` has a read-only ``check()`` returning :class:`Status` and an ``apply()``. The general
shape is :func:`decision_step`: ``read()`` does the I/O, ``decide(facts) -> Decision`` is pure (and
table-tested), ``act(decision)`` changes things; check and apply share the one decision, so a dry
run and a real run cannot disagree. One-shot actions (``vagrant snapshot restore``) give ``verify``
instead of relying on the re-check. Only this engine knows about dry runs.

Tasks open a :func:`session`; a task called from inside another task's session joins it (tasks
compose as plain functions), and only the outermost session prints the summary and sets the exit
code.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from invoke.exceptions import Exit

from osk8s_tasks.core import config, faults, files, lab, log

# Nodes converged at once by converge_nodes. Each thread mostly waits on its node; with 16, the
# nodes past the 16th waited for a whole node's run: t(24)/t(1) 1.96 against 1.77 with all 24 at
# once (bench/node_fanout.py, 5 interleaved runs each).
NODE_THREADS = 64


@dataclass(frozen=True)
class Status:
    ok: bool
    reason: str
    diff: str = ""


class StepFailed(Exception):
    """A step cannot reach its desired state; the message says why and what to do."""


@dataclass
class Step:
    name: str
    check: Callable[[], Status]
    apply: Callable[[], Any] | None = None  # None: a prerequisite the tool cannot fix itself
    verify: Callable[[], Status] | None = None  # one-shot actions: proof it took effect
    node: str = "local"


@dataclass
class Result:
    task: str
    step: str
    node: str
    outcome: str  # ok | changed | would-change | failed | skipped
    seconds: float
    detail: str


@dataclass
class Session:
    task: str
    dry_run: bool
    settings: Any
    results: list[Result] = field(default_factory=list)
    log_path: Any = None
    started: float = field(default_factory=time.monotonic)
    apply_slots: Any = None  # a Semaphore while converge_nodes limits concurrent applies

    @property
    def log(self):
        return log.get(task=self.task)

    def converge(self, steps: Iterable[Step]) -> list[Result]:
        """Each step in order: check, then (unless a dry run) apply and check again."""
        return converge_steps(self, steps)

    def record(self, result: Result) -> Result:
        """One row of the summary and the reports (threads of one run share the list)."""
        with _results_lock:
            self.results.append(result)
        return result

    def converge_nodes(self, groups: dict[str, list[Step]], apply_concurrency: int = 8) -> None:
        """Each node's steps in order, the nodes concurrently (a thread each, up to NODE_THREADS);
        per-node rows in the summary. Checks always run concurrently; at most `apply_concurrency`
        applies run at once. A node that fails stops only its own steps; the run fails after
        every node finished."""
        self.apply_slots = threading.Semaphore(max(1, apply_concurrency))

        def one(steps):
            try:
                converge_steps(self, steps)
                return None
            except StepFailed as exc:
                return str(exc)

        try:
            with ThreadPoolExecutor(max_workers=max(1, min(NODE_THREADS, len(groups)))) as pool:
                errors = dict(zip(groups, pool.map(one, groups.values()), strict=True))
        finally:
            self.apply_slots = None
        failed = {n: e for n, e in errors.items() if e}
        if failed:
            raise StepFailed("; ".join(f"{n}: {e}" for n, e in failed.items()))

    def child(self, task: str, settings) -> Session:
        return Session(task, self.dry_run, settings, self.results, self.log_path, self.started)

    @property
    def failed(self) -> bool:
        return any(r.outcome == "failed" for r in self.results)


_results_lock = threading.Lock()
_current: contextvars.ContextVar[Session | None] = contextvars.ContextVar("osk8s_session", default=None)


def converge_steps(s: Session, steps: Iterable[Step]) -> list[Result]:
    """Converge each step in order; stop at the first failure (later steps build on it)."""
    done: list[Result] = []
    pending_change = any(r.outcome == "would-change" for r in s.results)  # earlier plans of this run too
    for step in steps:
        log = s.log.bind(step=step.name, node=step.node)
        t0 = time.monotonic()

        def record(outcome: str, detail: str, step: Step = step, t0: float = t0) -> Result:  # this iteration's step
            r = s.record(Result(s.task, step.name, step.node, outcome, time.monotonic() - t0, detail))
            done.append(r)
            return r

        try:
            try:
                status = step.check()
            except Exception as exc:
                fault = _as_peer_fault(exc)
                if fault is exc:
                    raise
                raise fault from exc
        except Exception as exc:
            if not isinstance(exc, StepFailed):  # a bug: the row names the step, the log keeps the traceback
                record("failed", f"internal error in check: {exc!r}")
                raise
            if s.dry_run and pending_change:
                log.info("step.would_change", reason=f"after the changes above: {exc}")
                record("would-change", f"after the changes above ({exc})")
                continue
            log.error("step.failed", reason=str(exc))
            record("failed", str(exc))
            raise
        if status.ok:
            log.info("step.ok", reason=status.reason)
            record("ok", status.reason)
            continue
        if s.dry_run:
            log.info("step.would_change", reason=status.reason, diff=status.diff or None)
            record("would-change", status.diff or status.reason)
            pending_change = True
            continue
        if step.apply is None:
            log.error("step.failed", reason=status.reason)
            record("failed", status.reason)
            raise StepFailed(status.reason)
        log.info("step.apply", reason=status.reason, diff=status.diff or None)
        try:
            if s.apply_slots is not None:
                with s.apply_slots:
                    step.apply()
            else:
                step.apply()
            after = (step.verify or step.check)()
        except StepFailed as exc:
            log.error("step.failed", reason=str(exc))
            record("failed", str(exc))
            raise
        except Exception as exc:
            fault = _as_peer_fault(exc)
            if isinstance(fault, StepFailed):
                log.error("step.failed", reason=str(fault))
                record("failed", str(fault))
                raise fault from exc
            record("failed", f"internal error in apply: {exc!r}")
            raise
        if not after.ok:
            msg = f"still not converged after apply: {after.reason}"
            log.error("step.failed", reason=msg)
            record("failed", msg)
            raise StepFailed(msg)
        log.info("step.applied", reason=after.reason)
        record("changed", status.diff or status.reason)
    return done


def _as_peer_fault(exc: Exception) -> Exception:
    """A peer's fault (a cloud API down, timing out, answering 5xx) as a StepFailed naming the
    service and the fix; anything else unchanged (a bug of the tool stays an internal error)."""
    if isinstance(exc, StepFailed):
        return exc
    message = faults.describe(exc)
    return StepFailed(message) if message else exc


def summary(s: Session) -> str:
    rows = [("STEP", "NODE", "RESULT", "SECONDS", "DETAIL")]
    for r in s.results:
        detail = r.detail if len(r.detail) <= 90 else r.detail[:87] + "..."
        rows.append((f"{r.task} {r.step}", r.node, r.outcome, f"{r.seconds:.2f}", detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(
            [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2]), row[3].rjust(widths[3]), row[4]]
        ).rstrip()
        for row in rows
    ]
    counts = {o: sum(r.outcome == o for r in s.results) for o in ("ok", "changed", "would-change", "failed")}
    total = time.monotonic() - s.started
    mode = " (dry run: nothing was changed)" if s.dry_run else ""
    tail = ", ".join(f"{n} {o}" for o, n in counts.items() if n or o in ("ok", "failed"))
    if not s.results:
        lines = ["(no steps ran)"]
    planned = [r for r in s.results if r.outcome == "would-change"]
    if planned:
        lines.append("would change:")
        for r in planned:
            body = r.detail.replace("\n", "\n      ")
            lines.append(f"  - {r.task} {r.step} [{r.node}]: {body}")
    lines.append(f"{s.task}: {tail} in {total:.1f} s{mode}")
    if s.log_path:
        lines.append(f"log: {s.log_path}")
    return log.redact("\n".join(lines))


def kind_refusal(task: str, kind: str) -> str | None:
    """host.* and devstack.* drive the lab VM and DevStack on it; an embedded lab has neither (its
    devstack.ssh_target is the gateway of the simulated nodes, a namespace of this very machine:
    devstack.prepare would install packages here)."""
    if kind == "embedded" and task.split(".")[0] in ("host", "devstack"):
        return (
            f"{task}: lab.kind is embedded, which has no lab VM and no DevStack (the loopback OpenStack "
            "stands for both). Fix: embedded.* and lab.* for this lab, or lab.kind full for host.* and devstack.*"
        )
    return None


@contextmanager
def session(
    c,
    task: str,
    dry_run: bool = False,
    log_json: str | None = None,
    overrides: dict | None = None,
    quiet: bool = False,
) -> Iterator[Session]:
    """Open (or join) a run: validate config before any side effect, set up logging, and at the
    end of the outermost run print the summary and exit non-zero on failure."""
    outer = _current.get()
    try:
        settings = config.load(c, overrides)
    except config.ConfigError as exc:
        if outer is not None:
            raise StepFailed(str(exc)) from None
        raise Exit(str(exc), code=2) from None

    if refused := kind_refusal(task, settings.lab.kind):
        if outer is not None:
            raise StepFailed(refused)
        raise Exit(refused, code=2)
    if outer is not None:
        child = outer.child(task, settings)
        child.dry_run = outer.dry_run or dry_run
        yield child
        return

    try:
        lab.register_known_secrets(settings)  # before anything can print: stack.sh's trace holds passwords
    except config.ConfigError as exc:
        raise Exit(str(exc), code=2) from None
    old_umask = os.umask(0o077)  # whatever this run writes locally is private from creation
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = settings.lab_dir / "logs" / f"{stamp}-{task}.jsonl"
    for own in (settings.lab_dir, log_path.parent):  # the lab's own directories: private even if an older run left them wide
        files.private_dir(own)
    log.setup(log_path, log_json or settings.log.json_)
    s = Session(task, dry_run, settings, log_path=log_path)
    token = _current.set(s)
    error: str | None = None
    try:
        s.log.info("task.start", dry_run=dry_run or None, lab=settings.lab.name)
        yield s
    except StepFailed as exc:
        error = str(exc)
    except KeyboardInterrupt:
        error = "interrupted"
    except Exit:
        raise
    except Exception as exc:  # a bug, not a user mistake: keep the traceback in the log file
        s.log.debug("task.traceback", traceback=traceback.format_exc())
        fault = _as_peer_fault(exc)
        error = str(fault) if isinstance(fault, StepFailed) else f"internal error: {exc!r} (traceback in {log_path})"
    finally:
        _current.reset(token)
        os.umask(old_umask)
    if error and not s.failed:
        s.results.append(Result(task, "(task)", "local", "failed", 0.0, error))
    s.log.info("task.end", failed=s.failed)
    log.close()
    if not quiet or s.failed:
        print(summary(s), flush=True)
    if s.failed:
        raise Exit(log.redact(f"{task} failed: {error or 'see the summary above'}"), code=1)


@dataclass
class Decision:
    """What a step would do to one object: `action` none | create | update | replace, why, the
    diff shown in a dry run, the object found, and whatever `act` needs from the read."""

    action: str
    reason: str
    diff: str = ""
    obj: Any = None
    data: dict = field(default_factory=dict)


def decision_step(
    name: str,
    read: Callable[[], Any],
    decide: Callable[[Any], Decision],
    act: Callable[[Decision], None],
    node: str = "local",
    after_act: Callable[[], None] | None = None,
) -> Step:
    """The general step: `read()` does the I/O and returns facts, `decide(facts)` is pure (no I/O:
    table-tested), `act(decision)` changes things. The check is decide(read()); the apply acts on a
    fresh decision (the world may have moved since the check); `after_act` drops caches."""

    def check() -> Status:
        d = decide(read())
        return Status(d.action == "none", d.reason, d.diff)

    def apply() -> None:
        act(decide(read()))
        if after_act is not None:
            after_act()

    return Step(name, check, apply, node=node)
