"""Bad input through the real `inv` CLI: one line per problem naming key and fix, non-zero exit,
no traceback, and no side effect (not even the state or log directory)."""

import pytest

CASES = {
    "lab name with _": ({"INVOKE_LAB_NAME": "my_lab"}, [], "lab.name", "DNS-1123"),
    "lab name upper case": ({"INVOKE_LAB_NAME": "Lab1"}, [], "lab.name", "DNS-1123"),
    "lab name too long": ({"INVOKE_LAB_NAME": "a" * 64}, [], "lab.name", "63"),
    "node name with _": ({"INVOKE_CLUSTER_NODES": "[{name: worker_1, role: worker}, {name: m, role: control-plane}]"},
                         [], "cluster.nodes.0.name", "kubelet"),
    "server name too long": ({"INVOKE_LAB_NAME": "a" * 60}, [], "server name", "63"),
    "unknown key": ({}, ["host:\n  memroy: 4096\n"], "host.memroy", "did you mean host.memory"),
    "unknown section key": ({}, ["devstack:\n  brnach: master\n"], "devstack.brnach", "did you mean devstack.branch"),
    "negative memory": ({"INVOKE_HOST_MEMORY": "-5"}, [], "host.memory", "Fix:"),
    "memory not a number": ({"INVOKE_HOST_MEMORY": "lots"}, [], "host.memory", "Fix:"),
    "memory flag not a number": ({}, ["--memory=lots"], "host.memory", "Fix:"),
    "zero cpus": ({"INVOKE_HOST_CPUS": "0"}, [], "host.cpus", "Fix:"),
    "unknown driver": ({"INVOKE_HOST_DRIVER": "xen"}, [], "host.driver", "qemu"),
    "passthrough under TCG": ({"INVOKE_HOST_DRIVER": "qemu", "INVOKE_HOST_CPU_MODE": "host-passthrough"}, [], "host", "maximum"),
    "missing box": ({"INVOKE_VERSIONS_BOX": ""}, [], "host.box", "libvirt"),
    "nested not a bool": ({"INVOKE_HOST_NESTED": "maybe"}, [], "host.nested", "Fix:"),
    "bad management network": ({"INVOKE_HOST_MANAGEMENT_NETWORK_ADDRESS": "192.168.121.0/33"}, [],
                               "host.management_network.address", "CIDR"),
    "2018 kubernetes": ({"INVOKE_VERSIONS_KUBERNETES": "1.9.3"}, [], "versions.kubernetes", "1.37.0"),
    "2018 openstack branch": ({"INVOKE_VERSIONS_OPENSTACK_BRANCH": "queens"}, [], "versions.openstack_branch", "stable/"),
    "unknown octavia provider": ({"INVOKE_DEVSTACK_OCTAVIA_PROVIDER": "haproxy"}, [], "devstack.octavia_provider", "ovn"),
    "overlapping subnets": ({"INVOKE_CLUSTER_POD_SUBNET": "10.96.0.0/16"}, [], "cluster", "overlap"),
    "no control plane": ({"INVOKE_CLUSTER_NODES": "[{name: w1, role: worker}]"}, [], "cluster", "control-plane"),
    "duplicate nodes": ({"INVOKE_CLUSTER_NODES": "[{name: m, role: control-plane}, {name: m, role: worker}]"}, [],
                        "cluster", "unique"),
    "unknown verify check": ({"INVOKE_VERIFY_CHECKS": "[lb, dns]"}, [], "verify.checks.1", "Fix:"),
    "missing -f file": ({}, ["-f", "does-not-exist.yaml"], "-f does-not-exist.yaml", "Fix:"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_config_is_one_line_with_fix_and_no_side_effect(name, inv, tmp_path):
    env, extra, key, words = CASES[name]
    state = tmp_path / "state"
    env = {**env, "INVOKE_LAB_STATE_DIR": str(state)}
    args = ["host.up"]
    if extra and extra[0].startswith("--"):
        args += extra
    elif extra and extra[0] == "-f":
        args = ["-f", str(tmp_path / extra[1]), "host.up"]
        key = f"-f {tmp_path / extra[1]}"
    elif extra:
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(extra[0])
        args = ["-f", str(cfg), "host.up"]
    result = inv(args, env=env, timeout=60)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert key in lines[0] and words in lines[0], lines[0]
    assert not state.exists(), "config errors must not create any file"


def test_at_least_fifteen_cases():
    assert len(CASES) >= 15
