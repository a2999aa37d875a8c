"""cluster.load-images' decisions, table-tested: import or skip an archive on a node given its
images (`ctr images ls` parsed), and what is refused before the first copy."""

from pathlib import Path

import pytest

from osk8s_tasks.cluster.archives import Archive
from osk8s_tasks.cluster.facts import CtrImage
from osk8s_tasks.cluster.load_images import (
    archive_status,
    decide,
    images_problems,
    import_command,
    local_images,
    split_files,
)
from tests.peers.image_archives import docker_save

SHA = "9e107d9d372bb6826bd81d3542a419d6e277d4d731479571562b82f74494341f"
OTHER = "0" * 64
OCCM = "docker.io/library/occm:dev"
ARCHIVE = Archive(Path("/x/occm.tar"), SHA, 7 << 20, "docker-save", (OCCM,))
TWO = Archive(Path("/x/two.tar"), SHA, 100, "docker-save", (OCCM, "localhost/csi:dev"))


def img(label: str | None = None, digest: str = "sha256:" + "a" * 64) -> CtrImage:
    return CtrImage(
        digest, "application/vnd.docker.distribution.manifest.v2+json", {"osk8s.io/archive": label} if label else {}
    )


DECISIONS = [
    ("nothing on the node", ARCHIVE, {}, "create", "is not on the node"),
    ("the same archive imported", ARCHIVE, {OCCM: img(f"sha256:{SHA}")}, "none", "already imported from occm.tar"),
    ("another archive of the same name", ARCHIVE, {OCCM: img(f"sha256:{OTHER}")}, "update", "from archive sha256:000000"),
    ("the name pulled or loaded by hand", ARCHIVE, {OCCM: img()}, "update", "not loaded by osk8s"),
    ("one of two images missing", TWO, {OCCM: img(f"sha256:{SHA}")}, "create", "localhost/csi:dev is not on the node"),
    (
        "both of two imported",
        TWO,
        {OCCM: img(f"sha256:{SHA}"), "localhost/csi:dev": img(f"sha256:{SHA}")},
        "none",
        "already imported",
    ),
    ("other images do not matter", ARCHIVE, {OCCM: img(f"sha256:{SHA}"), "registry.k8s.io/pause:3.10": img()}, "none", ""),
    ("no containerd", ARCHIVE, None, "fail", "inv cluster.prepare-nodes"),
]


@pytest.mark.parametrize("archive, images, action, why", [d[1:] for d in DECISIONS], ids=[d[0] for d in DECISIONS])
def test_decide(archive, images, action, why):
    d = decide(archive, images)
    assert d.action == action and why in d.reason
    assert ("keep the old build until restarted" in d.reason) == (action == "update")
    if action in ("create", "update"):
        assert d.data["label"] == f"osk8s.io/archive=sha256:{SHA}" and f"copy {archive.path.name}" in d.diff
        assert ("7.0 MiB" if archive is ARCHIVE else "100 B") in d.diff


def test_import_command_is_ctrs_own():
    assert import_command(f"osk8s.io/archive=sha256:{SHA}", "/tmp/osk8s-image.Ab12") == (
        f"ctr -n k8s.io images import --label osk8s.io/archive=sha256:{SHA} /tmp/osk8s-image.Ab12"
    )


@pytest.mark.parametrize(
    "given, paths",
    [
        ("occm.tar", ["occm.tar"]),
        ("occm.tar,csi.tar", ["occm.tar", "csi.tar"]),
        (" a.tar , ,b.tar ", ["a.tar", "b.tar"]),
        (["a.tar", "b.tar"], ["a.tar", "b.tar"]),
        ("", []),
        (None, []),
    ],
)
def test_split_files(given, paths):
    assert split_files(given) == paths


class _Images:  # the two fields component_image reads, without a whole config
    def __init__(self, **kw):
        self.occm = kw.get("occm")
        self.cinder_csi = kw.get("cinder_csi")
        self.octavia_ingress = kw.get("octavia_ingress")
        self.keystone_auth = kw.get("keystone_auth")


class _Settings:
    def __init__(self, **images):
        self.cluster = type("C", (), {"images": _Images(**images)})()
        self.versions = type("V", (), {"cloud_provider_openstack": "v1.36.0"})()


def test_local_images_are_the_ones_not_upstreams():
    s = _Settings(occm="occm:dev", cinder_csi="registry.k8s.io/provider-os/cinder-csi-plugin:v1.36.0")
    assert local_images(s) == {"cluster.images.occm": "occm:dev"}
    assert local_images(_Settings()) == {}


NODES_OK = {"n1": {OCCM: img(f"sha256:{SHA}")}, "n2": {OCCM: img()}}


@pytest.mark.parametrize(
    "wanted, loaded, nodes, problems",
    [
        ({}, [ARCHIVE], {"n1": {}, "n2": {}}, []),
        ({"cluster.images.occm": "occm:dev"}, [ARCHIVE], {"n1": {}}, []),  # in an archive given (normalized)
        ({"cluster.images.occm": "occm:dev"}, [], NODES_OK, []),  # already on every node
        (
            {"cluster.images.occm": "occm:v2"},
            [ARCHIVE],
            NODES_OK,
            [
                "cluster.images.occm = 'occm:v2' is a local build (not upstream's registry.k8s.io/provider-os/"
                "openstack-cloud-controller-manager at versions.cloud_provider_openstack), in none of the archives given "
                "(occm.tar) and not on n1, n2. Fix: add its archive to the command (`docker save -o FILE occm:v2`), or set "
                "cluster.images.occm to the name an archive holds, or unset it for upstream's image"
            ],
        ),
        ({"cluster.images.occm": "occm:dev"}, [], {"n1": {OCCM: img()}, "n2": {}}, ["and not on n2."]),
        (
            {},
            [ARCHIVE],
            {"n1": None, "n2": {}},
            ["containerd is not installed on n1 (no ctr). Fix: inv cluster.prepare-nodes"],
        ),
    ],
)
def test_images_problems(wanted, loaded, nodes, problems):
    found = images_problems(wanted, loaded, nodes)
    assert len(found) == len(problems) and all(p in f for p, f in zip(problems, found, strict=True)), found


def test_archive_status(tmp_path):
    ok, archive = archive_status(str(docker_save(tmp_path / "occm.tar", ["occm:dev"])))
    assert ok.ok and archive.names == (OCCM,) and OCCM in ok.reason
    missing, none = archive_status(str(tmp_path / "nope.tar"))
    assert not missing.ok and none is None and "no such file" in missing.reason and "Fix:" in missing.reason
    (tmp_path / "notes.txt").write_text("not an archive\n" * 100)
    bad, _ = archive_status(str(tmp_path / "notes.txt"))
    assert not bad.ok and "not an image archive" in bad.reason and "Fix:" in bad.reason
    unnamed, _ = archive_status(str(docker_save(tmp_path / "byid.tar", None)))
    assert not unnamed.ok and "no RepoTags" in unnamed.reason
    directory, _ = archive_status(str(tmp_path))
    assert not directory.ok and "not a regular file" in directory.reason
