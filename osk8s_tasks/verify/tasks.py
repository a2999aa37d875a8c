"""`verify`: does the integration work end to end, and if not, why. Each check creates its test
objects (label osk8s.io/lab, namespace verify.namespace), asserts on the Kubernetes side and on
the OpenStack side, deletes them afterwards unless --keep, and the run ends with a table of
results; --junit / --json write reports; the exit code is 1 when any assertion failed."""

from __future__ import annotations

from invoke import Collection, task
from invoke.exceptions import Exit

from osk8s_tasks.core.help import COMMON_HELP

HELP = {
    **COMMON_HELP,
    "dry_run": "List the checks (those an embedded lab skips: 'would skip') and every object they would create; "
    "read the cluster for real, create nothing.",
    "keep": "Leave the test objects in place afterwards (inv verify.destroy removes them).",
    "junit": "Also write a JUnit XML report to this file (mode 0600).",
    "json": "Also write a JSON report to this file (mode 0600).",
}
CHECKS = ("lb", "pv", "ingress", "keystone")


def _task(name: str, doc: str):
    def body(c, keep=False, junit=None, json=None, dry_run=False, log_json=None):
        from osk8s_tasks.verify.run import run_checks

        run_checks(c, f"verify.{name}", [name], keep, junit, json, dry_run, log_json)

    body.__name__ = body.__qualname__ = name
    body.__doc__ = doc
    return task(name=name, help=HELP)(body)


lb = _task(
    "lb",
    """LoadBalancer Service -> Octavia LB, members, floating IP, HTTP; then a shared LB.

    An echo Deployment behind a LoadBalancer Service: Octavia LB ACTIVE with a listener
    on the Service port, the nodes as members on its NodePort, a floating IP on the VIP, and an HTTP
    answer from the devstack VM (else: the missing NodePort rule or member mismatch, named). Then a
    second Service shares that load balancer (loadbalancer.openstack.org/load-balancer-id).""",
)
pv = _task(
    "pv",
    """PVC -> Cinder volume in-use on the Pod's node, data kept, volume deleted after.

    A PVC without a class binds through the default (cinder CSI) StorageClass; the Cinder
    volume is in-use on the Pod's node; a file written by one Pod is read by the next; after cleanup
    the volume is deleted.""",
)
ingress = _task(
    "ingress",
    """Ingress with two paths through octavia-ingress-controller, checked over HTTP.

    octavia-ingress-controller and an Ingress routing /a and /b to two Services
    through one Octavia load balancer, checked in Octavia and over HTTP from the devstack VM.""",
)
keystone = _task(
    "keystone",
    """Keystone users on the cluster: k8s-keystone-auth set up, authn and authz checked.

    Deploy k8s-keystone-auth (serving cert from a lab CA the apiserver pins;
    token webhook + structured authorization Node,RBAC,Webhook), write a client-keystone-auth
    kubeconfig, then: TokenReview from the webhook, Forbidden before any binding, a RoleBinding to
    the project group, the Keystone viewer-role policy, revoked and garbage tokens rejected.""",
)


@task(
    name="all",
    help={
        **HELP,
        "checks": "Comma-separated subset, e.g. lb,pv (default: verify.checks).",
        "collect_on_failure": "When any assertion failed, write the lab.collect bundle and print its path.",
    },
)
def all_(c, checks=None, keep=False, junit=None, json=None, dry_run=False, log_json=None, collect_on_failure=False):
    """Every check in verify.checks (lb, pv, ingress, keystone), one table and report.

    Each check runs even when another failed; --junit / --json write one report for all."""
    chosen = [x.strip() for x in checks.split(",")] if checks else None
    unknown = [x for x in chosen or [] if x not in CHECKS]
    if unknown:
        raise Exit(f"--checks {','.join(unknown)}: not a check. Fix: choose from {', '.join(CHECKS)}", code=2)
    from osk8s_tasks.verify.run import run_checks

    run_checks(c, "verify.all", chosen, keep, junit, json, dry_run, log_json, collect_on_failure)


@task(help={"log_json": COMMON_HELP["log_json"]})
def status(c, log_json=None):
    """Test objects verify left behind (--keep) and their Octavia load balancers (read-only)."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.openstack import clouds as cloud
    from osk8s_tasks.verify import leftovers as verify_status
    from osk8s_tasks.verify.run import cluster_access

    with session(c, "verify.status", log_json=log_json, quiet=True) as s, cluster_access(s, False) as (api, _):
        print(verify_status.text(s, api, cloud.Clouds(s.settings)))


@task(help=COMMON_HELP)
def destroy(c, dry_run=False, log_json=None):
    """Remove what verify left behind: namespace, load balancers, volumes, keystone grants.

    What verify left (--keep, or an interrupted run): the verify namespace and with it the
    load balancers and volumes, the keystone RoleBinding and viewer role assignment. k8s-keystone-auth
    and octavia-ingress-controller stay (cluster.destroy removes them)."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.openstack import clouds as cloud
    from osk8s_tasks.verify import leftovers as verify_status
    from osk8s_tasks.verify.run import cluster_access

    with session(c, "verify.destroy", dry_run, log_json) as s, cluster_access(s, False) as (api, _):
        s.converge(verify_status.destroy_steps(s, api, cloud.Clouds(s.settings)))


ns = Collection("verify", lb, pv, ingress, keystone, all_, status, destroy)
