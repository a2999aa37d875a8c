"""The livenessprobe stand-in against the real cinder-csi-plugin (built from its module), over
real gRPC on a unix socket: the driver name at start, /healthz 200 while the driver answers
Probe, 500 once it is gone; upstream's flag checks."""

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from osk8s_tasks.embedded import build

STANDIN = Path(__file__).resolve().parents[1] / "peers" / "k8s" / "livenessprobe.py"
pytestmark = pytest.mark.k8s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_probe_follows_the_real_driver(tmp_path):
    sock, port = tmp_path / "csi.sock", free_port()
    plugin = subprocess.Popen(
        [
            build.ensure(["cinder-csi-plugin"])["cinder-csi-plugin"],
            f"--endpoint=unix://{sock}",
            "--provide-controller-service=false",
            f"--cloud-config={tmp_path}/none.conf",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    probe = subprocess.Popen(
        [sys.executable, "-I", str(STANDIN), f"--csi-address={sock}", f"--health-port={port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                code, body = healthz(port)
                break
            except OSError:
                assert time.monotonic() < deadline and probe.poll() is None, "the probe never listened"
                time.sleep(0.2)
        assert (code, body) == (200, "ok")
        plugin.terminate()
        plugin.wait(10)
        code, body = healthz(port)
        assert code == 500 and body, body
        assert probe.poll() is None  # it fails the probe, never crashes
    finally:
        for p in (probe, plugin):
            if p.poll() is None:
                p.terminate()
                p.wait(10)
    assert 'CSI driver name driver="cinder.csi.openstack.org"' in probe.stdout.read()


def test_flags_upstream_does_not_know_are_refused(tmp_path):
    r = subprocess.run([sys.executable, "-I", str(STANDIN), "--csi-adress=/x"], capture_output=True, text=True)
    assert r.returncode == 2
    r = subprocess.run(
        [sys.executable, "-I", str(STANDIN), "--health-port=1", "--http-endpoint=:2"], capture_output=True, text=True
    )
    assert r.returncode == 1 and "Only one of" in r.stderr
