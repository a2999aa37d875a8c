"""How `openstack` converges a cloud for the lab: preflight first (bad input fails before any
write), then the lab's objects, then the servers; a session counts the API requests it made."""

from __future__ import annotations

from contextlib import contextmanager

from osk8s_tasks.core.engine import Step, session
from osk8s_tasks.openstack import clouds as cloud
from osk8s_tasks.openstack.images import image_step
from osk8s_tasks.openstack.preflight import preflight_steps
from osk8s_tasks.openstack.resources import app_credential_step, flavor_step, keypair_step, secgroup_step
from osk8s_tasks.openstack.servers import server_plan
from osk8s_tasks.openstack.teardown import status_text, teardown_steps


def prepare_steps(s, clouds) -> list[Step]:
    steps = [flavor_step(s, clouds), keypair_step(s, clouds), secgroup_step(s, clouds), image_step(s, clouds)]
    if s.settings.openstack.app_credential:
        steps.append(app_credential_step(s, clouds))
    return steps


def report_api(s, clouds) -> None:
    counts = clouds.api_counts()
    s.log.info(
        "openstack.api",
        requests=sum(c["requests"] for c in counts.values()),
        writes=sum(c["writes"] for c in counts.values()),
        clouds=counts,
    )
    s.log.debug("openstack.api.slowest", requests=clouds.slowest())


@contextmanager
def cloud_session(c, task_name: str, dry_run=False, log_json=None, quiet=False):
    """A run with the lab's clouds; the API request count is logged at its end."""
    with session(c, task_name, dry_run, log_json, quiet=quiet) as s:
        clouds = cloud.Clouds(s.settings)
        try:
            yield s, clouds
        finally:
            report_api(s, clouds)


def concurrently(s, steps: list[Step]) -> None:
    """Independent steps: all checks at once, applies bounded by openstack.boot_concurrency."""
    s.converge_nodes({step.name: [step] for step in steps}, s.settings.openstack.boot_concurrency)


def run_prepare(s, clouds) -> None:
    first, *rest = preflight_steps(s, clouds)
    s.converge([first])  # authenticate to the main cloud first: every other check uses it
    concurrently(s, rest)
    concurrently(s, prepare_steps(s, clouds))


def run_servers(s, clouds) -> None:
    s.converge_nodes(server_plan(s, clouds), s.settings.openstack.boot_concurrency)


def run_teardown(s, clouds) -> None:
    s.converge(preflight_steps(s, clouds)[:2])
    s.converge(teardown_steps(s, clouds))


__all__ = ["cloud_session", "run_prepare", "run_servers", "run_teardown", "status_text", "preflight_steps"]
