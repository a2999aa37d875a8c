"""What `host` converges: the vagrant-libvirt plugin, the Vagrantfile's settings, the box, the lab
VM running with its resources, its ssh_config with recorded host keys, SSH; and halt, destroy,
snapshots. Facts come from libvirt (host.vagrant), actions go through vagrant."""

from __future__ import annotations

import difflib
import re
import shutil

from osk8s_tasks.core import ssh as remote
from osk8s_tasks.core.engine import Status, Step, StepFailed
from osk8s_tasks.core.files import private_dir, write_private
from osk8s_tasks.core.wait import until
from osk8s_tasks.host.facts import installed_box
from osk8s_tasks.host.vagrant import Lab

SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def lab_of(s) -> Lab:
    return Lab(s.settings)


def plugin_step(lab, s) -> Step:
    def check():
        plugins = lab.plugins()
        if "vagrant-libvirt" in plugins:
            return Status(True, f"vagrant-libvirt {plugins['vagrant-libvirt']} is installed")
        if not lab.host.install_plugin:
            raise StepFailed(
                "the vagrant-libvirt plugin is missing. Fix: apt-get install vagrant-libvirt, "
                "or set host.install_plugin: true to let the tool run `vagrant plugin install`"
            )
        return Status(False, "vagrant-libvirt plugin missing", "vagrant plugin install vagrant-libvirt")

    return Step(
        "vagrant-libvirt plugin", check, lambda: lab.run("plugin install", ["plugin", "install", "vagrant-libvirt"], s.log)
    )


def box_step(lab, s) -> Step:
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
        args = (
            ["box", "add", "--provider", "libvirt", "--name", h.box, h.box_url]
            if h.box_url
            else ["box", "add", "--provider", "libvirt", h.box] + (["--box-version", h.box_version] if h.box_version else [])
        )
        lab.run("box add", args, s.log, progress=True)

    return Step(f"box {h.box}", check, apply)


def settings_step(lab) -> Step:
    def check():
        want = lab.rendered_settings()
        if lab.settings_file.exists() and lab.settings_file.read_text() == want:
            return Status(True, f"{lab.settings_file.name} matches the configuration")
        if not lab.settings_file.exists():
            return Status(False, "no settings file for the Vagrantfile yet", f"write {lab.settings_file}")
        diff = "".join(
            difflib.unified_diff(lab.settings_file.read_text().splitlines(True), want.splitlines(True), "current", "wanted")
        )
        return Status(False, "the Vagrantfile settings differ from the configuration", diff)

    def apply():
        private_dir(lab.dir)
        lab.settings_file.write_text(lab.rendered_settings())

    return Step("vagrant settings", check, apply)


def drift(lab, f) -> list[str]:
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
            return Status(
                False,
                "the lab VM does not exist",
                f"create and boot {lab.name} from box {h.box}: {h.memory} MiB, {h.cpus} vCPU, "
                f"driver {h.driver}, cpu_mode {h.cpu_mode}, nested {h.nested} (vagrant up)",
            )
        if f.state != "running":
            return Status(False, f"the lab VM is {f.state}", f"start {f.name} (vagrant up)")
        changes = drift(lab, f)
        if changes:
            return Status(
                False, "the lab VM runs with other resources than configured", "; ".join(changes) + " (vagrant reload)"
            )
        return Status(True, f"domain {f.name} is running ({f.memory_mib} MiB, {f.vcpus} vCPU)")

    def apply():
        f = lab.facts()
        if f is not None and f.state == "running":
            lab.run("reload", ["reload", lab.name, "--no-provision"], s.log, progress=True)
        else:
            lab.run("up", ["up", lab.name, "--provider=libvirt", "--no-provision"], s.log, progress=True)

    return Step("lab VM running", check, apply)


def require_running(lab):
    f = lab.facts()
    if f is None or f.state != "running":
        raise StepFailed(f"the lab VM is {'not created' if f is None else f.state}. Fix: inv host.up")
    return f


def ssh_config_step(lab, s) -> Step:
    def check():
        f = require_running(lab)
        ip = lab.ip_address()
        if ip is None:
            return Status(False, "the lab VM has no DHCP lease yet", "wait for an address, then write ssh_config")
        cfg = remote.read_ssh_config(lab.ssh_config_path)
        if not cfg:
            return Status(
                False, "no ssh_config for the lab VM yet", f"write {lab.ssh_config_path} and record host keys of {ip}"
            )
        header = lab.ssh_config_path.read_text().splitlines()[0]
        if f.uuid not in header:
            return Status(
                False,
                "the lab VM was recreated since the host keys were recorded",
                f"re-record host keys of {ip} for domain {f.uuid}",
            )
        if cfg.get("hostname") != ip:
            return Status(False, "the lab VM's address changed", f"HostName {cfg.get('hostname')} -> {ip}")
        if not remote.has_known_host(lab.known_hosts_path, ip, int(cfg.get("port", 22))):
            return Status(False, "the host keys of the lab VM are not recorded", f"record host keys of {ip}")
        return Status(True, f"{lab.ssh_config_path.name} points at {ip}, host keys recorded")

    def apply():
        f = require_running(lab)
        raw = remote.parse_ssh_config(lab.vagrant().ssh_config(vm_name=lab.name))
        ip, port = raw["hostname"], int(raw.get("port", 22))
        keys = remote.keyscan(ip, port)
        write_private(lab.known_hosts_path, "\n".join(keys) + "\n")
        write_private(
            lab.ssh_config_path,
            "\n".join(
                [
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
                ]
            ),
        )

    return Step("ssh config", check, apply)


def ssh_step(lab, s) -> Step:
    def check():
        require_running(lab)
        ok, detail = remote.probe(lab.ssh_config_path, lab.name)
        if not ok and "host key" in detail:
            raise StepFailed(detail)
        return Status(ok, detail, "" if ok else "wait for sshd on the lab VM")

    def reachable():
        return Status(*remote.probe(lab.ssh_config_path, lab.name))

    def apply():
        ok, detail = until(reachable, lab.host.boot_timeout, interval=3, what="ssh")
        if not ok:
            raise StepFailed(f"ssh to the lab VM did not answer within {lab.host.boot_timeout} s: {detail}")

    return Step("ssh reachable", check, apply)


def ensure_up(s) -> None:
    lab = lab_of(s)
    s.converge(
        [
            plugin_step(lab, s),
            settings_step(lab),
            box_step(lab, s),
            domain_step(lab, s),
            ssh_config_step(lab, s),
            ssh_step(lab, s),
        ]
    )


def halt_steps(s, lab) -> list[Step]:
    def check():
        f = lab.facts()
        if f is None:
            return Status(True, "the lab VM does not exist: nothing to halt")
        if f.state in ("shutoff", "shutdown"):
            return Status(True, f"the lab VM is already {f.state}")
        return Status(False, f"the lab VM is {f.state}", f"shut down {f.name} (vagrant halt)")

    return [
        settings_step(lab),
        Step("lab VM stopped", check, lambda: lab.run("halt", ["halt", lab.name], s.log, progress=True)),
    ]


def lab_files(lab) -> list:
    return [p for p in (lab.ssh_config_path, lab.known_hosts_path, lab.settings_file, lab.dotfile_dir) if p.exists()]


def destroy_steps(s, lab) -> list[Step]:
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
        files = lab_files(lab)
        if not files:
            return Status(True, "no lab files left")
        return Status(False, "lab files remain", "remove " + ", ".join(p.name for p in files))

    def remove_files():
        for p in lab_files(lab):
            shutil.rmtree(p) if p.is_dir() else p.unlink()

    return [Step("lab VM absent", check_vm, destroy_vm), Step("lab files removed", check_files, remove_files)]


def snapshot_name(name: str) -> str:
    if not SNAPSHOT_NAME.match(name or ""):
        raise StepFailed(f"snapshot name {name!r} is not valid. Fix: use letters, digits, '.', '_' or '-' (at most 63)")
    return name


def snapshot_step(s, lab, name: str, replace: bool) -> Step:
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
    return Step(f"snapshot {name}", check, lambda: lab.run("snapshot save", args, s.log, progress=True), verify)


def restore_step(s, lab, name: str) -> Step:
    def check():
        if lab.facts() is None:
            raise StepFailed("the lab VM does not exist. Fix: inv host.up")
        snaps = lab.snapshots()
        snap = next((x for x in snaps if x["name"] == name), None)
        if snap is None:
            have = ", ".join(x["name"] for x in snaps) or "none"
            raise StepFailed(f"no snapshot {name!r} (snapshots: {have}). Fix: inv host.snapshots")
        return Status(
            False,
            "a restore always reverts: changes made since a snapshot cannot be detected",
            f"revert {lab.name} to {name} (taken {snap['created']}, {snap['vm_state']})",
        )

    def verify():
        current = next((x for x in lab.snapshots() if x["current"]), None)
        f = lab.facts()
        if current is None or current["name"] != name:
            return Status(False, f"current snapshot is {current and current['name']}, not {name}")
        return Status(True, f"reverted to {name}; the lab VM is {f.state if f else 'gone'}")

    args = ["snapshot", "restore", "--no-provision", lab.name, name]
    return Step(f"restore {name}", check, lambda: lab.run("snapshot restore", args, s.log, progress=True), verify)


def run_restore(s, name: str) -> None:
    lab = lab_of(s)
    s.converge([restore_step(s, lab, snapshot_name(name))])
    if lab.facts() is not None and lab.facts().state == "running":
        s.converge([ssh_config_step(lab, s), ssh_step(lab, s)])


def run_ssh(s, command: str) -> int:
    """The command's exit code; its output goes to this terminal."""
    lab = lab_of(s)
    require_running(lab)
    conn = remote.connect(lab.ssh_config_path, lab.name)
    s.log.info("ssh.run", command=command)
    try:
        return conn.run(command, warn=True, in_stream=False).exited
    except Exception as exc:
        raise StepFailed(remote.describe_ssh_error(exc, lab.name)) from None
    finally:
        conn.close()


def status_text(s) -> str:
    lab = lab_of(s)
    f = lab.facts()
    rows = [("lab", lab.name), ("libvirt", lab.host.libvirt_uri)]
    if f is None:
        rows.append(("domain", "not created (inv host.up)"))
    else:
        rows += [
            ("domain", f"{f.name} ({f.uuid})"),
            ("state", f.state),
            (
                "resources",
                f"{f.memory_mib} MiB, {f.vcpus} vCPU" + (f"  [drift: {'; '.join(drift(lab, f))}]" if drift(lab, f) else ""),
            ),
        ]
        if f.state == "running":
            rows.append(("address", lab.ip_address() or "no lease yet"))
            rows.append(("ssh", remote.probe(lab.ssh_config_path, lab.name)[1]))
        snaps = lab.snapshots()
        rows.append(("snapshots", ", ".join(x["name"] + (" (current)" if x["current"] else "") for x in snaps) or "none"))
    rows.append(("ssh_config", str(lab.ssh_config_path) if lab.ssh_config_path.exists() else "not written"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def snapshots_text(s) -> str:
    snaps = lab_of(s).snapshots()
    if not snaps:
        return "no snapshots (inv host.snapshot NAME)"
    lines = [f"{'NAME':<20} {'CREATED':<20} {'VM STATE':<10} CURRENT"]
    lines += [f"{x['name']:<20} {x['created']:<20} {x['vm_state']:<10} {'*' if x['current'] else ''}" for x in snaps]
    return "\n".join(lines)
