"""`embedded`: the machines of an embedded lab (lab.kind: embedded), all on this one: the
Kubernetes programs built from their Go modules, the loopback OpenStack control plane, and
simulated nodes (sshd hosts in network namespaces) behind a gateway. `lab.up` runs embedded.up in
place of host.up and devstack.deploy; these tasks are its parts, for a user who wants only them.
"""

from invoke import Collection, task
from invoke.exceptions import Exit

from osk8s_tasks.core.help import COMMON_HELP


def _embedded_only(s) -> None:
    if s.settings.lab.kind != "embedded":
        raise Exit(
            f"lab.kind is {s.settings.lab.kind!r}: the embedded tasks need lab.kind embedded. "
            "Fix: set lab.kind: embedded (examples/embedded-lab.yaml)",
            code=2,
        )


@task(help=COMMON_HELP)
def up(c, dry_run=False, log_json=None):
    """Build the Kubernetes programs (once), start the loopback OpenStack, start the simulated nodes."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.embedded import steps

    with session(c, "embedded.up", dry_run, log_json) as s:
        _embedded_only(s)
        s.converge(steps.up_steps(s))


@task(help=COMMON_HELP)
def addresses(c, dry_run=False, log_json=None):
    """Give each simulated node its Nova server's fixed IP (what the server's NIC holds)."""
    from osk8s_tasks.embedded import steps
    from osk8s_tasks.openstack.steps import cloud_session

    with cloud_session(c, "embedded.addresses", dry_run, log_json) as (s, clouds):
        _embedded_only(s)
        s.converge(steps.address_steps(s, clouds))


@task(help=COMMON_HELP)
def down(c, dry_run=False, log_json=None):
    """Stop the simulated nodes (every process in their namespaces, by PID) and the loopback
    OpenStack if embedded.up started it; remove the namespaces and the nodes' files."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.embedded import steps

    with session(c, "embedded.down", dry_run, log_json) as s:
        _embedded_only(s)
        s.converge(steps.down_steps(s))


@task(help={"log_json": COMMON_HELP["log_json"]})
def status(c, log_json=None):
    """What embedded.up would find: the programs, the loopback OpenStack, the simulated nodes (read-only)."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.embedded import steps

    with session(c, "embedded.status", log_json=log_json, quiet=True) as s:
        _embedded_only(s)
        for step in steps.up_steps(s):
            st = step.check()
            print(f"{step.name:22} {'ok' if st.ok else 'not ready':10} {st.reason}")


ns = Collection("embedded", up, addresses, down, status)
