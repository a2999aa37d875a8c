"""Config: typing, defaults, precedence, and bad input that never half-applies."""

import textwrap

import invoke
import pytest

from osk8s_tasks.core import config
from osk8s_tasks.core.defaults import DEFAULTS, namespace_defaults


def test_defaults_validate_and_derive():
    s = config.validate({})
    assert s.host.cpu_mode == "host-passthrough"  # kvm default
    assert s.host.box == DEFAULTS["versions"]["box"]
    assert s.devstack.branch == DEFAULTS["versions"]["openstack_branch"]
    assert s.lab_dir.name == "osk8s"


def test_qemu_driver_derives_maximum_cpu_mode():
    s = config.validate({"host": {"driver": "qemu"}})
    assert s.host.cpu_mode == "maximum"


def test_flags_override_config():
    s = config.validate({"host": {"memory": 2048}}, {"host.memory": "4096", "host.cpus": None})
    assert s.host.memory == 4096
    assert s.host.cpus == DEFAULTS["host"]["cpus"]


def test_env_strings_are_typed_by_the_model():
    s = config.validate({"host": {"memory": "3072", "nested": "no"},
                         "cluster": {"nodes": "[{name: cp, role: control-plane}]"}})
    assert s.host.memory == 3072 and s.host.nested is False
    assert [n.name for n in s.cluster.nodes] == ["cp"]


def test_invoke_chain_precedence(tmp_path, monkeypatch):
    """namespace defaults < project invoke.yaml < INVOKE_* env < -f file < flags."""
    (tmp_path / "invoke.yaml").write_text("host: {memory: 1111, cpus: 3}\nlab: {name: from-project}\n")
    runtime = tmp_path / "run.yaml"
    runtime.write_text("host: {memory: 2222}\n")
    monkeypatch.setenv("INVOKE_HOST_MEMORY", "3333")
    monkeypatch.setenv("INVOKE_HOST_CPUS", "5")
    cfg = invoke.Config(defaults={**invoke.Config.global_defaults(), **namespace_defaults()},
                        project_location=str(tmp_path), runtime_path=str(runtime))
    cfg.load_project()
    cfg.load_shell_env()
    cfg.load_runtime()
    c = invoke.Context(config=cfg)
    s = config.load(c)
    assert s.lab.name == "from-project"  # project file
    assert s.host.cpus == 5  # env beats project
    assert s.host.memory == 2222  # -f beats env
    assert config.load(c, {"host.memory": 4444}).host.memory == 4444  # flag beats all


def test_every_default_key_is_declared_for_invoke():
    declared = namespace_defaults()
    assert declared["host"]["management_network"] == {"name": None, "address": None}
    assert set(declared) == set(DEFAULTS)


@pytest.mark.parametrize(
    "values, key, words",
    [
        ({"lab": {"name": "my_lab"}}, "lab.name", "DNS-1123"),
        ({"cluster": {"nodes": [{"name": "Worker_1", "role": "worker"}, {"name": "m", "role": "control-plane"}]}},
         "cluster.nodes.0.name", "kubelet"),
        ({"host": {"memroy": 1}}, "host.memroy", "did you mean host.memory"),
        ({"host": {"memory_": 1}}, "unknown key host.memory_:", "did you mean host.memory"),
        ({"log": {"json_": "x"}}, "unknown key log.json_:", "did you mean log.json"),  # the field's Python name
        ({"log": {"json": 5}}, "log.json = 5", "valid string"),
        ({"host": {"memory": -1}}, "host.memory", "greater than or equal to 512"),
        ({"host": {"driver": "xen"}}, "host.driver", "'kvm' or 'qemu'"),
    ],
)
def test_errors_name_key_value_and_fix(values, key, words):
    with pytest.raises(config.ConfigError) as err:
        config.validate(values)
    line = str(err.value)
    assert "\n" not in line and key in line and words in line
    assert "Fix:" in line or "did you mean" in line


@pytest.mark.parametrize("values, start, fix", [
    ({"host": {"driver": "qemu", "cpu_mode": "host-passthrough"}}, "config: host.cpu_mode = 'host-passthrough'", "maximum"),
    ({"cluster": {"nodes": [{"name": "m", "role": "control-plane"}, {"name": "m", "role": "worker"}]}},
     "config: cluster.nodes = 'm': node names must be unique", "own name"),
    ({"cluster": {"nodes": [{"name": "w", "role": "worker"}]}}, "config: cluster.nodes = ", "role: control-plane"),
    ({"cluster": {"pod_subnet": "10.96.0.0/16"}}, "config: cluster.pod_subnet = '10.96.0.0/16': overlaps", "disjoint"),
    ({"openstack": {"image": {"name": "n", "url": "http://x/n.img"}}}, "config: openstack.image.url = ", "https"),
])
def test_model_level_problems_name_the_exact_key_and_fix(values, start, fix):
    with pytest.raises(config.ConfigError) as err:
        config.validate(values)
    assert str(err.value).startswith(start) and fix in str(err.value), str(err.value)
    assert "Fix: set " not in str(err.value)  # never the generic "set <section> to a valid value"


def test_several_problems_give_one_line_each():
    with pytest.raises(config.ConfigError) as err:
        config.validate({"host": {"memory": 0, "cpus": 0}})
    assert len(err.value.problems) == 2


def test_example_files_validate():
    import yaml

    from osk8s_tasks.core.config import PROJECT_DIR

    for path in [PROJECT_DIR / "invoke.yaml", *sorted((PROJECT_DIR / "examples").glob("*.yaml"))]:
        values = yaml.safe_load(textwrap.dedent(path.read_text())) or {}
        config.validate(values)
