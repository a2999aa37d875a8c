"""Pure fact parsers and the host.check verdicts, on recorded inputs."""

import pytest

from osk8s_tasks.cluster import facts as cluster_facts
from osk8s_tasks.core import shapes, ssh
from osk8s_tasks.devstack import facts as devstack_facts
from osk8s_tasks.host import facts
from osk8s_tasks.host.check import virtualization_rows

CPUINFO_PVM = (
    "processor\t: 0\nflags\t\t: fpu vme de pse sse2 hypervisor\n\nprocessor\t: 1\nflags\t\t: fpu vme sse2 hypervisor\n"
)
CPUINFO_VMX = "processor\t: 0\nflags\t\t: fpu vmx sse2\n"


def test_cpu_flags_are_shared_by_all_cpus():
    assert facts.parse_cpu_flags(CPUINFO_PVM) == {"fpu", "vme", "sse2", "hypervisor"}


def test_meminfo():
    assert facts.parse_meminfo("MemTotal:  24000 kB\nMemAvailable: 12000 kB\n")["MemAvailable"] == 12000


def test_ssh_config_first_block():
    text = 'Host a\n  HostName 10.0.0.1\n  Port 2222\n  IdentityFile "/k"\nHost b\n  HostName x\n'
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


@pytest.mark.parametrize(
    "state, code, ok",
    [
        ("active", 200, True),
        ("active", 300, True),
        ("active", 401, True),
        ("active", 404, True),
        ("active", 0, False),
        ("active", 503, False),
        ("active", 500, False),
        ("inactive", 200, False),
        ("failed", 200, False),
    ],
)
def test_a_unit_is_healthy_when_active_and_its_api_answers_below_500(state, code, ok):
    """401/404 are answers (keystone wants a token): a watchdog restarting on them would loop."""
    assert devstack_facts.healthy(state, code) is ok


def test_one_watchdog_tick_restarts_only_what_was_unhealthy_long_enough():
    from types import SimpleNamespace

    from osk8s_tasks.core import config
    from osk8s_tasks.devstack.stack import Watchdog

    settings = config.validate(
        {
            "devstack": {
                "watchdog": {
                    "unhealthy_seconds": 60,
                    "interval": 5,
                    "services": [
                        {"unit": "keystone", "url": "http://{host_ip}/identity"},
                        {"unit": "g-api", "url": "http://{host_ip}/image"},
                        {"unit": "c-api", "url": "http://{host_ip}/volume"},
                    ],
                }
            }
        }
    )
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


# --- devstack and cluster parsers: the edges the recorded cases do not reach -----------------------

PHASES = (
    "2026-11-30 08:00:01.123 | stack.sh log /opt/stack/logs/stack.sh.log.2026-11-30-080001\n"
    "2026-11-30 08:00:40.456 | Installing package prerequisites\n"
    "2026-11-30 08:12:03.789 | Starting Keystone\n"
)
DONE = "2026-11-30 08:41:17.002 | stack.sh completed in 2476 seconds.\n"


@pytest.mark.parametrize(
    "output, state, rc, seconds, phase",
    [
        ("", "never", None, None, None),  # the probe printed nothing at all
        ("@@lock idle\n@@rc\n@@summary\n" + PHASES, "failed", None, None, "Starting Keystone"),  # killed: no rc written
        ("@@lock idle\n@@rc\n1\n@@summary\n" + PHASES + DONE, "failed", 1, 2476, "stack.sh completed in 2476 seconds."),
        ("@@lock idle\n@@rc\n@@summary\n" + PHASES + DONE, "completed", None, 2476, "stack.sh completed in 2476 seconds."),
        (
            "@@lock idle\n@@rc\n0\n@@summary\n" + PHASES + DONE.replace(".\n", ".  \n"),
            "completed",
            0,
            2476,
            "stack.sh completed in 2476 seconds.",
        ),  # trailing blanks
        ("@@lock idle\n@@rc\n@@summary\n" + PHASES.splitlines(True)[0], "failed", None, None, None),  # killed at once
        ("@@lock running\n@@rc\n@@summary\n", "running", None, None, None),
    ],
    ids=[
        "no output",
        "killed",
        "completed, then failed",
        "completed, no rc yet",
        "trailing blanks",
        "killed at once",
        "running",
    ],
)
def test_stack_state(output, state, rc, seconds, phase):
    st = devstack_facts.parse_stack_probe(output)
    assert (st.state, st.rc, st.seconds, st.phase) == (state, rc, seconds, phase)


def test_summary_lines_without_a_timestamp_are_kept_as_they_are():
    text = "2026-11-30 08:00:40 | Installing\n  a continued line  \n\n2026-11-30 08:00:41.5 | Done  \n"
    assert devstack_facts.parse_summary(text) == ["Installing", "  a continued line", "Done"]


@pytest.mark.parametrize(
    "output, units",
    [
        (
            "keystone active 200\nbash: curl: command not found\n\ng-api active 2OO\nc-api active 0 extra\n",
            {"keystone": ("active", 200)},
        ),
    ],
    ids=["noise"],
)
def test_watchdog_probe_keeps_only_complete_lines(output, units):
    assert devstack_facts.parse_watchdog_probe(output) == units


def test_healthy_starts_at_the_first_http_answer():
    assert devstack_facts.healthy("active", 100)


def test_units_need_their_four_columns_and_the_devstack_prefix():
    text = (
        "devstack@keystone.service loaded active running\n"  # no description: still a unit
        "cron.service loaded active running Regular background program processing daemon\n"
        "devstack@n-api.service loaded\n"
    )
    assert devstack_facts.parse_units(text) == [
        devstack_facts.Unit("devstack@keystone.service", "loaded", "active", "running")
    ]


@pytest.mark.parametrize(
    "output, ip",
    [
        (
            "default via 10.0.3.1 dev eth1 proto dhcp\n@@\n1: lo    inet 127.0.0.1/8 scope host lo\n"
            "2: eth0    inet 192.168.121.10/24 scope global eth0\n3: eth1    inet 10.0.3.15/24 scope global eth1\n",
            "10.0.3.15",
        ),
        (
            "@@\n1: lo    inet 127.0.0.1/8 scope host lo\n2: eth0    inet 192.168.121.10/24 scope global eth0\n",
            "192.168.121.10",
        ),  # no default route: the first address that is not loopback
        ("default via 10.0.3.1 dev eth1\n@@\n2: eth0    inet 192.168.121.10/24 scope global eth0\n", None),
        ("@@\n1: lo    inet 127.0.0.1/8 scope host lo\n", None),
    ],
    ids=["the default route's interface", "no default route", "its interface has no address", "loopback only"],
)
def test_host_ip_is_the_default_routes_interface_address(output, ip):
    assert devstack_facts.parse_host_ip(output) == ip


LOCAL_CONF_OLD = (
    "[[local|localrc]]\nADMIN_PASSWORD=old-admin\nDATABASE_PASSWORD=sameX\nHOST_IP=192.168.121.10\nSERVICE_TOKEN = tok \n"
)
LOCAL_CONF_NEW = (
    "[[local|localrc]]\nADMIN_PASSWORD=new-admin\nDATABASE_PASSWORD=sameX\nHOST_IP=192.168.121.11\n"
    "RABBIT_PASSWORD=added\nSERVICE_TOKEN = tok "
)


def test_a_local_conf_diff_says_which_password_changes_never_what_it_is():
    old, new = devstack_facts.mask_secret_lines(LOCAL_CONF_OLD, LOCAL_CONF_NEW)
    assert old == (
        "[[local|localrc]]\nADMIN_PASSWORD=***\nDATABASE_PASSWORD=***\nHOST_IP=192.168.121.10\nSERVICE_TOKEN =***\n"
    )
    assert new == (
        "[[local|localrc]]\nADMIN_PASSWORD=*** (changed)\nDATABASE_PASSWORD=***\nHOST_IP=192.168.121.11\n"
        "RABBIT_PASSWORD=*** (changed)\nSERVICE_TOKEN =***"
    )


def test_secret_values_of_a_local_conf():
    text = (
        '[[local|localrc]]\nADMIN_PASSWORD=Xsecret1X\nDATABASE_PASSWORD = "secret 2"\nSERVICE_TOKEN=\n'
        "HOST_IP=10.0.0.1\n  CINDER_KEY='k3y'\n#OLD_PASSWORD=old\n[[post-config|$NOVA_CONF]]\n"
    )
    assert devstack_facts.secret_values(text) == ["Xsecret1X", "secret 2", "k3y"]


@pytest.mark.parametrize(
    "parse, output, fact",
    [
        (cluster_facts.parse_containerd, "", cluster_facts.Containerd(False, False, "unknown")),  # the probe printed nothing
        (
            cluster_facts.parse_containerd,
            "installed\n@@\n0\n@@\nactive\n",  # `containerd config default`: SystemdCgroup = false
            cluster_facts.Containerd(True, False, "active"),
        ),
        (cluster_facts.parse_kube_versions, "", {"kubeadm": None, "kubelet": None, "kubectl": None}),
        (cluster_facts.parse_swap, "@@osk8s-fstab@@\n", (False, False)),  # no /etc/fstab: grep prints nothing
        (cluster_facts.parse_swap, "@@osk8s-fstab@@\n0\n", (False, False)),
    ],
    ids=["containerd", "containerd with cgroupfs", "kube versions", "swap without fstab", "swap none in fstab"],
)
def test_empty_probe_output_reads_as_nothing_there(parse, output, fact):
    assert parse(output) == fact


def test_a_sysctl_value_may_hold_an_equals_sign():
    assert shapes.parse_sysctl_probe("@@osk8s-sysctl@@\nkernel.core_pattern=|/bin/dump a=b\n") == (
        "",
        {"kernel.core_pattern": "|/bin/dump a=b"},
    )
