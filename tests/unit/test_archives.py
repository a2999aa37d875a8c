"""Which names containerd gives an image archive, and why one is refused (cluster/archives.py):
tables on what the importer reads, then real tarballs built as `docker save` and OCI exporters
write them (tests/peers/image_archives.py)."""

import gzip
import hashlib

import pytest

from osk8s_tasks.cluster.archives import Contents, Refused, names_of, oci_image_name, read_archive
from tests.peers.image_archives import docker_save, oci_layout

DAY = "2026-01-31"
CFG, LAYER = "0a1b.json", "c2d3/layer.tar"
DOCKER_FILES = frozenset({CFG, LAYER, "c2d3/VERSION"})
M = "sha256:" + "e" * 64
OCI_FILES = frozenset({"oci-layout", "index.json", f"blobs/sha256/{'e' * 64}"})
LAYOUT = {"imageLayoutVersion": "1.0.0"}


def docker(*manifests, files=DOCKER_FILES, symlinks=None):
    return Contents(files, symlinks or {}, {"manifest.json": list(manifests)})


def entry(tags, config=CFG, layers=(LAYER,)):
    return {"Config": config, "RepoTags": tags, "Layers": list(layers)}


def oci(*annotations, files=OCI_FILES, layout=LAYOUT, manifest_json=None):
    found = {
        "oci-layout": layout,
        "index.json": {
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": M, "size": 9, "annotations": a}
                for a in annotations
            ],
        },
    }
    if manifest_json is not None:
        found["manifest.json"] = manifest_json
    return Contents(files, {}, found)


NAMED = [
    (
        "docker save, full name",
        docker(entry(["registry.k8s.io/provider-os/openstack-cloud-controller-manager:v1.36.0-dev"])),
        "docker-save",
        ("registry.k8s.io/provider-os/openstack-cloud-controller-manager:v1.36.0-dev",),
    ),
    ("docker save, bare name normalized", docker(entry(["occm:dev"])), "docker-save", ("docker.io/library/occm:dev",)),
    ("docker save, user/name normalized", docker(entry(["me/occm"])), "docker-save", ("docker.io/me/occm:latest",)),
    (
        "docker save, two tags, two images",
        docker(entry(["occm:dev", "occm:v2"]), entry(["localhost/csi:dev"])),
        "docker-save",
        ("docker.io/library/occm:dev", "docker.io/library/occm:v2", "localhost/csi:dev"),
    ),
    (
        "docker save, layer through a symlink",
        docker(entry(["occm:dev"], layers=("f00d/layer.tar",)), symlinks={"f00d/layer.tar": LAYER}),
        "docker-save",
        ("docker.io/library/occm:dev",),
    ),
    (
        "OCI, io.containerd.image.name",
        oci({"io.containerd.image.name": "docker.io/library/occm:dev"}),
        "oci-layout",
        ("docker.io/library/occm:dev",),
    ),
    (
        "OCI wins over manifest.json (docker save since v25)",
        oci(
            {"io.containerd.image.name": "docker.io/library/occm:dev", "org.opencontainers.image.ref.name": "dev"},
            manifest_json=[entry(["other:tag"])],
        ),
        "oci-layout",
        ("docker.io/library/occm:dev",),
    ),
    # imagestore.go imageName: a full reference in ref.name is used as written (AddRefPrefix keeps it)
    (
        "OCI, a full org.opencontainers.image.ref.name",
        oci({"org.opencontainers.image.ref.name": "localhost/occm:dev"}),
        "oci-layout",
        ("localhost/occm:dev",),
    ),
    (
        "oci-layout without a version is not OCI: manifest.json is read",
        oci({}, layout={}, manifest_json=[entry(["occm:dev"])], files=OCI_FILES | DOCKER_FILES),
        "docker-save",
        ("docker.io/library/occm:dev",),
    ),
]


@pytest.mark.parametrize("contents, fmt, names", [c[1:] for c in NAMED], ids=[c[0] for c in NAMED])
def test_names_containerd_gives(contents, fmt, names):
    assert names_of(contents, DAY) == (fmt, names)


REFUSED = [
    ("a tar without either file", Contents(frozenset({"hello.txt"})), "unrecognized image format"),
    ("an empty manifest.json (null)", Contents(DOCKER_FILES, {}, {"manifest.json": None}), "unrecognized image format"),
    ("docker save by image ID: no RepoTags", docker(entry(None)), "has no RepoTags"),
    ("docker save, empty RepoTags", docker(entry([])), "no image name found"),
    ("docker save, config missing", docker(entry(["occm:dev"], config="ffff.json")), "image config 'ffff.json' not found"),
    ("docker save, layer missing", docker(entry(["occm:dev"], layers=("x/layer.tar",))), "layer 'x/layer.tar' not found"),
    (
        "docker save, dangling symlink",
        docker(entry(["occm:dev"]), symlinks={"f00d/layer.tar": "nowhere/layer.tar"}),
        "no target for symlink layer",
    ),
    ("docker save, a tag containerd cannot parse", docker(entry(["OCCM:dev"])), "normalize image ref 'OCCM:dev'"),
    ("docker save, no image", docker(), "lists no image"),
    (
        "OCI, unsupported version",
        oci({"io.containerd.image.name": "docker.io/library/a:b"}, layout={"imageLayoutVersion": "2.0.0"}),
        "unsupported OCI version 2.0.0",
    ),
    ("OCI, no index.json", oci({}, files=OCI_FILES - {"index.json"}), "missing index.json in OCI layout 1.0.0"),
    ("OCI, no annotations: no name", oci({}), "no image name found"),
    (
        "OCI, io.containerd.image.name without / : @ is dropped",
        oci({"io.containerd.image.name": "occm", "org.opencontainers.image.ref.name": "localhost/occm:dev"}),
        "no image name found",
    ),
    (
        "OCI, only a tag in ref.name: import-<date>:<tag>",
        oci({"org.opencontainers.image.ref.name": "dev"}),
        f"name it 'import-{DAY}:dev', a name that changes every day",
    ),
    (
        "OCI, a name the kubelet never asks for",
        oci({"io.containerd.image.name": "occm:dev"}),
        "the kubelet asks for 'docker.io/library/occm:dev'",
    ),
    (
        "OCI, manifest blob missing",
        oci({"io.containerd.image.name": "docker.io/library/occm:dev"}, files=OCI_FILES - {f"blobs/sha256/{'e' * 64}"}),
        f"content digest {M}: not found",
    ),
]


@pytest.mark.parametrize("contents, why", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_with_the_reason(contents, why):
    with pytest.raises(Refused) as err:
        names_of(contents, DAY)
    assert why in err.value.reason and err.value.fix


@pytest.mark.parametrize(
    "annotations, name",
    [
        (
            {"io.containerd.image.name": "docker.io/library/a:b", "org.opencontainers.image.ref.name": "c"},
            "docker.io/library/a:b",
        ),
        ({"io.containerd.image.name": "a@sha256:00"}, "a@sha256:00"),  # used as written, even unnormalized
        ({"io.containerd.image.name": "a"}, ""),  # not a full reference: dropped, ref.name NOT consulted
        ({"org.opencontainers.image.ref.name": "v1"}, "import-X:v1"),
        ({"org.opencontainers.image.ref.name": "quay.io/a/b:v1"}, "quay.io/a/b:v1"),
        ({}, ""),
        (None, ""),
    ],
)
def test_image_name_as_imagestore_go(annotations, name):
    assert oci_image_name(annotations, "import-X") == name


def test_real_docker_save_archives(tmp_path):
    classic = read_archive(docker_save(tmp_path / "a.tar", ["occm:dev"]), DAY)
    assert (classic.format, classic.names) == ("docker-save", ("docker.io/library/occm:dev",))
    data = (tmp_path / "a.tar").read_bytes()
    assert classic.sha256 == hashlib.sha256(data).hexdigest() and classic.size == len(data)
    assert classic.label == f"osk8s.io/archive=sha256:{classic.sha256}"
    modern = read_archive(docker_save(tmp_path / "b.tar", ["registry.k8s.io/provider-os/occm:dev"], oci=True), DAY)
    assert (modern.format, modern.names) == ("oci-layout", ("registry.k8s.io/provider-os/occm:dev",))
    compressed = gzip.compress(data)
    (tmp_path / "a.tar.gz").write_bytes(compressed)
    zipped = read_archive(tmp_path / "a.tar.gz", DAY)
    assert zipped.names == classic.names and zipped.sha256 == hashlib.sha256(compressed).hexdigest() != classic.sha256


def test_real_oci_layout_archives(tmp_path):
    named = read_archive(oci_layout(tmp_path / "o.tar", {"io.containerd.image.name": "localhost/ingress:dev"}), DAY)
    assert (named.format, named.names) == ("oci-layout", ("localhost/ingress:dev",))
    with pytest.raises(Refused, match="no image name found"):
        read_archive(oci_layout(tmp_path / "n.tar", None), DAY)
    with pytest.raises(Refused, match="missing index.json"):
        read_archive(oci_layout(tmp_path / "i.tar", {"io.containerd.image.name": "localhost/a:b"}, index=False), DAY)


@pytest.mark.parametrize(
    "data, why",
    [
        (b"", "empty file"),
        (b"PK\x03\x04 a zip, not a tar" * 40, "not a tar archive"),
        (b"\x28\xb5\x2f\xfd" + b"\0" * 100, "zstd"),
        (gzip.compress(b"not a tar at all" * 100), "not a tar archive"),
        (b"\0" * 1024, "unrecognized image format"),  # an empty tar: containerd's message
    ],
)
def test_not_an_image_archive(tmp_path, data, why):
    (tmp_path / "f").write_bytes(data)
    with pytest.raises(Refused, match=why):
        read_archive(tmp_path / "f", DAY)


def test_a_json_member_that_is_not_json(tmp_path):
    import io
    import tarfile

    with tarfile.open(tmp_path / "t.tar", "w") as t:
        info = tarfile.TarInfo("manifest.json")
        info.size = 5
        t.addfile(info, io.BytesIO(b"[{,]}"))
    with pytest.raises(Refused, match="untar manifest.json: not JSON"):
        read_archive(tmp_path / "t.tar", DAY)
