"""`devstack`: prepare the VM, fetch and patch DevStack, render local.conf, run stack.sh with a
watchdog, and write clouds.yaml. DevStack's own vocabulary: prepare / fetch / patch / configure /
stack / unstack, composed by `devstack.deploy` as plain function calls. What they converge is in
devstack.steps and devstack.stack, imported in the task bodies (so `inv --list` stays fast)."""

from invoke import Collection, task

from osk8s_tasks.core.help import COMMON_HELP


@task(help=COMMON_HELP)
def prepare(c, dry_run=False, log_json=None):
    """IPv6 sysctls (persisted), required packages, /opt/stack owned by the stack user."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.devstack import steps

    with session(c, "devstack.prepare", dry_run, log_json) as s, steps.connected(s) as r:
        s.converge(steps.prepare_steps(s, r))


@task(help=COMMON_HELP)
def fetch(c, dry_run=False, log_json=None):
    """Clone or update the DevStack checkout to devstack.repo at devstack.branch."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.devstack import steps

    with session(c, "devstack.fetch", dry_run, log_json) as s, steps.connected(s) as r:
        s.converge([steps.fetch_step(s, r)])


@task(help=COMMON_HELP)
def patch(c, dry_run=False, log_json=None):
    """Apply the patches listed in devstack.patches (already applied: no-op)."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.devstack import steps

    with session(c, "devstack.patch", dry_run, log_json) as s, steps.connected(s) as r:
        s.converge(steps.patch_steps(s, r))


@task(help=COMMON_HELP)
def configure(c, dry_run=False, log_json=None):
    """Render local.conf (HOST_IP detected on the VM, passwords from the lab's secrets, mode 0600)."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.devstack import steps

    with session(c, "devstack.configure", dry_run, log_json) as s, steps.connected(s) as r:
        s.converge([steps.configure_step(s, r)])


@task(help={**COMMON_HELP, "force": "Run unstack.sh and clean.sh first, then stack again (also after a failed stack)."})
def stack(c, force=False, dry_run=False, log_json=None):
    """Run stack.sh detached (survives SSH drops), follow its phases, restart hung services; then
    write clouds.yaml. A completed stack is left alone; re-running reattaches to a running one."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.devstack import stack as devstack_stack
    from osk8s_tasks.devstack import steps

    with session(c, "devstack.stack", dry_run, log_json) as s, steps.connected(s) as r:
        devstack_stack.run_stack(s, r, force)


@task(help={**COMMON_HELP, "force": "Passed to devstack.stack."})
def deploy(c, force=False, dry_run=False, log_json=None):
    """prepare -> fetch -> patch -> configure -> stack: an all-in-one OpenStack on the lab VM."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.devstack import stack as devstack_stack
    from osk8s_tasks.devstack import steps

    with session(c, "devstack.deploy", dry_run, log_json) as s, steps.connected(s) as r:
        devstack_stack.run_deploy(s, r, force)


@task(help={"log_json": COMMON_HELP["log_json"]})
def status(c, log_json=None):
    """DevStack on the VM: checkout, stack state and phase, devstack@ units, API endpoints."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.devstack import stack as devstack_stack
    from osk8s_tasks.devstack import steps

    with session(c, "devstack.status", log_json=log_json, quiet=True) as s, steps.connected(s) as r:
        print(devstack_stack.status_text(s, r))


@task(
    help={"output": "Tarball to write (default .osk8s/<lab>/devstack-logs-<time>.tgz).", "log_json": COMMON_HELP["log_json"]}
)
def logs(c, output=None, log_json=None):
    """Collect the journal of every devstack@ unit and the stack logs into a local tarball (0600)."""
    import time
    from pathlib import Path

    from osk8s_tasks.core.engine import session
    from osk8s_tasks.devstack import stack as devstack_stack
    from osk8s_tasks.devstack import steps

    with session(c, "devstack.logs", log_json=log_json, quiet=True) as s, steps.connected(s) as r:
        out = Path(output or s.settings.lab_dir / f"devstack-logs-{time.strftime('%Y%m%d-%H%M%S')}.tgz")
        print(devstack_stack.collect_logs(s, r, out))


@task(help=COMMON_HELP)
def unstack(c, dry_run=False, log_json=None):
    """Stop every devstack@ service (unstack.sh); the next devstack.stack stacks again."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.devstack import stack as devstack_stack
    from osk8s_tasks.devstack import steps

    with session(c, "devstack.unstack", dry_run, log_json) as s, steps.connected(s) as r:
        s.converge([devstack_stack.unstack_step(s, r)])


ns = Collection("devstack", prepare, fetch, patch, configure, stack, deploy, status, logs, unstack)
