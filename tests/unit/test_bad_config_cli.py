"""Bad input through the real `inv` CLI: one line per problem naming key and fix, non-zero exit,
no traceback, and no side effect (not even the state or log directory)."""

import pytest

CASES = {
    "lab name with _": ({"INVOKE_LAB_NAME": "my_lab"}, [], "lab.name", "DNS-1123"),
    "lab name upper case": ({"INVOKE_LAB_NAME": "Lab1"}, [], "lab.name", "DNS-1123"),
    "lab name too long": ({"INVOKE_LAB_NAME": "a" * 64}, [], "lab.name", "63"),
    "node name with _": (
        {"INVOKE_CLUSTER_NODES": "[{name: worker_1, role: worker}, {name: m, role: control-plane}]"},
        [],
        "cluster.nodes.0.name",
        "kubelet",
    ),
    "server name too long": ({"INVOKE_LAB_NAME": "a" * 60}, [], "cluster.nodes.0.name", "63"),
    "unknown key": ({}, ["host:\n  memroy: 4096\n"], "host.memroy", "did you mean host.memory"),
    "unknown section key": ({}, ["devstack:\n  brnach: master\n"], "devstack.brnach", "did you mean devstack.branch"),
    "negative memory": ({"INVOKE_HOST_MEMORY": "-5"}, [], "host.memory", "Fix:"),
    "memory not a number": ({"INVOKE_HOST_MEMORY": "lots"}, [], "host.memory", "Fix:"),
    "memory flag not a number": ({}, ["--memory=lots"], "host.memory", "Fix:"),
    "zero cpus": ({"INVOKE_HOST_CPUS": "0"}, [], "host.cpus", "Fix:"),
    "unknown driver": ({"INVOKE_HOST_DRIVER": "xen"}, [], "host.driver", "qemu"),
    "passthrough under TCG": (
        {"INVOKE_HOST_DRIVER": "qemu", "INVOKE_HOST_CPU_MODE": "host-passthrough"},
        [],
        "host.cpu_mode",
        "maximum",
    ),
    "missing box": ({"INVOKE_VERSIONS_BOX": ""}, [], "host.box", "libvirt"),
    "nested not a bool": ({"INVOKE_HOST_NESTED": "maybe"}, [], "host.nested", "Fix:"),
    "bad management network": (
        {"INVOKE_HOST_MANAGEMENT_NETWORK_ADDRESS": "192.168.121.0/33"},
        [],
        "host.management_network.address",
        "CIDR",
    ),
    "2018 kubernetes": ({"INVOKE_VERSIONS_KUBERNETES": "1.9.3"}, [], "versions.kubernetes", "1.37.2"),
    "kubernetes with a leading zero": ({"INVOKE_VERSIONS_KUBERNETES": "1.37.02"}, [], "versions.kubernetes", "1.37.2"),
    "kubernetes with a newline": ({"INVOKE_VERSIONS_KUBERNETES": "1.37.2\n"}, [], "versions.kubernetes", "1.37.2"),
    "reversed nodeport range": (
        {"INVOKE_OPENSTACK_NODEPORT_RANGE": "40000-30000"},
        [],
        "openstack.nodeport_range",
        "LOW <= HIGH",
    ),
    "nodeport range past 65535": (
        {"INVOKE_OPENSTACK_NODEPORT_RANGE": "30000-70000"},
        [],
        "openstack.nodeport_range",
        "65535",
    ),
    "2018 openstack branch": ({"INVOKE_VERSIONS_OPENSTACK_BRANCH": "queens"}, [], "versions.openstack_branch", "stable/"),
    "unknown octavia provider": ({"INVOKE_DEVSTACK_OCTAVIA_PROVIDER": "haproxy"}, [], "devstack.octavia_provider", "ovn"),
    "overlapping subnets": ({"INVOKE_CLUSTER_POD_SUBNET": "10.96.0.0/16"}, [], "cluster.pod_subnet", "overlap"),
    "no control plane": ({"INVOKE_CLUSTER_NODES": "[{name: w1, role: worker}]"}, [], "cluster.nodes", "control-plane"),
    "duplicate nodes": (
        {"INVOKE_CLUSTER_NODES": "[{name: m, role: control-plane}, {name: m, role: worker}]"},
        [],
        "cluster.nodes",
        "unique",
    ),
    "unknown verify check": ({"INVOKE_VERIFY_CHECKS": "[lb, dns]"}, [], "verify.checks.1", "Fix:"),
    "missing -f file": ({}, ["-f", "does-not-exist.yaml"], "-f does-not-exist.yaml", "Fix:"),
    # hostile values: each would reach a shell, local.conf, cloud.conf or ssh_config ({tmp}/pwned
    # must never appear: nothing ran)
    "dest with a command": ({"INVOKE_DEVSTACK_DEST": "/opt/$(touch {tmp}/pwned)"}, [], "devstack.dest", "shell"),
    "dest with ..": ({"INVOKE_DEVSTACK_DEST": "/opt/../etc"}, [], "devstack.dest", ".."),
    "branch as an option": ({"INVOKE_DEVSTACK_BRANCH": "--upload-pack=touch {tmp}/pwned"}, [], "devstack.branch", "'-'"),
    "branch with a newline": ({"INVOKE_DEVSTACK_BRANCH": "master\nADMIN_PASSWORD=x"}, [], "devstack.branch", "git branch"),
    "amphora image with a command": (
        {"INVOKE_DEVSTACK_AMPHORA_IMAGE": "/opt/a.qcow2;touch {tmp}/pwned"},
        [],
        "devstack.amphora_image",
        "shell",
    ),
    "repo with a command": ({"INVOKE_DEVSTACK_REPO": "https://x/$(touch {tmp}/pwned)"}, [], "devstack.repo", "Fix:"),
    "ssh user with a directive": (
        {"INVOKE_CLUSTER_SSH_USER": "ubuntu\n  ProxyCommand touch {tmp}/pwned"},
        [],
        "cluster.ssh_user",
        "ssh_config",
    ),
    "network with a section": (
        {"INVOKE_OPENSTACK_NETWORK": "private\n[Global]\nauth-url = http://evil"},
        [],
        "openstack.network",
        "cloud.conf",
    ),
    "external network with a key": (
        {"INVOKE_OPENSTACK_EXTERNAL_NETWORK": "public\nlb-provider = x"},
        [],
        "openstack.external_network",
        "cloud.conf",
    ),
    "admin password with a command": (
        {"OSK8S_ADMIN_PASSWORD": "Pw$(touch {tmp}/pwned)"},
        [],
        "OSK8S_ADMIN_PASSWORD",
        "value not shown",
    ),
    "image over http without checksum": (
        {"INVOKE_OPENSTACK_IMAGE_URL": "http://example.invalid/n.img"},
        [],
        "openstack.image",
        "https",
    ),
    "image with capitals": ({"INVOKE_CLUSTER_IMAGES_OCCM": "OCCM:dev"}, [], "cluster.images.occm", "lowercase"),
    "image id as an image": ({"INVOKE_CLUSTER_IMAGES_CINDER_CSI": "f" * 64}, [], "cluster.images.cinder_csi", "64-byte"),
    "image with a manifest line": (
        {"INVOKE_CLUSTER_IMAGES_OCCM": "occm:dev\n        command: [touch, {tmp}/pwned]"},
        [],
        "cluster.images.occm",
        "not an image reference",
    ),
    "unknown image key": (
        {},
        ["cluster:\n  images:\n    ocm: occm:dev\n"],
        "cluster.images.ocm",
        "did you mean cluster.images.occm",
    ),
    "allowed cidr not a network": (
        {"INVOKE_OPENSTACK_ALLOWED_CIDRS": "[0.0.0.0/33]"},
        [],
        "openstack.allowed_cidrs.0",
        "CIDR",
    ),
}


@pytest.fixture(scope="module")
def offline():
    """A network namespace with nothing but loopback: should validation ever let a case through,
    the task it runs still cannot reach the network (vagrant box add, git fetch, a cloud)."""
    import os
    import subprocess

    ns = f"o8off{os.getpid()}"  # this run's own: two test runs at once must not delete each other's
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
    yield ns
    subprocess.run(["ip", "netns", "del", ns], check=True)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_config_is_one_line_with_fix_and_no_side_effect(name, inv, tmp_path, offline):
    env, extra, key, words = CASES[name]
    state = tmp_path / "state"
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in env.items()}
    env = {**env, "INVOKE_LAB_STATE_DIR": str(state)}
    task = "devstack.configure" if "DEVSTACK" in "".join(env) or "OSK8S_ADMIN" in "".join(env) else "host.up"
    args = [task, "--dry-run"]
    if extra and extra[0].startswith("--"):
        args += extra
    elif extra and extra[0] == "-f":
        args = ["-f", str(tmp_path / extra[1]), *args]
        key = f"-f {tmp_path / extra[1]}"
    elif extra:
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(extra[0])
        args = ["-f", str(cfg), *args]
    result = inv(args, env=env, timeout=60, netns=offline)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert key in lines[0] and words in lines[0], lines[0]
    assert not state.exists(), "config errors must not create any file"
    assert not (tmp_path / "pwned").exists(), "a hostile value ran"
    if "OSK8S_ADMIN_PASSWORD" in env:
        assert env["OSK8S_ADMIN_PASSWORD"] not in result.stdout + result.stderr


def test_at_least_fifteen_cases():
    assert len(CASES) >= 15


@pytest.mark.parametrize(
    "text, where",
    [("host:\n  memory: 4096\n   cpus: 2\n", ":3:8: not valid YAML"), ("host: [1, 2\n", ":2:1: not valid YAML")],
)
def test_osk8s_names_file_line_and_column_of_a_broken_config_file(tmp_path, text, where, offline):
    """`osk8s` (inv with this collection) turns Invoke's YAML traceback into one line, exit 2."""
    import subprocess
    import sys
    from pathlib import Path

    bad = tmp_path / "broken.yaml"
    bad.write_text(text)
    osk8s = str(Path(sys.executable).parent / "osk8s")
    r = subprocess.run(
        ["ip", "netns", "exec", offline, osk8s, "-f", str(bad), "host.up", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "INVOKE_LAB_STATE_DIR": str(tmp_path / "state")},
    )
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"{bad}{where}") and "Fix:" in lines[0]
    assert not (tmp_path / "state").exists()
