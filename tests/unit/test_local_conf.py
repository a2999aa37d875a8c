"""local.conf golden files for both Octavia providers (UPDATE_GOLDEN=1 rewrites them)."""

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from osk8s_tasks import config
from osk8s_tasks.devstack import local_conf
from osk8s_tasks.devstack_stack import clouds_yaml

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
SECRETS = {"admin": "adminpw", "database": "dbpw", "rabbit": "rabbitpw", "service": "servicepw"}


def _session(**devstack):
    return SimpleNamespace(settings=config.validate({"lab": {"name": "golden"}, "devstack": devstack}), dry_run=False)


def _check(name, text):
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; review, then UPDATE_GOLDEN=1 to accept"


@pytest.mark.parametrize("provider, extra", [
    ("amphora", {"amphora_image": "/opt/stack/amphora-x64-haproxy.qcow2"}),
    ("ovn", {"enable_barbican": True}),
])
def test_local_conf_golden(provider, extra):
    text = local_conf(_session(octavia_provider=provider, **extra), "192.168.121.10", SECRETS)
    _check(f"local.conf.{provider}", text)
    assert "HOST_IP=192.168.121.10" in text and "MULTI_HOST" not in text


def test_clouds_yaml_golden():
    _check("clouds.yaml", clouds_yaml(_session(), "192.168.121.10", SECRETS))
