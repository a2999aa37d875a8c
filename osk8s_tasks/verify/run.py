"""Running verify checks: the cluster API (and the control plane's SSH when a check needs it), each
chosen check in turn with its failures recorded as rows (one failing check does not stop the
others), a dry run that lists every object and assertion, and the reports at the end."""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager

from osk8s_tasks.cluster.nodes import connections
from osk8s_tasks.core import kube, lab
from osk8s_tasks.core.engine import StepFailed, session
from osk8s_tasks.lab import collect as lab_collect
from osk8s_tasks.openstack import clouds as cloud
from osk8s_tasks.verify import harness, ingress, reports
from osk8s_tasks.verify import lb as verify_lb
from osk8s_tasks.verify import pv as verify_pv
from osk8s_tasks.verify.keystone import check as verify_keystone
from osk8s_tasks.verify.keystone import deploy as keystone_deploy


@contextmanager
def cluster_access(s, need_master: bool):
    """(Api, the control plane's Remote or None): the API as cluster.addons reaches it."""
    if s.settings.cluster.api_server and not need_master:
        with kube.connect(s.settings) as api:
            yield api, None
        return
    master = lab.control_plane(s.settings)
    with connections(s, only=master) as remotes, kube.connect(s.settings, remotes[master]) as api:
        yield api, remotes[master]


# the assertions that need the data plane: a dry run of a lab without one says they would be skipped
DATA_PLANE = {"lb": verify_lb.DATA_PLANE, "pv": verify_pv.DATA_PLANE, "ingress": ingress.DATA_PLANE}


def objects_and_assertions(ctx, check: str) -> tuple[list[dict], list[str]]:
    """What a check would create and assert, listed by --dry-run."""
    if check == "lb":
        return verify_lb.lb_docs(ctx, "<id of echo's load balancer>"), verify_lb.LB_ASSERTIONS
    if check == "pv":
        return verify_pv.docs(ctx, True) + verify_pv.docs(ctx, False)[-1:], verify_pv.ASSERTIONS
    if check == "ingress":  # the controller's config Secret by name only: its content needs the app credential
        return ingress.controller_docs(ctx, content=False) + ingress.ingress_docs(ctx), ingress.ASSERTIONS
    rbac = ctx.render("manifests/verify/keystone-rbac.yaml.j2", project_id="<project id>", project_name="project")
    return keystone_deploy.manifests(ctx.settings, "", "") + rbac, verify_keystone.ASSERTIONS


def run_checks(c, task: str, checks, keep, junit, json_, dry_run, log_json, collect_on_failure=False) -> None:
    with session(c, task, dry_run, log_json) as s:
        checks = list(checks or s.settings.verify.checks)
        try:
            run_each(s, checks, bool(keep or s.settings.verify.keep))
        finally:
            if junit:
                reports.write_junit(junit, s.results, s.settings.lab.name)
            if json_:
                reports.write_json(json_, s.results, s.settings.lab.name)
        failed = [r for r in s.results if r.outcome == "failed"]
        if not s.dry_run:
            print(
                f"{task}: {len(failed)} of {sum(r.outcome in ('ok', 'failed') for r in s.results)} results failed"
                + (f" ({', '.join(r.step for r in failed)})" if failed else ""),
                flush=True,
            )
        if failed and collect_on_failure and not s.dry_run:
            print(f"{task}: diagnostics bundle {lab_collect.collect(s)}", flush=True)


def run_each(s, checks: list[str], keep: bool) -> None:
    runners = {
        "lb": verify_lb.run_lb,
        "pv": verify_pv.run_pv,
        "ingress": ingress.run_ingress,
        "keystone": lambda ctx: verify_keystone.run_keystone(ctx, master),
    }
    clouds, api, master, unreachable = cloud.Clouds(s.settings), None, None, ""
    with ExitStack() as stack:
        try:
            api, master = stack.enter_context(cluster_access(s, need_master="keystone" in checks))
            if s.dry_run:
                api.call("GET", "/version")  # a plan for a cluster that is not up yet still lists everything
        except StepFailed as exc:
            if not s.dry_run:
                raise
            unreachable = str(exc)
            s.log.warning(
                "verify.cluster_unreachable", reason=unreachable, then="listing the plan without reading the cluster"
            )
        for check in checks:
            ctx = harness.Ctx(s.child(f"verify.{check}", s.settings), api, clouds, keep)
            t0 = time.monotonic()
            s.log.info("verify.start", check=check, dry_run=s.dry_run or None)
            with harness.not_failing(ctx, "plan" if s.dry_run else "(check)"):
                if s.dry_run and check == "keystone" and not unreachable:
                    verify_keystone.plan_keystone(ctx, master)
                elif s.dry_run:
                    docs, assertions = objects_and_assertions(ctx, check)
                    harness.plan_rows(ctx, check, docs, assertions, unreachable, DATA_PLANE.get(check, ()))
                else:
                    runners[check](ctx)
            s.log.info("verify.end", check=check, seconds=round(time.monotonic() - t0, 1))
