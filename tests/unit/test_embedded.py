"""lab.kind embedded, the parts that need no machine: the settings an embedded lab fixes, its
stages, the verify table lab.up ends with, and reading a server's fixed IP."""

import json
from types import SimpleNamespace

import pytest
from invoke.exceptions import Exit

from osk8s_tasks.core import config
from osk8s_tasks.core import embedded as embedded_settings
from osk8s_tasks.core.engine import Result
from osk8s_tasks.embedded.steps import fixed_ip
from osk8s_tasks.lab.stages import EMBEDDED_STAGES, STAGES, stages_of, verify_table
from osk8s_tasks.lab.tasks import selected


def test_an_embedded_lab_points_every_stage_at_its_own_machines(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded_settings, "EMBEDDED_RUN", tmp_path)
    s = config.validate({"lab": {"name": "e1", "kind": "embedded"}, "embedded": {"workers": 2}})
    assert s.devstack.ssh_target == "gateway" and s.cluster.ssh_config == str(tmp_path / "e1" / "ssh_config")
    assert [n.name for n in s.cluster.nodes] == ["master", "worker-1", "worker-2"]
    assert (s.openstack.cloud, s.openstack.admin_cloud, s.openstack.image.file) == (
        "demo",
        "admin",
        str(tmp_path / "e1" / "node.qcow2"),
    )
    default_key = s.versions.kubernetes_apt_key_fingerprint
    (tmp_path / "e1").mkdir()
    (tmp_path / "e1" / "pins.json").write_text(json.dumps({"kubernetes_apt_key_fingerprint": "A" * 40}))
    pinned = config.validate({"lab": {"name": "e1", "kind": "embedded"}})
    assert pinned.versions.kubernetes_apt_key_fingerprint == "A" * 40 != default_key  # the nodes' own pins
    full = config.validate({"lab": {"name": "e1"}})
    assert full.lab.kind == "full" and full.devstack.ssh_target is None and full.openstack.image.file is None


@pytest.mark.parametrize(
    "values, key",
    [({"lab": {"kind": "vm"}}, "lab.kind"), ({"lab": {"kind": "embedded"}, "embedded": {"workers": 9}}, "embedded.workers")],
)
def test_bad_embedded_values_name_the_key(values, key):
    with pytest.raises(config.ConfigError) as e:
        config.validate(values)
    assert str(e.value).startswith(f"config: {key} = ") and "Fix:" in str(e.value)


def test_embedded_stages_replace_host_and_devstack():
    assert stages_of("embedded") == EMBEDDED_STAGES == ("embedded", "openstack", "cluster", "verify")
    assert stages_of("full") == STAGES
    assert selected(None, "cluster", EMBEDDED_STAGES) == ["embedded", "openstack", "cluster"]
    with pytest.raises(Exit) as e:
        selected("host", None, EMBEDDED_STAGES)
    assert "a stage of the other lab.kind" in str(e.value.message)


def test_the_verify_table_counts_each_checks_assertions_and_says_why():
    def row(task, step, outcome, detail, node="cluster"):
        return Result(task, step, node, outcome, 0.1, detail)

    table = verify_table(
        [
            row("verify.lb", "Service osk8s-verify/echo", "changed", "apply", node="local"),  # an object, not an assertion
            row("verify.lb", "external IP", "ok", "Service echo: 172.24.4.9"),
            row("verify.lb", "HTTP from the devstack VM", "skipped", "embedded lab has no data plane"),
            row("verify.pv", "PVC bound", "failed", "not bound in 180 s"),
            row("verify.keystone", "webhook TokenReview", "ok", "alt_demo authenticated"),
        ]
    ).splitlines()
    assert table[0].split() == ["CHECK", "PASSED", "FAILED", "SKIPPED", "NOTE"]
    assert table[1].split()[:4] == ["lb", "1", "0", "1"] and table[1].endswith("skipped: embedded lab has no data plane")
    assert table[2].split()[:4] == ["pv", "0", "1", "0"] and table[2].endswith("PVC bound: not bound in 180 s")
    assert table[3].split() == ["keystone", "1", "0", "0"]
    assert verify_table([row("cluster.deploy", "x", "ok", "y")]) == ""


def test_a_servers_fixed_ip_is_the_one_on_the_lab_network_never_the_floating_one():
    server = SimpleNamespace(
        addresses={
            "private": [
                {"addr": "172.24.4.7", "OS-EXT-IPS:type": "floating"},
                {"addr": "10.0.0.5", "OS-EXT-IPS:type": "fixed"},
            ],
            "other": [{"addr": "192.168.1.4", "OS-EXT-IPS:type": "fixed"}],
        }
    )
    assert fixed_ip(server, "private") == "10.0.0.5"
    assert fixed_ip(server, "missing") is None


def test_a_private_directory_on_the_way_to_a_program_is_named(tmp_path):
    from osk8s_tasks.embedded.steps import private

    prog = tmp_path / "cache" / "bin" / "kubeadm"
    prog.parent.mkdir(parents=True)
    prog.write_text("")
    for p in (prog, prog.parent, prog.parent.parent, tmp_path):
        p.chmod(0o755)
    assert private(prog) is None or private(prog) not in (prog, prog.parent, prog.parent.parent)
    prog.parent.parent.chmod(0o700)  # built under an inv session's umask 077
    assert private(prog) == prog.parent.parent


def test_the_loopback_cloud_is_ours_to_stop_only_if_this_lab_started_that_very_cloud(tmp_path):
    from osk8s_tasks.embedded.steps import started_here

    mark = tmp_path / "embedded-cloud-started"
    running = {"keystone": ("running", 4242), "nova": ("running", 4243)}
    assert not started_here(mark, running)  # no mark: ./dev test or a user started it
    mark.write_text("starting\n")  # a start that failed half-way is still ours to stop
    assert started_here(mark, running)
    mark.write_text("keystone 4242\n")
    assert started_here(mark, running)
    assert not started_here(mark, {"keystone": ("running", 5151)})  # stopped since, and started by someone else


def test_an_embedded_lab_refuses_user_values_it_would_override():
    with pytest.raises(config.ConfigError) as e:
        config.validate({"lab": {"kind": "embedded"}, "openstack": {"cloud": "mine"}, "cluster": {"nodes": []}})
    problems = str(e.value).splitlines()
    assert any(p.startswith("config: openstack.cloud = 'mine': lab.kind embedded fixes it as 'demo'") for p in problems)
    assert not any("cluster.nodes" in p for p in problems) or any("embedded.workers" in p for p in problems)
    same = config.validate({"lab": {"kind": "embedded"}, "openstack": {"cloud": "demo", "image": {"name": "node"}}})
    assert same.openstack.cloud == "demo"  # the same value is no clash


def test_host_and_devstack_tasks_are_refused_in_an_embedded_lab():
    from osk8s_tasks.core.engine import kind_refusal

    for task in ("host.up", "devstack.prepare", "devstack.deploy"):
        assert "lab.kind is embedded" in kind_refusal(task, "embedded") and "Fix:" in kind_refusal(task, "embedded")
        assert kind_refusal(task, "full") is None
    for task in ("embedded.up", "lab.up", "openstack.deploy", "cluster.deploy", "verify.all", "lab.collect"):
        assert kind_refusal(task, "embedded") is None
