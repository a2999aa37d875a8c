"""Read-only facts about the KVM host. ``parse_*`` are pure; ``read_*`` do the I/O."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

# --- pure parsers ------------------------------------------------------------------------------


def parse_cpu_flags(cpuinfo: str) -> set[str]:
    """The CPU flags shared by every processor in /proc/cpuinfo."""
    sets = [set(line.split(":", 1)[1].split()) for line in cpuinfo.splitlines() if line.startswith("flags")]
    return set.intersection(*sets) if sets else set()


def parse_meminfo(meminfo: str) -> dict[str, int]:
    """/proc/meminfo as {field: KiB}."""
    out = {}
    for line in meminfo.splitlines():
        m = re.match(r"^(\w+):\s+(\d+)", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def box_dir_name(box: str) -> str:
    """Vagrant stores box 'org/name' under boxes/org-VAGRANTSLASH-name."""
    return box.replace("/", "-VAGRANTSLASH-")


def parse_box_versions(box_root: Path) -> dict[str, list[str]]:
    """{version: [providers]} from a box's directory in VAGRANT_HOME/boxes."""
    out: dict[str, list[str]] = {}
    if box_root.is_dir():
        for version in sorted(p for p in box_root.iterdir() if p.is_dir()):
            providers = sorted(p.name for p in version.iterdir() if p.is_dir())
            if providers:
                out[version.name] = providers
    return out


# --- probes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Virtualization:
    kvm_device: bool
    kvm_usable: bool
    kvm_error: str
    cpu_flags: frozenset[str]
    kvm_modules: tuple[str, ...]
    nested: str | None  # the kvm_intel/kvm_amd `nested` parameter, None when not loaded

    @property
    def hardware(self) -> str | None:
        return "vmx" if "vmx" in self.cpu_flags else "svm" if "svm" in self.cpu_flags else None


def read_virtualization(root: str = "/") -> Virtualization:
    base = Path(root)
    dev = base / "dev/kvm"
    usable, error = False, ""
    if dev.exists():
        try:
            fd = os.open(dev, os.O_RDWR)
            os.close(fd)
            usable = True
        except OSError as exc:
            error = exc.strerror or str(exc)
    try:
        flags = parse_cpu_flags((base / "proc/cpuinfo").read_text())
    except OSError:
        flags = set()
    modules = tuple(sorted(m.name for m in (base / "sys/module").glob("kvm*")))
    nested = None
    for mod in ("kvm_intel", "kvm_amd"):
        p = base / f"sys/module/{mod}/parameters/nested"
        if p.exists():
            nested = p.read_text().strip()
    return Virtualization(dev.exists(), usable, error, frozenset(flags), modules, nested)


def read_meminfo() -> dict[str, int]:
    return parse_meminfo(Path("/proc/meminfo").read_text())


def free_disk_gib(path: str) -> float:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free / 2**30


def vagrant_home() -> Path:
    return Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")


def installed_box(box: str, version: str | None) -> tuple[str, list[str]] | None:
    """(version, providers) of the installed box, or None. The newest version unless pinned."""
    versions = parse_box_versions(vagrant_home() / "boxes" / box_dir_name(box))
    if version is not None:
        return (version, versions[version]) if version in versions else None
    if not versions:
        return None
    newest = max(versions, key=_version_key)
    return newest, versions[newest]


def _version_key(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.-]", v))
