"""The lab pipeline's stages, in order, what each runs, and the one-row-per-stage table lab.up
prints at the end (pure: no I/O, imported by lab.tasks at `inv --list` time for its help text)."""

from __future__ import annotations

from dataclasses import dataclass

STAGES = ("host", "devstack", "openstack", "cluster", "verify")
# lab.kind embedded: this machine stands in for the lab VM and DevStack (osk8s_tasks/embedded)
EMBEDDED_STAGES = ("embedded", "openstack", "cluster", "verify")
# what each stage runs, and what the stage before it must have done first (for a dry run on an
# empty machine: "after host.up: ...", never a failure)
PLAN = {
    "host": ("host.up", "the lab VM (vagrant-libvirt), its ssh_config and SSH"),
    "embedded": ("embedded.up", "Kubernetes programs built, the loopback OpenStack, simulated nodes"),
    "devstack": ("devstack.deploy", "prepare, fetch, patch, local.conf, stack.sh, clouds.yaml"),
    "openstack": ("openstack.deploy", "flavor, keypair, security group, image, app credential, servers, FIPs"),
    "cluster": ("cluster.deploy", "nodes' ssh_config, node packages, kubeadm init/join, CNI, add-ons"),
    "verify": ("verify.all", "lb, pv, ingress, keystone checks"),
}


def stages_of(kind: str) -> tuple[str, ...]:
    return EMBEDDED_STAGES if kind == "embedded" else STAGES


@dataclass
class StageRow:
    stage: str
    outcome: str  # ok | changed | would-change | failed | skipped | not run
    seconds: float
    detail: str


def outcome_of(rows: list) -> str:
    outcomes = {r.outcome for r in rows}
    for o in ("failed", "would-change", "changed"):
        if o in outcomes:
            return o
    return "ok"


def stage_table(rows: list[StageRow], total: float, dry_run: bool) -> str:
    lines = [("STAGE", "RESULT", "SECONDS", "DETAIL")] + [
        (r.stage, r.outcome, f"{r.seconds:.1f}", r.detail if len(r.detail) <= 100 else r.detail[:97] + "...") for r in rows
    ]
    w = [max(len(x[i]) for x in lines) for i in range(3)]
    out = [f"{a:<{w[0]}}  {b:<{w[1]}}  {c:>{w[2]}}  {d}".rstrip() for a, b, c, d in lines]
    outcomes = ("ok", "changed", "would-change", "skipped", "failed")
    counts = ", ".join(f"{sum(r.outcome == o for r in rows)} {o}" for o in outcomes if any(r.outcome == o for r in rows))
    out.append(f"lab.up: {counts or 'nothing run'} in {total:.1f} s{' (dry run: nothing was changed)' if dry_run else ''}")
    return "\n".join(out)


def verify_table(results: list) -> str:
    """One row per verify check from its assertion rows (node "cluster"): how many passed, failed
    and were skipped, and why (the first failure, else the skip reasons). "" when verify did not run."""
    checks: dict[str, list] = {}
    for r in results:
        if r.task.startswith("verify.") and r.task != "verify.all" and r.node == "cluster":
            checks.setdefault(r.task.removeprefix("verify."), []).append(r)
    if not checks:
        return ""
    lines = [("CHECK", "PASSED", "FAILED", "SKIPPED", "NOTE")]
    for check, rows in checks.items():
        n = {o: sum(r.outcome == o for r in rows) for o in ("ok", "failed", "skipped")}
        failed = [r for r in rows if r.outcome == "failed"]
        reasons = sorted({r.detail for r in rows if r.outcome == "skipped"})
        note = f"{failed[0].step}: {failed[0].detail}" if failed else "; ".join(f"skipped: {x}" for x in reasons)
        lines.append((check, str(n["ok"]), str(n["failed"]), str(n["skipped"]), note[:120]))
    w = [max(len(x[i]) for x in lines) for i in range(4)]
    return "\n".join(f"{a:<{w[0]}}  {b:>{w[1]}}  {c:>{w[2]}}  {d:>{w[3]}}  {e}".rstrip() for a, b, c, d, e in lines)
