"""`lab`: the whole pipeline as one converging task, its teardown, one status table, and one
diagnostics bundle (lab_collect). Every stage stays its own namespace's task; `lab.*` calls them
as plain functions in one session, so a stage whose facts say it is done passes in seconds and a
re-run after a failure resumes where it stopped.

    host -> devstack -> openstack -> cluster -> verify
"""

from __future__ import annotations

import time

from invoke import Collection, task
from invoke.exceptions import Exit

from osk8s_tasks.core.help import COMMON_HELP
from osk8s_tasks.lab.stages import (
    EMBEDDED_STAGES,
    PLAN,
    STAGES,
    StageRow,
    outcome_of,
    stage_table,
    stages_of,
    verify_table,
)


def selected(start: str | None, until: str | None, stages: tuple[str, ...] = STAGES) -> list[str]:
    """The stages from `start` to `until` (both included), in pipeline order; bad names exit 2."""
    for flag, value in (("--from", start), ("--until", until)):
        if value is not None and value not in stages:
            other = EMBEDDED_STAGES if stages == STAGES else STAGES
            why = " (a stage of the other lab.kind)" if value in other else ""
            raise Exit(f"lab.up {flag} {value!r}: not a stage{why}. Fix: one of {', '.join(stages)}", code=2)
    first = stages.index(start) if start else 0
    last = stages.index(until) if until else len(stages) - 1
    if first > last:
        raise Exit(f"lab.up --from {start} comes after --until {until}. Fix: --from an earlier stage", code=2)
    return list(stages[first : last + 1])


def _run(c, stage: str, dry_run: bool, embedded_lab: bool = False) -> None:
    """One stage, through its own namespace's task functions (they join this session)."""
    from osk8s_tasks.cluster import tasks as cluster
    from osk8s_tasks.devstack import tasks as devstack
    from osk8s_tasks.embedded import tasks as embedded
    from osk8s_tasks.host import tasks as host
    from osk8s_tasks.openstack import tasks as openstack
    from osk8s_tasks.verify import tasks as verify

    if stage == "host":
        host.up(c, dry_run=dry_run)
    elif stage == "embedded":
        embedded.up(c, dry_run=dry_run)
    elif stage == "devstack":
        devstack.deploy(c, dry_run=dry_run)
    elif stage == "openstack":
        openstack.deploy(c, dry_run=dry_run)
    elif stage == "cluster":
        if embedded_lab:  # the simulated nodes take their servers' fixed IPs first, as the servers' NICs have them
            embedded.addresses(c, dry_run=dry_run)
        cluster.ssh_config(c, dry_run=dry_run)
        cluster.deploy(c, dry_run=dry_run)
    elif stage == "verify":
        verify.all_(c, dry_run=dry_run)


def run_up(c, s, stages: list[str]) -> list[StageRow]:
    from osk8s_tasks.core.engine import Result, StepFailed

    rows: list[StageRow] = []
    blocked = ""
    for stage in stages:
        task_name, what = PLAN[stage]
        if blocked:
            rows.append(StageRow(stage, "not run", 0.0, f"after {blocked} failed"))
            continue
        if stage == "host" and s.settings.devstack.ssh_target:
            reason = f"devstack.ssh_target {s.settings.devstack.ssh_target}: the DevStack host is not a VM of this tool"
            s.record(Result("lab.up", task_name, "local", "skipped", 0.0, reason))
            rows.append(StageRow(stage, "skipped", 0.0, reason))
            continue
        t0, before = time.monotonic(), len(s.results)
        pending = any(r.outcome == "would-change" for r in s.results)
        try:
            _run(c, stage, s.dry_run, s.settings.lab.kind == "embedded")
        except StepFailed as exc:
            if s.dry_run and pending and rows:  # its prerequisites are what the stages above would make
                prev = PLAN[rows[-1].stage][0]
                s.record(Result("lab.up", task_name, "local", "would-change", 0.0, f"after {prev}: {what}"))
                s.log.info("lab.after", stage=stage, after=prev, reason=str(exc))
                rows.append(StageRow(stage, "would-change", time.monotonic() - t0, f"after {prev}: {what}"))
                continue
            rows.append(StageRow(stage, "failed", time.monotonic() - t0, str(exc)))
            blocked = task_name
            continue
        mine = s.results[before:]
        counts = {o: sum(r.outcome == o for r in mine) for o in ("ok", "changed", "would-change", "failed")}
        detail = ", ".join(f"{n} {o}" for o, n in counts.items() if n) or "nothing to do"
        rows.append(StageRow(stage, outcome_of(mine), time.monotonic() - t0, f"{task_name}: {detail}"))
        if counts["failed"]:
            blocked = task_name
    return rows


UP_HELP = {
    **COMMON_HELP,
    "from_": f"First stage to run (one of {', '.join(STAGES)}; with lab.kind embedded: {', '.join(EMBEDDED_STAGES)}). "
    "Past stages are not checked.",
    "until": "Last stage to run (e.g. cluster stops before verify).",
}


@task(help=UP_HELP, auto_shortflags=False)
def up(c, from_=None, until=None, dry_run=False, log_json=None):
    """The whole lab in one command: host -> devstack -> openstack -> cluster -> verify
    (lab.kind embedded: embedded -> openstack -> cluster -> verify, all on this machine).

    Each stage is its namespace's own task, in one session: a stage already done passes in
    seconds, so a re-run after a failure resumes where it stopped. One row per stage at the end.
    --dry-run on an empty machine lists every stage; one whose prerequisites a stage above would
    make shows as "after <that task>"."""
    from osk8s_tasks.core.engine import StepFailed, session
    from osk8s_tasks.core.log import redact

    t0 = time.monotonic()
    rows: list[StageRow] = []
    results: list = []
    try:
        with session(c, "lab.up", dry_run, log_json) as s:
            results = s.results
            stages = selected(from_, until, stages_of(s.settings.lab.kind))
            rows = run_up(c, s, stages)
            if any(r.outcome == "failed" for r in rows):
                failed = next(r for r in rows if r.outcome == "failed")
                raise StepFailed(f"stage {failed.stage}: {failed.detail}")
    finally:
        if rows:
            checks = "" if dry_run else verify_table(results)
            print(redact(stage_table(rows, time.monotonic() - t0, bool(dry_run))), flush=True)
            if checks:
                print("\n" + redact(checks), flush=True)


DOWN_HELP = {
    **COMMON_HELP,
    "keep_host": "Keep the lab VM and DevStack on it (embedded: the loopback OpenStack and the simulated nodes): "
    "tear down only the cloud objects and the cluster.",
}


@task(help=DOWN_HELP)
def down(c, keep_host=False, dry_run=False, log_json=None):
    """Take the lab apart: verify.destroy -> cluster.destroy -> openstack.teardown -> host.destroy
    (lab.kind embedded: embedded.down in place of host.destroy).

    Each part is its namespace's own task; a part with nothing left passes. openstack.teardown
    ends with the orphan report: every service asked for objects that still carry the lab tag."""
    from osk8s_tasks.cluster import tasks as cluster
    from osk8s_tasks.core.engine import Result, StepFailed, session
    from osk8s_tasks.embedded import tasks as embedded
    from osk8s_tasks.host import tasks as host
    from osk8s_tasks.openstack import tasks as openstack
    from osk8s_tasks.verify import tasks as verify

    with session(c, "lab.down", dry_run, log_json) as s:
        parts = [
            ("verify.destroy", verify.destroy),
            ("cluster.destroy", cluster.destroy),
            ("openstack.teardown", openstack.teardown),
        ]
        if keep_host:
            pass
        elif s.settings.lab.kind == "embedded":
            parts.append(("embedded.down", embedded.down))
        elif not s.settings.devstack.ssh_target:
            parts.append(("host.destroy", host.destroy))
        for name, fn in parts:
            if name == "openstack.teardown" and s.settings.lab.kind == "embedded" and not _cloud_runs():
                reason = "the loopback OpenStack is not running: nothing to ask, and its next start begins empty"
                s.record(Result("lab.down", name, "local", "ok", 0.0, reason))
                continue
            try:
                fn(c, dry_run=dry_run)
            except StepFailed as exc:
                if name in ("verify.destroy", "cluster.destroy") and _unreachable(exc):
                    # no cluster left to ask: its cloud objects are still found by tag below
                    s.record(Result("lab.down", name, "local", "ok", 0.0, f"no cluster to reach ({exc})"))
                    continue
                raise


def _cloud_runs() -> bool:
    from osk8s_tasks.embedded.steps import cloud_services

    return any(st == "running" for st, _ in cloud_services().values())


def _unreachable(exc: Exception) -> bool:
    text = str(exc)
    return any(w in text for w in ("no admin kubeconfig", "no ssh_config", "Kubernetes API unreachable"))


@task(help={"log_json": COMMON_HELP["log_json"]})
def status(c, log_json=None):
    """One table across the namespaces: the VM, DevStack, the cloud objects, the cluster, verify's
    leftovers (read-only; a part that cannot be reached says why)."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.lab import status as lab_status

    with session(c, "lab.status", log_json=log_json, quiet=True) as s:
        print(lab_status.table(lab_status.rows(s)))


@task(help={"output": "Bundle to write (default .osk8s/<lab>/collect-<time>.tar.gz).", "log_json": COMMON_HELP["log_json"]})
def collect(c, output=None, log_json=None):
    """One diagnostics bundle (tar.gz, 0600, secrets masked) with an index: DevStack journals and
    logs, Octavia status trees, Cinder volumes, server consoles, cluster objects and events,
    controller pod logs, node journals. A part that cannot be read is one line in the index."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.lab import collect as lab_collect

    with session(c, "lab.collect", log_json=log_json, quiet=True) as s:
        path = lab_collect.collect(s, output)
    print(f"lab.collect: {path}")


ns = Collection("lab", up, down, status, collect)
