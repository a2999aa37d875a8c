"""The ctr stand-in (tests/peers/k8s/ctr.py) run as the nodes run it, on archives built here: at
least as strict as containerd's ctr, and naming images as containerd's import does."""

import datetime
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.peers.image_archives import docker_save, oci_layout

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ctr (and its stand-in) talk to containerd as root only")


@pytest.fixture
def ctr(tmp_path):
    state = tmp_path / "state" / "images.json"

    def run(*args, env=None):
        full = {k: v for k, v in os.environ.items() if not k.startswith("CONTAINERD_")}
        full.update({"OSK8S_CTR_STATE": str(state), "PYTHONPATH": str(ROOT), **(env or {})})
        return subprocess.run(
            [sys.executable, "-m", "tests.peers.k8s.ctr", *args], env=full, capture_output=True, text=True, timeout=60
        )

    run.images = lambda: json.loads(state.read_text()).get("k8s.io", {}) if state.exists() else {}
    return run


def test_imports_both_formats_with_the_label_and_lists_them(ctr, tmp_path):
    a = docker_save(tmp_path / "a.tar", ["occm:dev"])
    b = oci_layout(tmp_path / "b.tar", {"io.containerd.image.name": "localhost/ingress:dev"})
    assert ctr("-n", "k8s.io", "images", "import", "--label", "osk8s.io/archive=sha256:1", str(a)).returncode == 0
    assert ctr("--namespace=k8s.io", "i", "import", "--label", "plain", str(b)).returncode == 0
    images = ctr.images()
    occm = images["docker.io/library/occm:dev"]
    assert occm["labels"] == {"osk8s.io/archive": "sha256:1"}
    assert occm["target"]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert images["localhost/ingress:dev"]["labels"] == {"plain": "true"}  # commands.LabelArgs
    assert images["localhost/ingress:dev"]["platforms"] == ["linux/amd64"]
    ls = ctr("-n", "k8s.io", "images", "ls")
    assert ls.returncode == 0 and ls.stdout.split()[:6] == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    quiet = ctr("-n", "k8s.io", "images", "ls", "-q").stdout.split()
    assert quiet == ["docker.io/library/occm:dev", "localhost/ingress:dev"]
    # the same name again: updated in place, its labels replaced (imagestore.go Store: Create, else Update)
    assert ctr("-n", "k8s.io", "images", "import", "--label", "osk8s.io/archive=sha256:2", str(a)).returncode == 0
    assert ctr.images()["docker.io/library/occm:dev"]["labels"] == {"osk8s.io/archive": "sha256:2"}


def test_names_as_containerds_imagestore(ctr, tmp_path):
    tag_only = oci_layout(tmp_path / "t.tar", {"org.opencontainers.image.ref.name": "dev"})
    unnamed = docker_save(tmp_path / "u.tar", None)
    short = oci_layout(tmp_path / "s.tar", {"io.containerd.image.name": "occm"})
    for f in (tag_only, unnamed, short):
        assert ctr("-n", "k8s.io", "images", "import", str(f)).returncode == 0  # ctr exits 0 even having stored nothing
    assert sorted(ctr.images()) == [f"import-{datetime.date.today().isoformat()}:dev"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["images", "import", "A"], "namespace 'default' refused"),  # ctr's default namespace, not the CRI's
        (["-n", "moby", "images", "import", "A"], "namespace 'moby' refused"),
        (["-n", "k8s.io", "images", "import", "--bogus", "A"], "flag provided but not defined: -bogus"),
        (["--bogus", "images", "ls"], "flag provided but not defined: -bogus"),
        (["-n", "k8s.io", "images", "import", "--local", "A"], "--local is not implemented"),
        (["-n", "k8s.io", "images", "import", "NOTES"], "archive/tar: invalid tar header"),
        (["-n", "k8s.io", "images", "import", "MISSING"], "no such file or directory"),
        (["-n", "k8s.io", "images", "import", "EMPTY"], "unrecognized image format"),
        (["-n", "k8s.io", "images", "import", "NOINDEX"], "missing index.json in OCI layout 1.0.0"),
        (["-a", "/tmp/other.sock", "-n", "k8s.io", "images", "ls"], 'failed to dial "/tmp/other.sock"'),
        (["-n", "k8s.io", "images", "ls", "name==x"], "list filters are not implemented"),
    ],
)
def test_refused_as_ctr_would_or_stricter(ctr, tmp_path, args, message):
    files = {
        "A": docker_save(tmp_path / "a.tar", ["occm:dev"]),
        "NOTES": tmp_path / "notes.txt",
        "MISSING": tmp_path / "missing.tar",
        "EMPTY": tmp_path / "empty.tar",
        "NOINDEX": oci_layout(tmp_path / "n.tar", {"io.containerd.image.name": "localhost/a:b"}, index=False),
    }
    (tmp_path / "notes.txt").write_text("not a tar\n" * 100)
    (tmp_path / "empty.tar").write_bytes(b"\0" * 1024)
    r = ctr(*[str(files[a]) if a in files else a for a in args])
    assert r.returncode == 1 and r.stderr.startswith("ctr: ") and message in r.stderr, r.stderr
    assert ctr.images() == {}
