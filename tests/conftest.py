import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INV = str(Path(sys.executable).parent / "inv")


# openstacksdk deprecations the tool's own calls could raise become errors (the test then fails
# with the traceback): tests/peers/strict_warnings/sitecustomize.py, imported by `inv` at start-up.
SDK_WARNINGS_AS_ERRORS = {"PYTHONPATH": str(ROOT / "tests" / "peers" / "strict_warnings")}


def run_inv(args, cwd=ROOT, env=None, netns=None, timeout=900):
    """Run the real `inv` CLI, as a user would (optionally inside a network namespace)."""
    cmd = [INV, *args]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def inv():
    return run_inv


def require_root_tools(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        pytest.fail(f"needs root and {missing or tools}: run the tests through ./dev test (it installs them)")


OPENSTACK_BASE = Path(os.environ.get("OSK8S_OPENSTACK_BASE", "/var/lib/osk8s-openstack"))


@pytest.fixture(scope="session")
def loopback_cloud():
    """The loopback OpenStack control plane (osk8s_tasks/embedded/openstack): started here unless .ci/run
    or a developer already started it, and then stopped here too. Yields its clouds.yaml."""
    import time

    loopback = ROOT / "osk8s_tasks" / "embedded" / "openstack" / "loopback.py"
    running = subprocess.run([sys.executable, loopback, "status"], capture_output=True).returncode == 0
    if not running:
        t0 = time.monotonic()
        subprocess.run([sys.executable, loopback, "start"], check=True)
        print(f"\nloopback control plane started in {time.monotonic() - t0:.0f} s")
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(OPENSTACK_BASE / "clouds.yaml")
    yield OPENSTACK_BASE / "clouds.yaml"
    if not running:
        subprocess.run([sys.executable, loopback, "stop"], check=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item (item.rep_setup, rep_call, rep_teardown): fixtures that
    print what a failure needs to be understood (peers' logs) look at it."""
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep
