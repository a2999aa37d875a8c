"""`openstack`: make a cloud ready for a Kubernetes cluster, idempotently (openstacksdk).

One decision function per resource kind (find -> create / update with a computed diff / nothing),
used by both the check (and so --dry-run) and the apply, as openstack.cloud's resource module
does. Every object the lab creates carries the `<lab>-` name prefix and the tag `osk8s:<lab>`.
Read-only preflight checks run first, so bad input fails before the first write.
"""

from invoke import Collection, task

from osk8s_tasks.core.help import COMMON_HELP


@task(help=COMMON_HELP)
def prepare(c, dry_run=False, log_json=None):
    """Flavor, keypair, security group (incl. the NodePort range), node image, application credential."""
    from osk8s_tasks.openstack import steps

    with steps.cloud_session(c, "openstack.prepare", dry_run, log_json) as (s, clouds):
        steps.run_prepare(s, clouds)


@task(help=COMMON_HELP)
def servers(c, dry_run=False, log_json=None):
    """The Kubernetes node servers (cluster.nodes), ACTIVE, with keypair, security group and floating IPs."""
    from osk8s_tasks.openstack import steps

    with steps.cloud_session(c, "openstack.servers", dry_run, log_json) as (s, clouds):
        s.converge(steps.preflight_steps(s, clouds)[:3])
        steps.run_servers(s, clouds)


@task(help=COMMON_HELP)
def deploy(c, dry_run=False, log_json=None):
    """prepare -> servers, in one authenticated session: the cloud side of the lab."""
    from osk8s_tasks.openstack import steps

    with steps.cloud_session(c, "openstack.deploy", dry_run, log_json) as (s, clouds):
        steps.run_prepare(s, clouds)
        steps.run_servers(s, clouds)


@task(help=COMMON_HELP)
def teardown(c, dry_run=False, log_json=None):
    """Delete everything the lab owns, in dependency order (cluster LBs and volumes first), then
    report any object still carrying the lab tag as an orphan."""
    from osk8s_tasks.openstack import steps

    with steps.cloud_session(c, "openstack.teardown", dry_run, log_json) as (s, clouds):
        steps.run_teardown(s, clouds)


@task(help={"log_json": COMMON_HELP["log_json"]})
def status(c, log_json=None):
    """Everything the lab owns in the cloud, by service (read-only)."""
    from osk8s_tasks.openstack import steps

    with steps.cloud_session(c, "openstack.status", log_json=log_json, quiet=True) as (s, clouds):
        print(steps.status_text(s, clouds))


ns = Collection("openstack", prepare, servers, deploy, teardown, status)
