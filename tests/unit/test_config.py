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
    s = config.validate(
        {"host": {"memory": "3072", "nested": "no"}, "cluster": {"nodes": "[{name: cp, role: control-plane}]"}}
    )
    assert s.host.memory == 3072 and s.host.nested is False
    assert [n.name for n in s.cluster.nodes] == ["cp"]


def test_invoke_chain_precedence(tmp_path, monkeypatch):
    """namespace defaults < project invoke.yaml < INVOKE_* env < -f file < flags."""
    (tmp_path / "invoke.yaml").write_text("host: {memory: 1111, cpus: 3}\nlab: {name: from-project}\n")
    runtime = tmp_path / "run.yaml"
    runtime.write_text("host: {memory: 2222}\n")
    monkeypatch.setenv("INVOKE_HOST_MEMORY", "3333")
    monkeypatch.setenv("INVOKE_HOST_CPUS", "5")
    cfg = invoke.Config(
        defaults={**invoke.Config.global_defaults(), **namespace_defaults()},
        project_location=str(tmp_path),
        runtime_path=str(runtime),
    )
    cfg.load_project()
    cfg.load_shell_env()
    cfg.load_runtime()
    c = invoke.Context(config=cfg)
    s = config.load(c)
    assert s.lab.name == "from-project"  # project file
    assert s.host.cpus == 5  # env beats project
    assert s.host.memory == 2222  # -f beats env
    assert config.load(c, {"host.memory": 4444}).host.memory == 4444  # flag beats all


def test_an_image_set_through_the_environment(tmp_path, monkeypatch):
    """cluster.images.* are declared, so INVOKE_CLUSTER_IMAGES_OCCM reaches the model; unset is upstream's."""
    monkeypatch.setenv("INVOKE_CLUSTER_IMAGES_OCCM", "occm:dev")
    cfg = invoke.Config(defaults={**invoke.Config.global_defaults(), **namespace_defaults()}, project_location=str(tmp_path))
    cfg.load_shell_env()
    s = config.load(invoke.Context(config=cfg))
    assert s.cluster.images.occm == "occm:dev" and s.cluster.images.cinder_csi is None


def test_every_default_key_is_declared_for_invoke():
    declared = namespace_defaults()
    assert declared["host"]["management_network"] == {"name": None, "address": None}
    assert set(declared) == set(DEFAULTS)


@pytest.mark.parametrize(
    "values, key, words",
    [
        ({"lab": {"name": "my_lab"}}, "lab.name", "DNS-1123"),
        (
            {"cluster": {"nodes": [{"name": "Worker_1", "role": "worker"}, {"name": "m", "role": "control-plane"}]}},
            "cluster.nodes.0.name",
            "kubelet",
        ),
        ({"host": {"memroy": 1}}, "host.memroy", "did you mean host.memory"),
        ({"host": {"memory_": 1}}, "unknown key host.memory_:", "did you mean host.memory"),
        ({"log": {"json_": "x"}}, "unknown key log.json_:", "did you mean log.json"),  # the field's Python name
        ({"log": {"json": 5}}, "log.json = 5", "valid string"),
        ({"host": {"memory": -1}}, "host.memory", "greater than or equal to 512"),
        ({"host": {"driver": "xen"}}, "host.driver", "'kvm' or 'qemu'"),
        ({"cluster": {"images": {"occm": "OCCM:dev"}}}, "cluster.images.occm = 'OCCM:dev'", "must be lowercase"),
        (
            {"cluster": {"images": {"cinder_csi": "cinder:dev\n        command: [sh]"}}},
            "cluster.images.cinder_csi",
            "not an image reference",
        ),
        ({"cluster": {"images": {"keystone_auth": "a" * 64}}}, "cluster.images.keystone_auth", "64-byte"),
        ({"cluster": {"images": {"ocm": "occm:dev"}}}, "cluster.images.ocm", "did you mean cluster.images.occm"),
    ],
)
def test_errors_name_key_value_and_fix(values, key, words):
    with pytest.raises(config.ConfigError) as err:
        config.validate(values)
    line = str(err.value)
    assert "\n" not in line and key in line and words in line
    assert "Fix:" in line or "did you mean" in line


@pytest.mark.parametrize(
    "values, start, fix",
    [
        (
            {"host": {"driver": "qemu", "cpu_mode": "host-passthrough"}},
            "config: host.cpu_mode = 'host-passthrough'",
            "maximum",
        ),
        (
            {"cluster": {"nodes": [{"name": "m", "role": "control-plane"}, {"name": "m", "role": "worker"}]}},
            "config: cluster.nodes = 'm': node names must be unique",
            "own name",
        ),
        ({"cluster": {"nodes": [{"name": "w", "role": "worker"}]}}, "config: cluster.nodes = ", "role: control-plane"),
        ({"cluster": {"pod_subnet": "10.96.0.0/16"}}, "config: cluster.pod_subnet = '10.96.0.0/16': overlaps", "disjoint"),
        ({"openstack": {"image": {"name": "n", "url": "http://x/n.img"}}}, "config: openstack.image.url = ", "https"),
    ],
)
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


def generic(key):
    return f"Fix: set {key} to a valid value (invoke.yaml, -f FILE or INVOKE_{key.upper().replace('.', '_')})"


DNS = (
    "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit, at most "
    "63 characters (kubelet rejects node names with '_' or capitals)"
)
PORTS = (
    "must be LOW-HIGH with 1 <= LOW <= HIGH <= 65535 (kube-apiserver's --service-node-port-range, e.g. 30000-32767). "
    + generic("openstack.nodeport_range")
)
BRANCH = "must be a git branch name: letters, digits and . _ - + /, not starting with '-' or '/', no '..'. " + generic(
    "devstack.branch"
)
DEST = (
    "must be an absolute path of letters, digits and . _ - + / (no '..', no spaces, quotes, $ or newlines: it lands in "
    "shell commands and in local.conf). " + generic("devstack.dest")
)
ONE_LINE = (
    "must be one line without quotes, backslashes or control characters, not starting with '-' or a space (it is "
    "written into cloud.conf and ssh_config). " + generic("openstack.network")
)
USER = "must be a POSIX user name: lower-case letters, digits, '_' and '-' (it is written into ssh_config). " + generic(
    "cluster.ssh_user"
)


VALIDATED = [
    ("openstack.nodeport_range", "0-100", PORTS),
    ("openstack.nodeport_range", "200-100", PORTS),
    ("openstack.nodeport_range", "30000-65536", PORTS),
    ("openstack.nodeport_range", "abc", PORTS),
    ("openstack.nodeport_range", "1-65535", None),
    ("openstack.nodeport_range", "30080-30080", None),
    ("devstack.branch", "-b", BRANCH),
    ("devstack.branch", "/b", BRANCH),
    ("devstack.branch", "a..b", BRANCH),
    ("devstack.branch", "b.", BRANCH),
    ("devstack.branch", "b/", BRANCH),
    ("devstack.branch", "b.lock", BRANCH),
    ("devstack.branch", "b c", BRANCH),
    ("devstack.branch", "stable/2026.1", None),
    ("devstack.branch", "Fix_1+x-y", None),
    ("devstack.dest", "opt/stack", DEST),
    ("devstack.dest", "/opt/../etc", DEST),
    ("devstack.dest", "/opt/stack/..", DEST),
    ("devstack.dest", "/opt//stack", DEST),
    ("devstack.dest", "/opt/st ack", DEST),
    ("devstack.dest", "/Opt/stack-2.0/x_y+z", None),
    ("openstack.network", "", ONE_LINE),
    ("openstack.network", 'a"b', ONE_LINE),
    ("openstack.network", "a\\b", ONE_LINE),
    ("openstack.network", "a\nb", ONE_LINE),
    ("openstack.network", "a\x7fb", ONE_LINE),
    ("openstack.network", "-net", ONE_LINE),
    ("openstack.network", " net", ONE_LINE),
    ("openstack.network", "net ", ONE_LINE),
    ("openstack.network", "Private Net-1", None),
    ("cluster.ssh_user", "Ubuntu", USER),
    ("cluster.ssh_user", "1user", USER),
    ("cluster.ssh_user", "_svc-1", None),
    ("verify.namespace", "a" * 64, DNS + ". " + generic("verify.namespace")),
    ("verify.namespace", "a" * 63, None),
    (
        "cluster.pod_subnet",
        "10.244.0.1/16",
        "not a network in CIDR form (10.244.0.1/16 has host bits set). " + generic("cluster.pod_subnet"),
    ),
    (
        "host.box",
        "",
        "no Vagrant box configured. Fix: name a Vagrant box with a libvirt flavour, e.g. cloud-image/ubuntu-24.04",
    ),
    ("host.cpus", 0, "Input should be greater than or equal to 1. " + generic("host.cpus")),
    (
        "host.driver",
        "xen",
        "Input should be 'kvm' or 'qemu'. Fix: use 'kvm' on hosts with VT-x/AMD-V (see "
        "`inv host.check`), else 'qemu' (TCG, slow)",
    ),
]


@pytest.mark.parametrize(
    "key, value, message",
    [  # ids without backslashes: see test_fact_cases.case_id
        pytest.param(k, v, m, id=f"{k}={v!r}".replace("\\", "/")[:60] + ("" if m else " ok")) for k, v, m in VALIDATED
    ],
)
def test_each_validator_names_the_rule_and_the_fix(key, value, message):
    """Every value that reaches a shell, a file format or an API is checked, and a bad one is one
    line: the key, the value, what the value must be, and how to set it."""
    section, _, leaf = key.partition(".")
    if message is None:
        assert getattr(getattr(config.validate({section: {leaf: value}}), section), leaf) == value
        return
    with pytest.raises(config.ConfigError) as err:
        config.validate({section: {leaf: value}})
    assert err.value.problems == [f"config: {key} = {value!r}: {message}"]


@pytest.mark.parametrize(
    "values, problem",
    [
        ({"host": {"zzzzzz": 1}}, "config: unknown key host.zzzzzz: remove it; `inv --help TASK` lists the settings"),
        (
            {"lab": {"name": {"a": 1}}},
            "config: lab.name = '{...}': Input should be a valid string. Fix: use lower-case "
            "letters, digits and '-' (e.g. 'osk8s-lab')",
        ),
        (
            {"host": 3},
            "config: a section is not a mapping ('int' object has no attribute 'get'). Fix: write it as `key: value` lines",
        ),
        (
            {"cluster": {"nodes": [{"name": "m", "role": "boss"}]}},
            "config: cluster.nodes.0.role = 'boss': Input should be 'control-plane' or 'worker'. "
            "Fix: give each node a DNS-1123 name and a role (control-plane|worker), "
            "e.g. [{name: master, role: control-plane}, {name: worker-1, role: worker}]",
        ),
    ],
    ids=["unknown, nothing close", "a mapping for a string", "a section that is a scalar", "a list item's key"],
)
def test_problems_that_are_not_one_bad_value(values, problem):
    with pytest.raises(config.ConfigError) as err:
        config.validate(values)
    assert err.value.problems == [problem] and str(err.value) == problem


def test_several_problems_are_one_line_each_in_the_message():
    with pytest.raises(config.ConfigError) as err:
        config.validate({"host": {"memory": 0, "cpus": 0}})
    assert str(err.value) == "\n".join(err.value.problems) and len(err.value.problems) == 2


def test_keys_derived_from_others_yield_to_a_given_value():
    derived = config.validate({"versions": {"box": "debian/bookworm64", "box_version": "12.2"}})
    assert (derived.host.box, derived.host.box_version) == ("debian/bookworm64", "12.2")
    assert derived.host.vagrantfile == str(config.PROJECT_DIR / "Vagrantfile")
    assert derived.devstack.branch == DEFAULTS["versions"]["openstack_branch"]
    given = config.validate(
        {
            "versions": {"box": "debian/bookworm64", "box_version": "12.2", "openstack_branch": "master"},
            "host": {"box": "local/box", "vagrantfile": "/lab/Vagrantfile"},
            "devstack": {"branch": "stable/2026.1"},
        }
    )
    # a box of one's own does not take the version pinned for the default box
    assert (given.host.box, given.host.box_version, given.host.vagrantfile) == ("local/box", None, "/lab/Vagrantfile")
    assert given.devstack.branch == "stable/2026.1"
    pinned = config.validate({"host": {"box": "local/box", "box_version": "3"}})
    assert (pinned.host.box, pinned.host.box_version) == ("local/box", "3")
    default_box = config.validate({"versions": {"box_version": "12.2"}, "host": {"box_version": "12.1"}})
    assert (default_box.host.box, default_box.host.box_version) == (DEFAULTS["versions"]["box"], "12.1")


def test_flags_are_applied_in_order_and_none_means_not_given():
    s = config.validate({}, {"host.cpus": None, "host.memory": "4096", "host.management_network.name": "mgmt"})
    assert (s.host.memory, s.host.cpus, s.host.management_network.name) == (4096, DEFAULTS["host"]["cpus"], "mgmt")
    with pytest.raises(config.ConfigError) as err:
        config.validate({}, {"nosuch.key": 1})
    assert err.value.problems == ["config: unknown key nosuch: remove it; `inv --help TASK` lists the settings"]


def test_patches_are_files_in_devstack_patches_or_absolute_paths(tmp_path):
    patch = tmp_path / "fix.patch"
    patch.write_text("--- a\n+++ b\n")
    s = config.validate({"devstack": {"patches": [str(patch)]}})
    assert s.devstack.patches == [str(patch)] and s.devstack.patch_path(str(patch)) == patch
    assert s.devstack.patch_path("fix.patch") == config.PROJECT_DIR / "devstack" / "patches" / "fix.patch"
    with pytest.raises(config.ConfigError) as err:
        config.validate({"devstack": {"patches": ["nosuch.patch", str(tmp_path / "gone.patch")]}})
    assert err.value.problems == [
        f"config: devstack.patches.0 = 'nosuch.patch': no patch file {config.PROJECT_DIR}/devstack/patches/nosuch.patch. "
        "Fix: put the patch in devstack/patches/ and list its file name",
        f"config: devstack.patches.1 = '{tmp_path}/gone.patch': no patch file {tmp_path}/gone.patch. "
        "Fix: put the patch in devstack/patches/ and list its file name",
    ]


def test_invoke_lists_and_mappings_arrive_as_plain_values(tmp_path):
    (tmp_path / "invoke.yaml").write_text(
        "cluster:\n  nodes: [{name: cp, role: control-plane}, {name: w1, role: worker}]\n"
        "openstack: {allowed_cidrs: [10.0.0.0/24]}\n"
    )
    cfg = invoke.Config(defaults={**invoke.Config.global_defaults(), **namespace_defaults()}, project_location=str(tmp_path))
    cfg.load_project()
    s = config.load(invoke.Context(config=cfg))
    assert [(n.name, n.role) for n in s.cluster.nodes] == [("cp", "control-plane"), ("w1", "worker")]
    assert s.openstack.allowed_cidrs == ["10.0.0.0/24"]
