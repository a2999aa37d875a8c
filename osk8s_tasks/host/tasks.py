"""`host`: the KVM host and the lab VM (vagrant + vagrant-libvirt), with libvirt snapshots.

Tasks call each other as plain functions; each converging task takes --dry-run.
"""

from __future__ import annotations

import re
import shutil
import time

from invoke import Collection, task
from invoke.exceptions import Exit

from osk8s_tasks.core.files import private_dir
from osk8s_tasks.core.engine import COMMON_HELP, Status, Step, StepFailed, session

UP_HELP = {
    **COMMON_HELP,
    "memory": "Lab VM memory in MiB (overrides host.memory).",
    "cpus": "Lab VM vCPUs (overrides host.cpus).",
    "driver": "kvm or qemu (TCG) (overrides host.driver).",
    "box": "Vagrant box name (overrides host.box).",
}
SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _lab(s):
    from osk8s_tasks.host.vagrant import Lab

    return Lab(s.settings)


def _overrides(memory=None, cpus=None, driver=None, box=None) -> dict:
    return {"host.memory": memory, "host.cpus": cpus, "host.driver": driver, "host.box": box}


# --- steps ---------------------------------------------------------------------------------------


def plugin_step(lab, s) -> Step:
    def check():
        plugins = lab.plugins()
        if "vagrant-libvirt" in plugins:
            return Status(True, f"vagrant-libvirt {plugins['vagrant-libvirt']} is installed")
        if not lab.host.install_plugin:
            raise StepFailed("the vagrant-libvirt plugin is missing. Fix: apt-get install vagrant-libvirt, "
                             "or set host.install_plugin: true to let the tool run `vagrant plugin install`")
        return Status(False, "vagrant-libvirt plugin missing", "vagrant plugin install vagrant-libvirt")

    return Step("vagrant-libvirt plugin", check, lambda: lab.run("plugin install", ["plugin", "install", "vagrant-libvirt"], s.log))


def box_step(lab, s) -> Step:
    from osk8s_tasks.host.facts import installed_box

    h = lab.host

    def check():
        found = installed_box(h.box, h.box_version)
        if found and "libvirt" in found[1]:
            return Status(True, f"box {h.box} {found[0]} (libvirt) is installed")
        if found:
            raise StepFailed(f"box {h.box} {found[0]} has no libvirt flavour. Fix: set host.box to a libvirt box")
        source = h.box_url or "Vagrant Cloud"
        return Status(False, f"box {h.box} is not installed", f"add box {h.box} from {source}")

    def apply():
        args = ["box", "add", "--provider", "libvirt", "--name", h.box, h.box_url] if h.box_url else \
            ["box", "add", "--provider", "libvirt", h.box] + (["--box-version", h.box_version] if h.box_version else [])
        lab.run("box add", args, s.log, progress=True)

    return Step(f"box {h.box}", check, apply)


def settings_step(lab) -> Step:
    def check():
        want = lab.rendered_settings()
        if lab.settings_file.exists() and lab.settings_file.read_text() == want:
            return Status(True, f"{lab.settings_file.name} matches the configuration")
        if not lab.settings_file.exists():
            return Status(False, "no settings file for the Vagrantfile yet", f"write {lab.settings_file}")
        import difflib

        diff = "".join(difflib.unified_diff(lab.settings_file.read_text().splitlines(True), want.splitlines(True), "current", "wanted"))
        return Status(False, "the Vagrantfile settings differ from the configuration", diff)

    def apply():
        private_dir(lab.dir)
        lab.settings_file.write_text(lab.rendered_settings())

    return Step("vagrant settings", check, apply)


def _drift(lab, f) -> list[str]:
    out = []
    if f.memory_mib != lab.host.memory:
        out.append(f"memory {f.memory_mib} -> {lab.host.memory} MiB")
    if f.vcpus != lab.host.cpus:
        out.append(f"vcpus {f.vcpus} -> {lab.host.cpus}")
    return out


def domain_step(lab, s) -> Step:
    h = lab.host

    def check():
        f = lab.facts()
        if f is None:
            return Status(False, "the lab VM does not exist",
                          f"create and boot {lab.name} from box {h.box}: {h.memory} MiB, {h.cpus} vCPU, "
                          f"driver {h.driver}, cpu_mode {h.cpu_mode}, nested {h.nested} (vagrant up)")
        if f.state != "running":
            return Status(False, f"the lab VM is {f.state}", f"start {f.name} (vagrant up)")
        drift = _drift(lab, f)
        if drift:
            return Status(False, "the lab VM runs with other resources than configured", "; ".join(drift) + " (vagrant reload)")
        return Status(True, f"domain {f.name} is running ({f.memory_mib} MiB, {f.vcpus} vCPU)")

    def apply():
        f = lab.facts()
        if f is not None and f.state == "running":
            lab.run("reload", ["reload", lab.name, "--no-provision"], s.log, progress=True)
        else:
            lab.run("up", ["up", lab.name, "--provider=libvirt", "--no-provision"], s.log, progress=True)

    return Step("lab VM running", check, apply)


def _require_running(lab):
    f = lab.facts()
    if f is None or f.state != "running":
        raise StepFailed(f"the lab VM is {'not created' if f is None else f.state}. Fix: inv host.up")
    return f


def ssh_config_step(lab, s) -> Step:
    from osk8s_tasks.core import ssh as remote

    def check():
        f = _require_running(lab)
        ip = lab.ip_address()
        if ip is None:
            return Status(False, "the lab VM has no DHCP lease yet", "wait for an address, then write ssh_config")
        cfg = remote.read_ssh_config(lab.ssh_config_path)
        if not cfg:
            return Status(False, "no ssh_config for the lab VM yet", f"write {lab.ssh_config_path} and record host keys of {ip}")
        header = lab.ssh_config_path.read_text().splitlines()[0]
        if f.uuid not in header:
            return Status(False, "the lab VM was recreated since the host keys were recorded",
                          f"re-record host keys of {ip} for domain {f.uuid}")
        if cfg.get("hostname") != ip:
            return Status(False, "the lab VM's address changed", f"HostName {cfg.get('hostname')} -> {ip}")
        if not remote.has_known_host(lab.known_hosts_path, ip, int(cfg.get("port", 22))):
            return Status(False, "the host keys of the lab VM are not recorded", f"record host keys of {ip}")
        return Status(True, f"{lab.ssh_config_path.name} points at {ip}, host keys recorded")

    def apply():
        f = _require_running(lab)
        raw = remote.parse_ssh_config(lab.vagrant().ssh_config(vm_name=lab.name))
        ip, port = raw["hostname"], int(raw.get("port", 22))
        keys = remote.keyscan(ip, port)
        remote.write_private(lab.known_hosts_path, "\n".join(keys) + "\n")
        remote.write_private(lab.ssh_config_path, "\n".join([
            f"# osk8s lab {lab.name}, domain {f.uuid}: written by `inv host.ssh-config`; host keys are checked",
            f"Host {lab.name}",
            f"  HostName {ip}",
            f"  User {raw.get('user', 'vagrant')}",
            f"  Port {port}",
            f"  IdentityFile {raw.get('identityfile', lab.private_key())}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {lab.known_hosts_path}",
            "  StrictHostKeyChecking yes",
            "  LogLevel ERROR",
            "",
        ]))

    return Step("ssh config", check, apply)


def ssh_step(lab, s) -> Step:
    from osk8s_tasks.core import ssh as remote

    def check():
        _require_running(lab)
        ok, detail = remote.probe(lab.ssh_config_path, lab.name)
        if not ok and "host key" in detail:
            raise StepFailed(detail)
        return Status(ok, detail, "" if ok else "wait for sshd on the lab VM")

    def apply():
        deadline = time.monotonic() + lab.host.boot_timeout
        while time.monotonic() < deadline:
            ok, detail = remote.probe(lab.ssh_config_path, lab.name)
            if ok:
                return
            s.log.info("ssh.wait", reason=detail)
            time.sleep(3)
        raise StepFailed(f"ssh to the lab VM did not answer within {lab.host.boot_timeout} s")

    return Step("ssh reachable", check, apply)


def ensure_up(s) -> None:
    lab = _lab(s)
    s.plan([plugin_step(lab, s), settings_step(lab), box_step(lab, s), domain_step(lab, s),
            ssh_config_step(lab, s), ssh_step(lab, s)])


# --- tasks ---------------------------------------------------------------------------------------


@task(help={"log_json": COMMON_HELP["log_json"], "install_plugin": "Allow `vagrant plugin install vagrant-libvirt` when it is missing."})
def check(c, install_plugin=False, log_json=None):
    """Check the KVM host: /dev/kvm, CPU flags, nested virtualization, libvirt, vagrant, plugin,
    memory/CPUs/disk, box. Prints a table with the fix for each problem."""
    from osk8s_tasks.host import check as host_check

    with session(c, "host.check", log_json=log_json, quiet=True, overrides={"host.install_plugin": install_plugin or None}) as s:
        lab = _lab(s)
        rows = host_check.rows(lab)
        if install_plugin and any(r.name == "vagrant-libvirt plugin" and r.result == "fail" for r in rows):
            s.plan([plugin_step(lab, s)])
            rows = host_check.rows(lab)
        print(host_check.table(rows))
        failed = [r.name for r in rows if r.result == "fail"]
        s.log.info("host.check", failed=failed or None)
        if failed:
            raise Exit(f"host.check: {len(failed)} prerequisite(s) not met: {', '.join(failed)}", code=1)


@task(help=UP_HELP)
def up(c, dry_run=False, log_json=None, memory=None, cpus=None, driver=None, box=None):
    """Create or start the lab VM, write its ssh_config with recorded host keys, check SSH."""
    with session(c, "host.up", dry_run, log_json, _overrides(memory, cpus, driver, box)) as s:
        ensure_up(s)


@task(name="ssh-config", help=COMMON_HELP)
def ssh_config(c, dry_run=False, log_json=None):
    """Write the lab VM's ssh_config (used by Fabric and `ssh -F`) and record its host keys."""
    with session(c, "host.ssh-config", dry_run, log_json) as s:
        lab = _lab(s)
        s.plan([ssh_config_step(lab, s), ssh_step(lab, s)])


@task(help={"command": "The command to run on the lab VM.", "log_json": COMMON_HELP["log_json"]})
def ssh(c, command, log_json=None):
    """Run a command on the lab VM over SSH (host key checked); exits with its exit code."""
    from osk8s_tasks.core import ssh as remote

    with session(c, "host.ssh", log_json=log_json, quiet=True) as s:
        lab = _lab(s)
        _require_running(lab)
        conn = remote.connect(lab.ssh_config_path, lab.name)
        s.log.info("ssh.run", command=command)
        try:
            result = conn.run(command, warn=True, in_stream=False)
        except Exception as exc:
            raise StepFailed(remote.describe_ssh_error(exc, lab.name)) from None
        finally:
            conn.close()
    if result.exited:
        raise Exit(code=result.exited)


@task(help={"log_json": COMMON_HELP["log_json"]})
def status(c, log_json=None):
    """Show the lab VM: domain state, resources, address, SSH, snapshots (read-only)."""
    from osk8s_tasks.core import ssh as remote

    with session(c, "host.status", log_json=log_json, quiet=True) as s:
        lab = _lab(s)
        f = lab.facts()
        rows = [("lab", lab.name), ("libvirt", lab.host.libvirt_uri)]
        if f is None:
            rows.append(("domain", "not created (inv host.up)"))
        else:
            rows += [("domain", f"{f.name} ({f.uuid})"), ("state", f.state),
                     ("resources", f"{f.memory_mib} MiB, {f.vcpus} vCPU"
                      + (f"  [drift: {'; '.join(_drift(lab, f))}]" if _drift(lab, f) else ""))]
            if f.state == "running":
                rows.append(("address", lab.ip_address() or "no lease yet"))
                rows.append(("ssh", remote.probe(lab.ssh_config_path, lab.name)[1]))
            snaps = lab.snapshots()
            rows.append(("snapshots", ", ".join(x["name"] + (" (current)" if x["current"] else "") for x in snaps) or "none"))
        rows.append(("ssh_config", str(lab.ssh_config_path) if lab.ssh_config_path.exists() else "not written"))
        width = max(len(k) for k, _ in rows)
        print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


@task(help=COMMON_HELP)
def halt(c, dry_run=False, log_json=None):
    """Shut the lab VM down (kept on disk; `inv host.up` starts it again)."""
    with session(c, "host.halt", dry_run, log_json) as s:
        lab = _lab(s)

        def check():
            f = lab.facts()
            if f is None:
                return Status(True, "the lab VM does not exist: nothing to halt")
            if f.state in ("shutoff", "shutdown"):
                return Status(True, f"the lab VM is already {f.state}")
            return Status(False, f"the lab VM is {f.state}", f"shut down {f.name} (vagrant halt)")

        s.plan([settings_step(lab), Step("lab VM stopped", check, lambda: lab.run("halt", ["halt", lab.name], s.log, progress=True))])


def _lab_files(lab) -> list:
    return [p for p in (lab.ssh_config_path, lab.known_hosts_path, lab.settings_file, lab.dotfile_dir) if p.exists()]


@task(help=COMMON_HELP)
def destroy(c, dry_run=False, log_json=None):
    """Destroy the lab VM and its lab files (ssh_config, known_hosts, vagrant state); logs stay."""
    with session(c, "host.destroy", dry_run, log_json) as s:
        lab = _lab(s)

        def check_vm():
            f = lab.facts()
            if f is None:
                return Status(True, "the lab VM does not exist: nothing to destroy")
            return Status(False, f"the lab VM exists ({f.state})", f"destroy domain {f.name} and its disks (vagrant destroy)")

        def destroy_vm():
            if not lab.settings_file.exists():  # the Vagrantfile needs them to find the machine
                settings_step(lab).apply()
            lab.run("destroy", ["destroy", "--force", lab.name], s.log, progress=True)

        def check_files():
            files = _lab_files(lab)
            if not files:
                return Status(True, "no lab files left")
            return Status(False, "lab files remain", "remove " + ", ".join(p.name for p in files))

        def remove_files():
            for p in _lab_files(lab):
                shutil.rmtree(p) if p.is_dir() else p.unlink()

        s.plan([Step("lab VM absent", check_vm, destroy_vm), Step("lab files removed", check_files, remove_files)])


def _snapshot_name(name: str) -> str:
    if not SNAPSHOT_NAME.match(name or ""):
        raise StepFailed(f"snapshot name {name!r} is not valid. Fix: use letters, digits, '.', '_' or '-' (at most 63)")
    return name


@task(help={**COMMON_HELP, "name": "Snapshot name.", "replace": "Take it again even if it exists."})
def snapshot(c, name, replace=False, dry_run=False, log_json=None):
    """Take a libvirt snapshot of the lab VM (e.g. right after a good stack.sh)."""
    with session(c, "host.snapshot", dry_run, log_json) as s:
        _snapshot_name(name)
        lab = _lab(s)
        before = {}

        def check():
            if lab.facts() is None:
                raise StepFailed("the lab VM does not exist. Fix: inv host.up")
            snap = next((x for x in lab.snapshots() if x["name"] == name), None)
            if snap and not replace:
                return Status(True, f"snapshot {name} exists (taken {snap['created']}); --replace takes it again")
            before["ts"] = snap["created_ts"] if snap else None
            what = f"replace snapshot {name} (taken {snap['created']})" if snap else f"take snapshot {name}"
            return Status(False, "replace requested" if snap else f"no snapshot {name} yet", what + " (vagrant snapshot save)")

        def verify():
            snap = next((x for x in lab.snapshots() if x["name"] == name), None)
            if snap is None:
                return Status(False, f"snapshot {name} is not listed by libvirt")
            if before.get("ts") is not None and snap["created_ts"] <= before["ts"] and replace:
                return Status(False, f"snapshot {name} was not replaced")
            return Status(True, f"snapshot {name} taken {snap['created']} ({snap['vm_state']})")

        args = ["snapshot", "save", *(["--force"] if replace else []), lab.name, name]
        s.plan([Step(f"snapshot {name}", check, lambda: lab.run("snapshot save", args, s.log, progress=True), verify)])


@task(help={**COMMON_HELP, "name": "Snapshot to revert to."})
def restore(c, name, dry_run=False, log_json=None):
    """Revert the lab VM to a snapshot, then check SSH again."""
    with session(c, "host.restore", dry_run, log_json) as s:
        _snapshot_name(name)
        lab = _lab(s)

        def check():
            if lab.facts() is None:
                raise StepFailed("the lab VM does not exist. Fix: inv host.up")
            snaps = lab.snapshots()
            snap = next((x for x in snaps if x["name"] == name), None)
            if snap is None:
                have = ", ".join(x["name"] for x in snaps) or "none"
                raise StepFailed(f"no snapshot {name!r} (snapshots: {have}). Fix: inv host.snapshots")
            return Status(False, "a restore always reverts: changes made since a snapshot cannot be detected",
                          f"revert {lab.name} to {name} (taken {snap['created']}, {snap['vm_state']})")

        def verify():
            current = next((x for x in lab.snapshots() if x["current"]), None)
            f = lab.facts()
            if current is None or current["name"] != name:
                return Status(False, f"current snapshot is {current and current['name']}, not {name}")
            return Status(True, f"reverted to {name}; the lab VM is {f.state if f else 'gone'}")

        args = ["snapshot", "restore", "--no-provision", lab.name, name]
        s.plan([Step(f"restore {name}", check, lambda: lab.run("snapshot restore", args, s.log, progress=True), verify)])
        if lab.facts() is not None and lab.facts().state == "running":
            s.plan([ssh_config_step(lab, s), ssh_step(lab, s)])


@task(help={"log_json": COMMON_HELP["log_json"]})
def snapshots(c, log_json=None):
    """List the lab VM's snapshots (read-only)."""
    with session(c, "host.snapshots", log_json=log_json, quiet=True) as s:
        snaps = _lab(s).snapshots()
        if not snaps:
            print("no snapshots (inv host.snapshot NAME)")
            return
        print(f"{'NAME':<20} {'CREATED':<20} {'VM STATE':<10} CURRENT")
        for x in snaps:
            print(f"{x['name']:<20} {x['created']:<20} {x['vm_state']:<10} {'*' if x['current'] else ''}")


ns = Collection("host", check, up, ssh_config, ssh, status, halt, destroy, snapshot, restore, snapshots)
