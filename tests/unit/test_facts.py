"""Pure fact parsers and the host.check verdicts, on recorded inputs."""

from osk8s_tasks.facts import host as facts
from osk8s_tasks.host_check import virtualization_rows

CPUINFO_PVM = "processor\t: 0\nflags\t\t: fpu vme de pse sse2 hypervisor\n\nprocessor\t: 1\nflags\t\t: fpu vme sse2 hypervisor\n"
CPUINFO_VMX = "processor\t: 0\nflags\t\t: fpu vmx sse2\n"


def test_cpu_flags_are_shared_by_all_cpus():
    assert facts.parse_cpu_flags(CPUINFO_PVM) == {"fpu", "vme", "sse2", "hypervisor"}


def test_meminfo():
    assert facts.parse_meminfo("MemTotal:  24000 kB\nMemAvailable: 12000 kB\n")["MemAvailable"] == 12000


def test_ssh_config_first_block():
    text = "Host a\n  HostName 10.0.0.1\n  Port 2222\n  IdentityFile \"/k\"\nHost b\n  HostName x\n"
    assert facts.parse_ssh_config(text) == {"host": "a", "hostname": "10.0.0.1", "port": "2222", "identityfile": "/k"}


def test_box_dir_layout(tmp_path):
    root = tmp_path / facts.box_dir_name("cloud-image/ubuntu-24.04")
    (root / "20250101.0.0" / "libvirt").mkdir(parents=True)
    (root / "20240101.0.0" / "virtualbox").mkdir(parents=True)
    assert root.name == "cloud-image-VAGRANTSLASH-ubuntu-24.04"
    assert facts.parse_box_versions(root) == {"20240101.0.0": ["virtualbox"], "20250101.0.0": ["libvirt"]}


def _virt(flags, modules=("kvm", "kvm_pvm"), nested=None):
    return facts.Virtualization(True, True, "", frozenset(flags), modules, nested)


def test_no_vmx_with_kvm_driver_fails_and_names_the_tcg_fallback():
    rows = {r.name: r for r in virtualization_rows(_virt({"sse2"}), "kvm")}
    cpu = rows["CPU virtualization"]
    assert cpu.result == "fail" and "host.driver: qemu" in cpu.fix
    assert "TCG" in cpu.detail and "kvm-pvm" in cpu.detail


def test_no_vmx_with_qemu_driver_is_a_warning():
    rows = {r.name: r for r in virtualization_rows(_virt({"sse2"}), "qemu")}
    assert rows["CPU virtualization"].result == "warn"


def test_vmx_without_nested_warns_with_the_modprobe_fix():
    rows = {r.name: r for r in virtualization_rows(_virt({"vmx"}, ("kvm", "kvm_intel"), "N"), "kvm")}
    assert rows["CPU virtualization"].result == "ok"
    assert rows["nested virtualization"].result == "warn" and "nested=1" in rows["nested virtualization"].fix


def test_this_machine_reads():
    v = facts.read_virtualization()
    assert isinstance(v.cpu_flags, frozenset)
