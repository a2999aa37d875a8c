"""The lab VM as libvirt sees it (facts) and as vagrant drives it (actions).

Facts come from libvirt-python: fast and exact (domain state, memory, snapshots, leases).
Actions go through vagrant (python-vagrant), so the lab stays an ordinary vagrant machine that
users can also `vagrant ssh` into. Both are imported lazily: `inv --list` never pays for them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import libvirt
import vagrant

from osk8s_tasks.core import lab as lab_paths
from osk8s_tasks.core.engine import StepFailed
from osk8s_tasks.core.files import open_private

STATES = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff", 6: "crashed", 7: "pmsuspended"}


@dataclass(frozen=True)
class DomainFacts:
    name: str
    uuid: str
    state: str
    memory_mib: int
    vcpus: int


class Lab:
    """Paths, vagrant environment and libvirt view of one lab VM."""

    def __init__(self, settings):
        self.settings = settings
        self.host = settings.host
        self.name = settings.lab.name
        self.dir = settings.lab_dir
        self.settings_file = self.dir / "host.json"
        self.dotfile_dir = self.dir / "vagrant"
        self.ssh_config_path = lab_paths.vm_ssh_config(settings)
        self.known_hosts_path = lab_paths.vm_known_hosts(settings)
        self.vagrant_log = self.dir / "logs" / "vagrant.log"
        self._conn = None

    # --- the settings the Vagrantfile reads --------------------------------------------------

    def vagrant_settings(self) -> dict:
        h = self.host
        return {
            "name": self.name,
            "hostname": self.name,
            "box": h.box,
            "box_version": h.box_version,
            "driver": h.driver,
            "cpu_mode": h.cpu_mode,
            "nested": h.nested,
            "memory": h.memory,
            "cpus": h.cpus,
            "disk_gb": h.disk_gb,
            "libvirt_uri": h.libvirt_uri,
            "storage_pool": h.storage_pool,
            "management_network_name": h.management_network.name,
            "management_network_address": h.management_network.address,
            "boot_timeout": h.boot_timeout,
        }

    def rendered_settings(self) -> str:
        return json.dumps(self.vagrant_settings(), indent=2, sort_keys=True) + "\n"

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(
            VAGRANT_CWD=str(Path(self.host.vagrantfile).parent),
            VAGRANT_VAGRANTFILE=Path(self.host.vagrantfile).name,
            VAGRANT_DOTFILE_PATH=str(self.dotfile_dir),
            VAGRANT_DEFAULT_PROVIDER="libvirt",
            VAGRANT_CHECKPOINT_DISABLE="1",  # no phoning home for version checks
            VAGRANT_NO_COLOR="1",
            OSK8S_HOST_SETTINGS=str(self.settings_file),
        )
        return env

    # --- vagrant -------------------------------------------------------------------------------

    def vagrant(self):
        """python-vagrant bound to this lab; its commands' output goes to logs/vagrant.log."""

        @contextmanager
        def to_log():
            with open_private(self.vagrant_log, "a") as fh:
                yield fh

        return vagrant.Vagrant(root=str(Path(self.host.vagrantfile).parent), env=self.env(), out_cm=to_log, err_cm=to_log)

    def plugins(self) -> dict[str, str]:
        """Installed vagrant plugins: {name: version}."""
        return {p.name: p.version for p in self.vagrant().plugin_list()}

    def run(self, what: str, args: list[str], log, progress: bool = False) -> None:
        """Run `vagrant ARGS` with all output in logs/vagrant.log; '==>' lines shown as progress.
        A failure raises StepFailed with the output's last lines."""
        if shutil.which("vagrant") is None:
            raise StepFailed("vagrant is not installed. Fix: apt-get install vagrant vagrant-libvirt")
        cmd = ["vagrant", *args]
        t0 = time.monotonic()
        log.info("vagrant.run", command=" ".join(cmd))
        tail: list[str] = []
        with open_private(self.vagrant_log, "a") as fh:
            fh.write(f"\n$ {' '.join(cmd)}\n")
            proc = subprocess.Popen(
                cmd,
                cwd=Path(self.host.vagrantfile).parent,
                env=self.env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                fh.write(line)
                line = line.rstrip()
                tail = (tail + [line])[-15:]
                msg = line.split(":", 1)[-1].strip()
                if progress and line.startswith("==>") and not msg.startswith("--"):
                    log.info("vagrant", elapsed=f"{time.monotonic() - t0:.0f}s", out=msg)
            rc = proc.wait()
        if rc != 0:
            last = "\n    ".join(x for x in tail if x.strip())
            raise StepFailed(
                f"`{' '.join(cmd)}` failed ({what}), exit {rc}; last lines:\n    {last}\n  (full output: {self.vagrant_log})"
            )

    def capture(self, args: list[str]) -> str:
        proc = subprocess.run(
            ["vagrant", *args],
            cwd=Path(self.host.vagrantfile).parent,
            env=self.env(),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise StepFailed(f"`vagrant {' '.join(args)}` failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
        return proc.stdout

    # --- libvirt facts -------------------------------------------------------------------------

    def libvirt(self):
        if self._conn is None:
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors come back as exceptions
            try:
                self._conn = libvirt.open(self.host.libvirt_uri)
            except libvirt.libvirtError as exc:
                raise StepFailed(
                    f"libvirt at {self.host.libvirt_uri} is not reachable: {exc}. "
                    "Fix: start libvirtd (systemctl start libvirtd) or set host.libvirt_uri"
                ) from None
        return self._conn

    def machine_id_file(self) -> Path:
        return self.dotfile_dir / "machines" / self.name / "libvirt" / "id"

    def private_key(self) -> Path:
        return self.dotfile_dir / "machines" / self.name / "libvirt" / "private_key"

    def domain(self):
        """The lab's libvirt domain, or None. Found by the UUID vagrant recorded, else by name
        (a domain of that name that vagrant does not know is reported, never adopted)."""
        conn = self.libvirt()
        idf = self.machine_id_file()
        if idf.exists():
            try:
                return conn.lookupByUUIDString(idf.read_text().strip())
            except libvirt.libvirtError:
                return None
        try:
            dom = conn.lookupByName(self.name)
        except libvirt.libvirtError:
            return None
        raise StepFailed(
            f"a libvirt domain named {self.name!r} exists but this lab did not create it. "
            f"Fix: choose another lab.name, or remove it: virsh destroy {self.name}; virsh undefine {self.name} "
            f"(uuid {dom.UUIDString()})"
        )

    def facts(self) -> DomainFacts | None:
        dom = self.domain()
        if dom is None:
            return None
        state, max_kib, _mem, vcpus, _cpu = dom.info()
        return DomainFacts(dom.name(), dom.UUIDString(), STATES.get(state, str(state)), max_kib // 1024, vcpus)

    def ip_address(self) -> str | None:
        """The management address from libvirt's DHCP leases (what vagrant itself uses)."""
        dom = self.domain()
        if dom is None or not dom.isActive():
            return None
        try:
            ifaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE)
        except libvirt.libvirtError:
            return None
        for iface in ifaces.values():
            for addr in iface.get("addrs") or []:
                if addr["type"] == libvirt.VIR_IP_ADDR_TYPE_IPV4:
                    return addr["addr"]
        return None

    def snapshots(self) -> list[dict]:
        dom = self.domain()
        if dom is None:
            return []
        current = None
        if dom.hasCurrentSnapshot():
            current = dom.snapshotCurrent().getName()
        out = []
        for snap in dom.listAllSnapshots():
            root = ET.fromstring(snap.getXMLDesc())
            created = int(root.findtext("creationTime") or 0)
            out.append(
                {
                    "name": snap.getName(),
                    "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)),
                    "created_ts": created,
                    "vm_state": root.findtext("state") or "?",
                    "current": snap.getName() == current,
                }
            )
        return sorted(out, key=lambda s: s["created_ts"])
