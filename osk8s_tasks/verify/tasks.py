"""`verify`: does the integration work end to end, and if not, why. Each check creates its test
objects (label osk8s.io/lab, namespace verify.namespace), asserts on the Kubernetes side and on
the OpenStack side, deletes them afterwards unless --keep, and the run ends with a table of
results; --junit / --json write reports; the exit code is 1 when any assertion failed."""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager

from invoke import Collection, task

from osk8s_tasks.core.engine import COMMON_HELP, Status, Step, StepFailed, session

HELP = {
    **COMMON_HELP,
    "dry_run": "List the checks and every object they would create; read the cluster for real, create nothing.",
    "keep": "Leave the test objects in place afterwards (inv verify.destroy removes them).",
    "junit": "Also write a JUnit XML report to this file (mode 0600).",
    "json": "Also write a JSON report to this file (mode 0600).",
}
CHECKS = ("lb", "pv", "ingress", "keystone")


def _master(settings) -> str:
    from osk8s_tasks.cluster.nodes import node_names

    return next(n for n, role in node_names(settings).items() if role == "control-plane")


@contextmanager
def cluster_access(s, need_master: bool):
    """(Api, the control plane's Remote or None): the API as cluster.addons reaches it."""
    from osk8s_tasks.core import kube
    from osk8s_tasks.cluster.nodes import connections

    if s.settings.cluster.api_server and not need_master:
        with kube.connect(s.settings) as api:
            yield api, None
        return
    master = _master(s.settings)
    with connections(s, only=master) as remotes, kube.connect(s.settings, remotes[master]) as api:
        yield api, remotes[master]


def plan_of(ctx, check: str) -> tuple[list[dict], list[str]]:
    """(objects, assertions) of a check, for --dry-run."""
    from osk8s_tasks.verify.keystone import deploy as keystone_deploy
    from osk8s_tasks.verify.keystone import check as verify_keystone
    from osk8s_tasks.verify import lb as verify_lb
    from osk8s_tasks.verify import pv as verify_pv

    if check == "lb":
        return verify_lb.lb_docs(ctx, "<id of echo's load balancer>"), verify_lb.LB_ASSERTIONS
    if check == "pv":
        return verify_pv.docs(ctx, True) + verify_pv.docs(ctx, False)[-1:], verify_pv.ASSERTIONS
    if check == "ingress":  # the controller's config Secret by name only: its content needs the app credential
        return verify_lb.controller_docs(ctx, content=False) + verify_lb.ingress_docs(ctx), verify_lb.INGRESS_ASSERTIONS
    rbac = ctx.render("manifests/verify/keystone-rbac.yaml.j2", project_id="<project id>", project_name="project")
    return keystone_deploy.manifests(ctx.settings, "", "") + rbac, verify_keystone.ASSERTIONS


def run_checks(c, task: str, checks, keep, junit, json_, dry_run, log_json, collect_on_failure=False) -> None:
    from osk8s_tasks.verify import harness as verify_run

    with session(c, task, dry_run, log_json) as s:
        checks = list(checks or s.settings.verify.checks)
        try:
            _run(s, checks, bool(keep or s.settings.verify.keep))
        finally:
            if junit:
                verify_run.write_junit(junit, s.results, s.settings.lab.name)
            if json_:
                verify_run.write_json(json_, s.results, s.settings.lab.name)
        failed = [r for r in s.results if r.outcome == "failed"]
        if not s.dry_run:
            print(f"{task}: {len(failed)} of {sum(r.outcome in ('ok', 'failed') for r in s.results)} results failed"
                  + (f" ({', '.join(r.step for r in failed)})" if failed else ""), flush=True)
        if failed and collect_on_failure and not s.dry_run:
            from osk8s_tasks.lab import collect as lab_collect

            print(f"{task}: diagnostics bundle {lab_collect.collect(s)}", flush=True)


def _run(s, checks: list[str], keep: bool) -> None:
    from osk8s_tasks.openstack import clouds as cloud
    from osk8s_tasks.verify.keystone import check as verify_keystone
    from osk8s_tasks.verify import lb as verify_lb
    from osk8s_tasks.verify import pv as verify_pv
    from osk8s_tasks.verify import harness as verify_run

    runners = {"lb": verify_lb.run_lb, "pv": verify_pv.run_pv, "ingress": verify_lb.run_ingress,
               "keystone": lambda ctx: verify_keystone.run_keystone(ctx, master)}
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
            s.log.warning("verify.cluster_unreachable", reason=unreachable, then="listing the plan without reading the cluster")
        for check in checks:
            ctx = verify_run.Ctx(s.child(f"verify.{check}", s.settings), api, clouds, keep)
            t0 = time.monotonic()
            s.log.info("verify.start", check=check, dry_run=s.dry_run or None)
            with verify_run.not_failing(ctx, "plan" if s.dry_run else "(check)"):
                if s.dry_run and check == "keystone" and not unreachable:
                    verify_keystone.plan_keystone(ctx, master)
                elif s.dry_run:
                    verify_run.plan_rows(ctx, check, *plan_of(ctx, check), unreachable=unreachable)
                else:
                    runners[check](ctx)
            s.log.info("verify.end", check=check, seconds=round(time.monotonic() - t0, 1))


def _task(name: str, doc: str):
    def body(c, keep=False, junit=None, json=None, dry_run=False, log_json=None):
        run_checks(c, f"verify.{name}", [name], keep, junit, json, dry_run, log_json)

    body.__name__ = body.__qualname__ = name
    body.__doc__ = doc
    return task(name=name, help=HELP)(body)


lb = _task("lb", """LoadBalancer Service -> Octavia LB, members, floating IP, HTTP; then a shared LB.

    An echo Deployment behind a LoadBalancer Service: Octavia LB ACTIVE with a listener
    on the Service port, the nodes as members on its NodePort, a floating IP on the VIP, and an HTTP
    answer from the devstack VM (else: the missing NodePort rule or member mismatch, named). Then a
    second Service shares that load balancer (loadbalancer.openstack.org/load-balancer-id).""")
pv = _task("pv", """PVC -> Cinder volume in-use on the Pod's node, data kept, volume deleted after.

    A PVC without a class binds through the default (cinder CSI) StorageClass; the Cinder
    volume is in-use on the Pod's node; a file written by one Pod is read by the next; after cleanup
    the volume is deleted.""")
ingress = _task("ingress", """Ingress with two paths through octavia-ingress-controller, checked over HTTP.

    octavia-ingress-controller and an Ingress routing /a and /b to two Services
    through one Octavia load balancer, checked in Octavia and over HTTP from the devstack VM.""")
keystone = _task("keystone", """Keystone users on the cluster: k8s-keystone-auth set up, authn and authz checked.

    Deploy k8s-keystone-auth (serving cert from a lab CA the apiserver pins;
    token webhook + structured authorization Node,RBAC,Webhook), write a client-keystone-auth
    kubeconfig, then: TokenReview from the webhook, Forbidden before any binding, a RoleBinding to
    the project group, the Keystone viewer-role policy, revoked and garbage tokens rejected.""")


@task(name="all", help={**HELP, "checks": "Comma-separated subset, e.g. lb,pv (default: verify.checks).",
                         "collect_on_failure": "When any assertion failed, write the lab.collect bundle and print its path."})
def all_(c, checks=None, keep=False, junit=None, json=None, dry_run=False, log_json=None, collect_on_failure=False):
    """Every check in verify.checks (lb, pv, ingress, keystone), one table and report.

    Each check runs even when another failed; --junit / --json write one report for all."""
    chosen = [x.strip() for x in checks.split(",")] if checks else None
    unknown = [x for x in chosen or [] if x not in CHECKS]
    if unknown:
        from invoke.exceptions import Exit

        raise Exit(f"--checks {','.join(unknown)}: not a check. Fix: choose from {', '.join(CHECKS)}", code=2)
    run_checks(c, "verify.all", chosen, keep, junit, json, dry_run, log_json, collect_on_failure)


@task(help={"log_json": COMMON_HELP["log_json"]})
def status(c, log_json=None):
    """Test objects verify left behind (--keep) and their Octavia load balancers (read-only)."""
    from osk8s_tasks.openstack import clouds as cloud
    from osk8s_tasks.verify import leftovers as verify_status

    with session(c, "verify.status", log_json=log_json, quiet=True) as s, cluster_access(s, False) as (api, _):
        print(verify_status.text(s, api, cloud.Clouds(s.settings)))


@task(help=COMMON_HELP)
def destroy(c, dry_run=False, log_json=None):
    """Remove what verify left behind: namespace, load balancers, volumes, keystone grants.

    What verify left (--keep, or an interrupted run): the verify namespace and with it the
    load balancers and volumes, the keystone RoleBinding and viewer role assignment. k8s-keystone-auth
    and octavia-ingress-controller stay (cluster.destroy removes them)."""
    from osk8s_tasks.openstack import clouds as cloud
    from osk8s_tasks.verify import leftovers as verify_status

    with session(c, "verify.destroy", dry_run, log_json) as s, cluster_access(s, False) as (api, _):
        s.plan(verify_status.destroy_steps(s, api, cloud.Clouds(s.settings)))


ns = Collection("verify", lb, pv, ingress, keystone, all_, status, destroy)
__all__ = ["ns", "Status", "Step"]
