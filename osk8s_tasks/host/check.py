"""`host.check`: every prerequisite of the lab VM, each with the fix when it is not met."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from osk8s_tasks.core.engine import StepFailed
from osk8s_tasks.host import facts


@dataclass(frozen=True)
class Row:
    name: str
    result: str  # ok | warn | fail
    detail: str
    fix: str = ""


def virtualization_rows(v: facts.Virtualization, driver: str) -> list[Row]:
    rows = []
    if not v.kvm_device:
        rows.append(
            Row(
                "/dev/kvm",
                "fail" if driver == "kvm" else "warn",
                "absent",
                "load kvm_intel or kvm_amd, or set host.driver: qemu (TCG, slow)",
            )
        )
    elif not v.kvm_usable:
        rows.append(
            Row(
                "/dev/kvm",
                "fail" if driver == "kvm" else "warn",
                f"present but not usable: {v.kvm_error}",
                "run as root or add the user to group kvm",
            )
        )
    else:
        mods = ", ".join(v.kvm_modules) or "none listed"
        rows.append(Row("/dev/kvm", "ok", f"present and usable (modules: {mods})"))

    if v.hardware:
        rows.append(Row("CPU virtualization", "ok", f"{v.hardware} flag present"))
        if v.nested in ("Y", "1"):
            rows.append(Row("nested virtualization", "ok", f"kvm nested={v.nested}: the lab VM can run KVM guests"))
        else:
            mod = "kvm_intel" if v.hardware == "vmx" else "kvm_amd"
            rows.append(
                Row(
                    "nested virtualization",
                    "warn",
                    f"{mod} nested={v.nested or 'unknown'}: nova guests will run under TCG inside the lab VM",
                    f"echo 'options {mod} nested=1' > /etc/modprobe.d/kvm-nested.conf; reload {mod}",
                )
            )
    else:
        detail = (
            "no vmx/svm flag in /proc/cpuinfo: hardware (nested) virtualization is unavailable, so the lab VM "
            "needs the TCG fallback (host.driver: qemu, cpu_mode maximum), which is slow but works"
        )
        if "kvm_pvm" in v.kvm_modules:
            detail += "; /dev/kvm here is kvm-pvm, which stock guest kernels cannot use at a usable speed"
        if driver == "qemu":
            rows.append(Row("CPU virtualization", "warn", detail + " (TCG fallback in use)"))
        else:
            rows.append(
                Row(
                    "CPU virtualization",
                    "fail",
                    detail,
                    "set host.driver: qemu (invoke.yaml, -f FILE or INVOKE_HOST_DRIVER=qemu)",
                )
            )
    return rows


def libvirt_rows(lab) -> list[Row]:
    try:
        conn = lab.libvirt()
    except StepFailed as exc:
        return [Row("libvirt", "fail", str(exc).split(". Fix:")[0], "start libvirtd, or set host.libvirt_uri")]
    ver = conn.getLibVersion()
    rows = [
        Row("libvirt", "ok", f"{lab.host.libvirt_uri} answers (libvirt {ver // 1000000}.{ver // 1000 % 1000}.{ver % 1000})")
    ]
    caps = conn.getCapabilities()
    want = "kvm" if lab.host.driver == "kvm" else "qemu"
    if f"domain type='{want}'" in caps:
        rows.append(Row("libvirt domain type", "ok", f"{want} domains supported"))
    else:
        rows.append(
            Row(
                "libvirt domain type",
                "fail",
                f"libvirt offers no {want} domains",
                "install qemu-system-x86 (and for kvm: a usable /dev/kvm)",
            )
        )
    return rows


def vagrant_rows(lab) -> list[Row]:
    if shutil.which("vagrant") is None:
        return [Row("vagrant", "fail", "not installed", "apt-get install vagrant vagrant-libvirt")]
    rows = []
    try:
        version = lab.capture(["--version"]).strip()
        rows.append(Row("vagrant", "ok", version))
        plugins = lab.plugins()
    except Exception as exc:  # reported as the row's fact
        return [Row("vagrant", "fail", f"vagrant does not run: {exc}", "reinstall vagrant")]
    if "vagrant-libvirt" in plugins:
        rows.append(Row("vagrant-libvirt plugin", "ok", f"installed ({plugins['vagrant-libvirt']})"))
    else:
        rows.append(
            Row(
                "vagrant-libvirt plugin",
                "fail",
                "not installed",
                "apt-get install vagrant-libvirt, or allow the tool: --install-plugin",
            )
        )
    return rows


def resource_rows(lab) -> list[Row]:
    h = lab.host
    rows = []
    avail = facts.read_meminfo().get("MemAvailable", 0) // 1024
    result = "ok" if avail >= h.memory + 512 else "fail"
    rows.append(
        Row(
            "memory",
            result,
            f"{avail} MiB available, lab VM needs {h.memory} MiB (+512 for the host)",
            "" if result == "ok" else "lower host.memory or free memory",
        )
    )
    cpus = os.cpu_count() or 1
    result = "ok" if cpus >= h.cpus else "fail"
    rows.append(
        Row(
            "CPUs",
            result,
            f"{cpus} on the host, lab VM wants {h.cpus}",
            "" if result == "ok" else f"set host.cpus to {cpus} or less",
        )
    )
    pool = "/var/lib/libvirt/images"
    need = h.disk_gb or 10
    free = facts.free_disk_gib(pool)
    result = "ok" if free >= need else "warn"
    rows.append(
        Row(
            "disk",
            result,
            f"{free:.0f} GiB free under {pool}, lab disk up to {need} GiB (thin qcow2)",
            "" if result == "ok" else "free disk space or lower host.disk_gb",
        )
    )
    return rows


def box_row(lab) -> Row:
    h = lab.host
    found = facts.installed_box(h.box, h.box_version)
    if found and "libvirt" in found[1]:
        return Row("box", "ok", f"{h.box} {found[0]} (libvirt) installed")
    if found:
        return Row(
            "box",
            "fail",
            f"{h.box} {found[0]} has no libvirt flavour (has: {', '.join(found[1])})",
            "choose a box published for libvirt (host.box)",
        )
    if h.box_url:
        return Row("box", "warn", f"{h.box} not installed yet; host.up adds it from {h.box_url}")
    return Row(
        "box",
        "warn",
        f"{h.box} not installed yet; host.up downloads it from Vagrant Cloud",
        "or set host.box_url to a local .box file",
    )


def rows(lab) -> list[Row]:
    return (
        virtualization_rows(facts.read_virtualization(), lab.host.driver)
        + libvirt_rows(lab)
        + vagrant_rows(lab)
        + resource_rows(lab)
        + [box_row(lab)]
    )


def table(rows: list[Row]) -> str:
    head = ("CHECK", "RESULT", "DETAIL", "FIX")
    w0 = max(len(head[0]), *(len(r.name) for r in rows))
    out = [f"{head[0]:<{w0}}  {head[1]:<6}  {head[2]}"]
    for r in rows:
        out.append(f"{r.name:<{w0}}  {r.result:<6}  {r.detail}")
        if r.fix:
            out.append(f"{'':<{w0}}  {'':<6}  fix: {r.fix}")
    return "\n".join(out)
