"""Pure fact parsers and the host.check verdicts, on recorded inputs."""

import pytest

from osk8s_tasks.devstack import facts as devstack_facts
from osk8s_tasks.core import ssh
from osk8s_tasks.host import facts
from osk8s_tasks.host.check import virtualization_rows

CPUINFO_PVM = "processor\t: 0\nflags\t\t: fpu vme de pse sse2 hypervisor\n\nprocessor\t: 1\nflags\t\t: fpu vme sse2 hypervisor\n"
CPUINFO_VMX = "processor\t: 0\nflags\t\t: fpu vmx sse2\n"


def test_cpu_flags_are_shared_by_all_cpus():
    assert facts.parse_cpu_flags(CPUINFO_PVM) == {"fpu", "vme", "sse2", "hypervisor"}


def test_meminfo():
    assert facts.parse_meminfo("MemTotal:  24000 kB\nMemAvailable: 12000 kB\n")["MemAvailable"] == 12000


def test_ssh_config_first_block():
    text = "Host a\n  HostName 10.0.0.1\n  Port 2222\n  IdentityFile \"/k\"\nHost b\n  HostName x\n"
    assert ssh.parse_ssh_config(text) == {"host": "a", "hostname": "10.0.0.1", "port": "2222", "identityfile": "/k"}


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


@pytest.mark.parametrize("state, code, ok", [("active", 200, True), ("active", 300, True), ("active", 401, True),
                                              ("active", 404, True), ("active", 0, False), ("active", 503, False),
                                              ("active", 500, False), ("inactive", 200, False), ("failed", 200, False)])
def test_a_unit_is_healthy_when_active_and_its_api_answers_below_500(state, code, ok):
    """401/404 are answers (keystone wants a token): a watchdog restarting on them would loop."""
    assert devstack_facts.healthy(state, code) is ok


def test_one_watchdog_tick_restarts_only_what_was_unhealthy_long_enough():
    from types import SimpleNamespace

    from osk8s_tasks.core import config
    from osk8s_tasks.devstack.stack import Watchdog

    settings = config.validate({"devstack": {"watchdog": {"unhealthy_seconds": 60, "interval": 5, "services": [
        {"unit": "keystone", "url": "http://{host_ip}/identity"}, {"unit": "g-api", "url": "http://{host_ip}/image"},
        {"unit": "c-api", "url": "http://{host_ip}/volume"}]}}})
    answers = {"keystone": "active 401", "g-api": "active 000", "c-api": "absent 000"}
    ran = []

    class Remote:
        def run(self, cmd, sudo=False, warn=False):
            ran.append(cmd)
            return SimpleNamespace(stdout="\n".join(f"{u} {a}" for u, a in answers.items()))

    now = [1000.0]
    s = SimpleNamespace(settings=settings, log=SimpleNamespace(warning=lambda *a, **k: None))
    dog = Watchdog(s, Remote(), "10.0.0.5", clock=lambda: now[0])
    dog.tick()
    now[0] += 59
    dog.tick()
    assert not [c for c in ran if "restart" in c]  # g-api not answering for 59 s: not yet
    now[0] += 1
    dog.tick()
    assert [c for c in ran if "restart" in c] == ["systemctl restart devstack@g-api.service"]
    assert dog.restarts == {"g-api": 1}
    assert "http://10.0.0.5/image" in ran[0]
