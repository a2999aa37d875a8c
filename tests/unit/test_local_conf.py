"""local.conf golden files for both Octavia providers (UPDATE_GOLDEN=1 rewrites them)."""

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from osk8s_tasks.core import config
from osk8s_tasks.devstack.stack import clouds_yaml
from osk8s_tasks.devstack.steps import local_conf

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
SECRETS = {"admin": "adminpw", "database": "dbpw", "rabbit": "rabbitpw", "service": "servicepw"}


def _session(**devstack):
    return SimpleNamespace(settings=config.validate({"lab": {"name": "golden"}, "devstack": devstack}), dry_run=False)


def _check(name, text):
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; review, then UPDATE_GOLDEN=1 to accept"


@pytest.mark.parametrize(
    "provider, extra",
    [
        ("amphora", {"amphora_image": "/opt/stack/amphora-x64-haproxy.qcow2"}),
        ("ovn", {"enable_barbican": True}),
    ],
)
def test_local_conf_golden(provider, extra):
    text = local_conf(_session(octavia_provider=provider, **extra), "192.168.121.10", SECRETS)
    _check(f"local.conf.{provider}", text)
    assert "HOST_IP=192.168.121.10" in text and "MULTI_HOST" not in text


def test_clouds_yaml_golden():
    _check("clouds.yaml", clouds_yaml(_session(), "192.168.121.10", SECRETS))


@pytest.mark.parametrize("provider", ["amphora", "ovn"])
def test_enabled_services_as_devstack_reads_them(provider):
    """ENABLED_SERVICES as bash (DevStack) evaluates localrc: nova's metadata API (lib/nova starts
    it only as n-api-meta; without it cloud-init on the nodes never gets the SSH key) and the OVN
    agent under the name stable/2026.1's stackrc uses."""
    import subprocess

    text = local_conf(_session(octavia_provider=provider), "192.168.121.10", SECRETS)
    localrc = "\n".join(ln for ln in text.split("[[local|localrc]]", 1)[1].splitlines() if ln.startswith("ENABLED_SERVICES"))
    services = (
        subprocess.run(["bash", "-c", localrc + '\necho "$ENABLED_SERVICES"'], capture_output=True, text=True, check=True)
        .stdout.strip()
        .split(",")
    )
    assert "n-api-meta" in services and "q-ovn-agent" in services and "q-ovn-metadata-agent" not in services
    assert {"n-api", "c-vol", "o-api", "neutron-api"} <= set(services)


@pytest.mark.parametrize(
    "branch, agent",
    [
        ("stable/2026.1", "q-ovn-agent"),
        ("master", "q-ovn-agent"),
        ("stable/2025.2", "q-ovn-agent"),
        ("stable/2025.1", "q-ovn-metadata-agent"),
        ("unmaintained/2024.1", "q-ovn-metadata-agent"),
    ],
)
def test_ovn_agent_name_follows_the_branch(branch, agent):
    from osk8s_tasks.devstack.steps import ovn_agent

    assert ovn_agent(branch) == agent
