"""cluster.lint-cloud-config on the 2018 write-up's cloud-config and on a current one."""

from pathlib import Path

import pytest

from osk8s_tasks.cluster import lint as cloudconf
from tests.conftest import run_inv

DATA = Path(__file__).resolve().parent.parent / "data"

MODERN = """[Global]
auth-url = http://192.168.121.15/identity
application-credential-id = 0123
application-credential-secret = s3cret
region = RegionOne
[LoadBalancer]
subnet-id = 1740cd57
floating-network-id = 9f1c
lb-provider = ovn
lb-method = SOURCE_IP_PORT
manage-security-groups = true
create-monitor = true
[LoadBalancerClass "internal"]
subnet-id = abcd
[Networking]
public-network-name = public
"""


def test_2018_cloud_config_names_removed_keys_and_replacements():
    found = {(f.section, f.key, f.kind): f.fix for f in cloudconf.lint((DATA / "2018-cloud-config").read_text())}
    assert "lb-provider" in found[("LoadBalancer", "use-octavia", "removed")]
    assert "Block Storage v3" in found[("BlockStorage", "bs-version", "removed")]
    assert "cinder-csi-plugin" in found[("BlockStorage", "", "misplaced")]
    assert "application credential" in found[("Global", "password", "advice")]
    assert not [k for k in found if k[2] == "unknown"]  # everything else there is still read


def test_current_config_is_clean_and_typos_are_named():
    assert cloudconf.lint(MODERN) == []
    typo = cloudconf.lint(MODERN.replace("lb-method", "lb-methd"))
    assert [(f.kind, f.key) for f in typo] == [("unknown", "lb-methd")] and "did you mean lb-method" in typo[0].fix


def test_cinder_csi_view():
    text = (
        "[Global]\napplication-credential-id = x\napplication-credential-secret = y\n"
        "[BlockStorage]\nrescan-on-resize = true\n"
    )
    assert cloudconf.lint(text, "cinder-csi") == []
    assert cloudconf.lint(text + "[LoadBalancer]\nsubnet-id = a\n", "cinder-csi")[0].kind == "misplaced"


def test_cli_exit_codes_and_no_secret_values():
    r = run_inv(["cluster.lint-cloud-config", str(DATA / "2018-cloud-config")])
    assert r.returncode == 1 and "use-octavia" in r.stdout and "bs-version" in r.stdout
    assert "=password" not in r.stdout and "3fd32295751a41aca601021eba681a29" not in r.stdout
    missing = run_inv(["cluster.lint-cloud-config", "/nonexistent"])
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr


def test_lb_version_is_still_read_and_only_v2_is_accepted():
    """OCCM reads lb-version and exits on any value but v2 (pkg/openstack/openstack.go): not
    'removed'. A value other than v2 is fatal; v2 itself changes nothing."""
    v1 = cloudconf.lint(MODERN.replace("[LoadBalancer]\n", "[LoadBalancer]\nlb-version = v1\n"))
    assert [(f.kind, f.key) for f in v1] == [("fatal", "lb-version")] and "exits at start-up" in v1[0].fix
    v2 = cloudconf.lint(MODERN.replace("[LoadBalancer]\n", '[LoadBalancer]\nLB-Version = "v2"\n'))
    assert [(f.kind, f.key) for f in v2] == [("advice", "LB-Version")] and "only value it accepts" in v2[0].fix
    assert not [
        f
        for f in cloudconf.lint(MODERN.replace("[LoadBalancer]\n", "[LoadBalancer]\nlb-version = v1\n"))
        if f.kind == "removed"
    ]


@pytest.mark.parametrize(
    "line, kind",
    [
        ("lb-version = v2", "advice"),
        ('lb-version = "v2"', "advice"),
        ("lb-version = v2 ; as before", "advice"),
        ("lb-version = v2# as before", "advice"),
        ('lb-version = "v2" # as before', "advice"),
        ("lb-version =", "advice"),
        ('lb-version = ""', "advice"),  # empty: OCCM takes it for v2
        ("lb-version = v1", "fatal"),
        ("lb-version = V2", "fatal"),
        ('lb-version = "v2;"', "fatal"),
        ("lb-version = v2=v1", "fatal"),
        ("lb-version = v1=v2", "fatal"),  # the value is all after the first '='
        ("lb-version", "fatal"),  # gcfg: "blank value not supported for type" (a string needs `=`)
    ],
)
def test_lb_version_values_as_gcfg_and_occm_read_them(line, kind):
    """gcfg strips quotes and cuts an unquoted value at `;` or `#`; OCCM exits on any value but
    empty or v2 (pkg/openstack/openstack.go)."""
    found = cloudconf.lint(MODERN.replace("[LoadBalancer]\n", f"[LoadBalancer]\n{line}\n"))
    assert [(f.line, f.section, f.key, f.kind) for f in found] == [(7, "LoadBalancer", "lb-version", kind)]


def test_keys_and_sections_match_whatever_their_case_as_gcfg_reads_them():
    """gcfg matches names case-insensitively: `Use-Octavia = yes` is the removed key, silently
    ignored upstream, so it is named with its fix, not as an unknown key."""
    text = "[LOADBALANCER]\nUse-Octavia = yes\nSubnet-ID = 1\n[blockstorage]\nBS-Version = v2\n"
    found = {(f.key, f.kind): f.fix for f in cloudconf.lint(text, "occm")}
    assert "lb-provider" in found[("Use-Octavia", "removed")]
    assert "Block Storage v3" in found[("BS-Version", "removed")]
    assert not [k for k in found if k[1] == "unknown"]


F = cloudconf.LintFinding


@pytest.mark.parametrize(
    "text, findings",
    [
        (
            "[Glboal]\nregion = RegionOne\n",
            [F(2, "Glboal", "region", "unknown", "section [Glboal] is not read by occm (did you mean [global]?)")],
        ),
        ("[Octavia]\nprovider = ovn\n", [F(2, "Octavia", "provider", "unknown", "section [Octavia] is not read by occm")]),
        ("region = RegionOne\n[Global]\n", [F(1, "", "region", "unknown", "section [] is not read by occm")]),
        (
            "[Global]\nregoin = RegionOne\n",
            [F(2, "Global", "regoin", "unknown", "not a [Global] key of occm; it is ignored (did you mean region?)")],
        ),
        (
            "[Global]\nXauth-url = http://keystone\n",
            [F(2, "Global", "Xauth-url", "unknown", "not a [Global] key of occm; it is ignored (did you mean auth-url?)")],
        ),
        ("[Global]\nzzz = 1\n", [F(2, "Global", "zzz", "unknown", "not a [Global] key of occm; it is ignored")]),
        (
            "# a comment\n; another\n\n[Global]\n\nregion = RegionOne\n\n[Route]\nrouter = r\n",  # blank lines go on
            [F(9, "Route", "router", "unknown", "not a [Route] key of occm; it is ignored (did you mean router-id?)")],
        ),
        ("[Global]\napplication-credential-secret = c2VjcmV0==\n", []),  # '=' in a value: the key is what precedes the first
    ],
    ids=[
        "section typo",
        "unknown section",
        "key before any section",
        "key typo",
        "a stray letter",
        "unknown key",
        "comments and blank lines",
        "a value with '='",
    ],
)
def test_unknown_sections_and_keys_are_named_with_the_closest_known_one(text, findings):
    assert cloudconf.lint(text) == findings


def test_a_section_read_by_the_other_component_is_named_once():
    text = "[BlockStorage]\nbs-version = v2\nrescan-on-resize = true\nignore-volume-az = true\n"
    assert [(f.line, f.key, f.kind) for f in cloudconf.lint(text)] == [(2, "", "misplaced"), (2, "bs-version", "removed")]


PASSWORD_ADVICE = (
    "a user's password in cloud.conf: use an application credential instead (application-credential-id + "
    "application-credential-secret; inv openstack.prepare creates one) so the cluster never holds the "
    "user's password"
)


@pytest.mark.parametrize(
    "text, findings",
    [
        (
            "[Global]\nauth-url = http://k\nusername = demo\nPassword = pw\n",
            [F(4, "Global", "password", "advice", PASSWORD_ADVICE)],
        ),
        ("[Global]\npassword = pw\napplication-credential-id = 1\napplication-credential-secret = s\n", []),
        (
            "[Global]\nusername = demo\n[LoadBalancer]\npassword = pw\n",
            [F(4, "LoadBalancer", "password", "unknown", "not a [LoadBalancer] key of occm; it is ignored")],
        ),
    ],
    ids=["password", "password beside an application credential", "password in another section"],
)
def test_a_password_is_advised_against_where_it_is_read(text, findings):
    assert cloudconf.lint(text) == findings


def test_the_report_names_line_kind_section_and_key():
    findings = cloudconf.lint("[Global]\nregoin = x\n[BlockStorage]\nbs-version = v2\n")
    assert cloudconf.report("cloud.conf", findings) == (
        "cloud.conf:\n"
        "  line 2   unknown   [Global] regoin: not a [Global] key of occm; it is ignored (did you mean region?)\n"
        "  line 4   misplaced [BlockStorage]: " + cloudconf.SECTION_HINTS[("occm", "blockstorage")] + "\n"
        "  line 4   removed   [BlockStorage] bs-version: " + cloudconf.REMOVED[("blockstorage", "bs-version")]
    )
    assert (
        cloudconf.report("cloud.conf", [])
        == "cloud.conf: no problems: every key is read by current cloud-provider-openstack"
    )


def test_the_rendered_cloud_confs_lint_clean_and_a_planted_2018_key_stops_the_addons():
    """cluster.addons lints what it renders: current OCCM skips unknown keys silently, so this is
    the one place a use-octavia in the tool's own template can be named."""
    from osk8s_tasks.cluster import addons
    from osk8s_tasks.cluster import render as cluster_render
    from osk8s_tasks.core import config
    from osk8s_tasks.core.engine import StepFailed

    s = config.validate({})
    values = dict(
        auth_url="http://k:5000/v3",
        app_credential_id="id",
        app_credential_secret="s3cr3t-value",
        region="RegionOne",
        subnet_id="sub",
        floating_network_id="ext",
    )
    occm, cinder = cluster_render.cloud_conf(s, values), cluster_render.cinder_conf(s, values)
    assert addons.linted(occm, "manifests/cloud.conf.j2", "occm") == occm
    assert addons.linted(cinder, "manifests/cinder-csi.conf.j2", "cinder-csi") == cinder
    planted = occm.replace("[LoadBalancer]\n", "[LoadBalancer]\nuse-octavia = true\n")
    with pytest.raises(StepFailed) as e:
        addons.linted(planted, "manifests/cloud.conf.j2", "occm")
    assert "manifests/cloud.conf.j2" in str(e.value) and "[LoadBalancer] use-octavia: removed" in str(e.value)
    assert "s3cr3t-value" not in str(e.value)
