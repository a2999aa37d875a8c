"""`host`: the KVM host and the lab VM (vagrant + vagrant-libvirt), with libvirt snapshots.

Tasks call each other as plain functions; each converging task takes --dry-run. What they converge
is in host.steps, imported in the task bodies (so `inv --list` stays fast).
"""

from invoke import Collection, task
from invoke.exceptions import Exit

from osk8s_tasks.core.help import COMMON_HELP

UP_HELP = {
    **COMMON_HELP,
    "memory": "Lab VM memory in MiB (overrides host.memory).",
    "cpus": "Lab VM vCPUs (overrides host.cpus).",
    "driver": "kvm or qemu (TCG) (overrides host.driver).",
    "box": "Vagrant box name (overrides host.box).",
}


@task(
    help={
        "log_json": COMMON_HELP["log_json"],
        "install_plugin": "Allow `vagrant plugin install vagrant-libvirt` when it is missing.",
    }
)
def check(c, install_plugin=False, log_json=None):
    """Check the KVM host: /dev/kvm, CPU flags, nested virtualization, libvirt, vagrant, plugin,
    memory/CPUs/disk, box. Prints a table with the fix for each problem."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.host import check as host_check
    from osk8s_tasks.host import steps

    with session(
        c, "host.check", log_json=log_json, quiet=True, overrides={"host.install_plugin": install_plugin or None}
    ) as s:
        lab = steps.lab_of(s)
        rows = host_check.rows(lab)
        if install_plugin and any(r.name == "vagrant-libvirt plugin" and r.result == "fail" for r in rows):
            s.converge([steps.plugin_step(lab, s)])
            rows = host_check.rows(lab)
        print(host_check.table(rows))
        failed = [r.name for r in rows if r.result == "fail"]
        s.log.info("host.check", failed=failed or None)
        if failed:
            raise Exit(f"host.check: {len(failed)} prerequisite(s) not met: {', '.join(failed)}", code=1)


@task(help=UP_HELP)
def up(c, dry_run=False, log_json=None, memory=None, cpus=None, driver=None, box=None):
    """Create or start the lab VM, write its ssh_config with recorded host keys, check SSH."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.host import steps

    overrides = {"host.memory": memory, "host.cpus": cpus, "host.driver": driver, "host.box": box}
    with session(c, "host.up", dry_run, log_json, overrides) as s:
        steps.ensure_up(s)


@task(name="ssh-config", help=COMMON_HELP)
def ssh_config(c, dry_run=False, log_json=None):
    """Write the lab VM's ssh_config (used by Fabric and `ssh -F`) and record its host keys."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.host import steps

    with session(c, "host.ssh-config", dry_run, log_json) as s:
        lab = steps.lab_of(s)
        s.converge([steps.ssh_config_step(lab, s), steps.ssh_step(lab, s)])


@task(help={"command": "The command to run on the lab VM.", "log_json": COMMON_HELP["log_json"]})
def ssh(c, command, log_json=None):
    """Run a command on the lab VM over SSH (host key checked); exits with its exit code."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.host import steps

    with session(c, "host.ssh", log_json=log_json, quiet=True) as s:
        exited = steps.run_ssh(s, command)
    if exited:
        raise Exit(code=exited)


@task(help={"log_json": COMMON_HELP["log_json"]})
def status(c, log_json=None):
    """Show the lab VM: domain state, resources, address, SSH, snapshots (read-only)."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.host import steps

    with session(c, "host.status", log_json=log_json, quiet=True) as s:
        print(steps.status_text(s))


@task(help=COMMON_HELP)
def halt(c, dry_run=False, log_json=None):
    """Shut the lab VM down (kept on disk; `inv host.up` starts it again)."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.host import steps

    with session(c, "host.halt", dry_run, log_json) as s:
        s.converge(steps.halt_steps(s, steps.lab_of(s)))


@task(help=COMMON_HELP)
def destroy(c, dry_run=False, log_json=None):
    """Destroy the lab VM and its lab files (ssh_config, known_hosts, vagrant state); logs stay."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.host import steps

    with session(c, "host.destroy", dry_run, log_json) as s:
        s.converge(steps.destroy_steps(s, steps.lab_of(s)))


@task(help={**COMMON_HELP, "name": "Snapshot name.", "replace": "Take it again even if it exists."})
def snapshot(c, name, replace=False, dry_run=False, log_json=None):
    """Take a libvirt snapshot of the lab VM (e.g. right after a good stack.sh)."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.host import steps

    with session(c, "host.snapshot", dry_run, log_json) as s:
        s.converge([steps.snapshot_step(s, steps.lab_of(s), steps.snapshot_name(name), replace)])


@task(help={**COMMON_HELP, "name": "Snapshot to revert to."})
def restore(c, name, dry_run=False, log_json=None):
    """Revert the lab VM to a snapshot, then check SSH again."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.host import steps

    with session(c, "host.restore", dry_run, log_json) as s:
        steps.run_restore(s, name)


@task(help={"log_json": COMMON_HELP["log_json"]})
def snapshots(c, log_json=None):
    """List the lab VM's snapshots (read-only)."""
    from osk8s_tasks.core.engine import session
    from osk8s_tasks.host import steps

    with session(c, "host.snapshots", log_json=log_json, quiet=True) as s:
        print(steps.snapshots_text(s))


ns = Collection("host", check, up, ssh_config, ssh, status, halt, destroy, snapshot, restore, snapshots)
