"""Image archives as containerd imports them: the names `ctr -n k8s.io images import FILE` gives
the images of a `docker save` tarball or an OCI layout tarball, and why an archive is refused.

Follows containerd v2.4.2's code (the node imports through the transfer API, ctr's default):
- core/images/archive/importer.go ImportIndex: a regular file `oci-layout` with a version makes it
  an OCI layout (preferred over manifest.json; "unsupported OCI version", "missing index.json in
  OCI layout"); else `manifest.json` (Docker v1.1/1.2; none: "unrecognized image format"), whose
  Config and Layers must be files of the tar (or symlinks to them: "image config %q not found",
  "layer %q not found"), and whose RepoTags are normalized (reference.go normalizeReference:
  alpine:latest -> docker.io/library/alpine:latest) into io.containerd.image.name annotations;
- core/transfer/local/import.go importStream: the images are the manifests of the top-level index;
- core/transfer/image/imagestore.go Store/imageName with ctr's default prefix `import-<date>`
  (cmd/ctr/commands/images/import.go: WithNamedPrefix(prefix, overwrite=true)):
  io.containerd.image.name is used as written if it holds '/', ':' or '@', else the image has no
  name; otherwise org.opencontainers.image.ref.name is used as written if it holds one of those,
  and a bare tag becomes `import-<date>:<tag>`. An image without a name is not stored (Store:
  "no image name found", which importStream only logs: ctr exits 0 having imported nothing).

Where this is stricter than containerd, for the lab's sake: an image without a name, a name that is
not in the normalized form the kubelet looks up (`alpine:latest` stored as written never serves a
Pod's `alpine:latest`, which the CRI looks up as docker.io/library/alpine:latest), and an
`import-<date>:<tag>` name (it changes with the day) are refused; a top-level manifest must be at
blobs/<algorithm>/<hex> (containerd finds it by content wherever it is); zstd archives are refused
(gzip and plain tar are read; containerd decompresses zstd too).

:func:`names_of` is pure (table-tested); :func:`read_archive` reads a local file for it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import posixpath
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osk8s_tasks.core import imageref

LAYOUT_VERSION = "1.0.0"  # image-spec v1.1.1 ImageLayoutVersion
NAME, REF_NAME = "io.containerd.image.name", "org.opencontainers.image.ref.name"
JSON_FILES = ("oci-layout", "manifest.json", "index.json")
JSON_LIMIT = 20 * 1024 * 1024  # importer.go jsonLimit
SAVE_FIX = (
    "save the image by its name: `docker save -o FILE NAME:TAG` (not by image ID), or an OCI layout "
    "tarball whose index.json names it (io.containerd.image.name)"
)


class Refused(Exception):
    """An archive containerd would not import, or not import as a usable name: reason and fix."""

    def __init__(self, reason: str, fix: str = SAVE_FIX):
        self.reason, self.fix = reason, fix
        super().__init__(reason)


@dataclass(frozen=True)
class Contents:
    """What of a tar the importer reads: its regular files (cleaned paths), its symlinks (as
    written -> cleaned target) and the decoded JSON of oci-layout, manifest.json and index.json
    (absent: not a key; not JSON: a Refused raised at reading)."""

    files: frozenset[str]
    symlinks: dict[str, str] = field(default_factory=dict)
    json: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Archive:
    path: Path
    sha256: str  # of the file as it is copied (the label osk8s.io/archive=sha256:<this>)
    size: int
    format: str  # docker-save | oci-layout
    names: tuple[str, ...]  # what containerd names its images, in the archive's order

    @property
    def label(self) -> str:
        return f"osk8s.io/archive=sha256:{self.sha256}"


def today() -> str:
    return datetime.date.today().isoformat()


def oci_image_name(annotations: dict | None, prefix: str) -> str:
    """imagestore.go imageName with archive.AddRefPrefix(prefix): '' when containerd gives no name."""
    annotations = annotations or {}
    full = lambda ref: any(ch in ref for ch in "/:@")  # refTranslator: "a full reference"
    name = annotations.get(NAME) or ""
    if name:
        return name if full(name) else ""
    ref = annotations.get(REF_NAME) or ""
    if ref:
        return ref if full(ref) else f"{prefix}:{ref}"
    return ""


def usable(name: str, where: str, prefix: str) -> str:
    """A name containerd gives, refused when the kubelet could never ask for it."""
    if name.startswith(prefix + ":"):
        raise Refused(
            f"{where} is only the tag {name.removeprefix(prefix + ':')!r} ({REF_NAME}): containerd would "
            f"name it {name!r}, a name that changes every day"
        )
    try:
        normal = imageref.normalize(name)
    except imageref.RefError as exc:
        raise Refused(f"{where} is named {name!r}, not an image reference ({exc})") from None
    if normal != name:
        raise Refused(
            f"{where} is named {name!r}: containerd stores that as written, while the kubelet asks for {normal!r}",
            fix=f"name it {normal!r} in the archive",
        )
    return name


def docker_names(contents: Contents) -> tuple[str, ...]:
    manifests = contents.json.get("manifest.json")
    if manifests is None:  # absent, or JSON null: Go leaves the slice nil
        raise Refused(
            "unrecognized image format: neither manifest.json (docker save) nor oci-layout and index.json (OCI layout)"
        )
    if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
        raise Refused('untar manifest "manifest.json": not a list of image manifests')
    blobs = set(contents.files)
    for link, target in contents.symlinks.items():
        if target not in blobs:
            raise Refused(f"no target for symlink layer from {link!r} to {target!r}")
        blobs.add(link)
    if not manifests:
        raise Refused("manifest.json lists no image")
    names = []
    for n, m in enumerate(manifests):
        config, layers, tags = m.get("Config") or "", m.get("Layers") or [], m.get("RepoTags") or []
        if config not in blobs:
            raise Refused(f"image config {config!r} not found")
        missing = [layer for layer in layers if layer not in blobs]
        if missing:
            raise Refused(f"failed to resolve layers: layer {missing[0]!r} not found")
        if not tags:
            raise Refused(
                f"image {n + 1} of manifest.json has no RepoTags: containerd would import it without a "
                "name (no image name found)"
            )
        for tag in tags:
            try:
                names.append(imageref.normalize(tag))
            except imageref.RefError as exc:
                raise Refused(f"normalize image ref {tag!r}: {exc}") from None
    return tuple(dict.fromkeys(names))


def oci_names(contents: Contents, prefix: str) -> tuple[str, ...]:
    version = contents.json["oci-layout"].get("imageLayoutVersion") or ""
    if version != LAYOUT_VERSION:
        raise Refused(f"unsupported OCI version {version}", fix="export an OCI image layout 1.0.0")
    if "index.json" not in contents.files:
        raise Refused(f"missing index.json in OCI layout {LAYOUT_VERSION}", fix="export the whole OCI layout")
    index = contents.json.get("index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests") or [], list):
        raise Refused("index.json is not an OCI image index", fix="export the whole OCI layout")
    names = []
    for n, desc in enumerate(index.get("manifests") or []):
        where = f"manifest {n + 1} of index.json"
        if not isinstance(desc, dict):
            raise Refused(f"{where} is not a descriptor", fix="export the whole OCI layout")
        digest = str(desc.get("digest") or "")
        if posixpath.join("blobs", *digest.split(":", 1)) not in contents.files:
            raise Refused(f"{where}: content digest {digest}: not found", fix="export the whole OCI layout")
        name = oci_image_name(desc.get("annotations"), prefix)
        if not name:
            raise Refused(
                f"{where} has no {NAME} (nor a full {REF_NAME}): containerd would import it without a "
                "name (no image name found)"
            )
        names.append(usable(name, where, prefix))
    if not names:
        raise Refused("index.json lists no image", fix="export the whole OCI layout")
    return tuple(dict.fromkeys(names))


def names_of(contents: Contents, day: str | None = None) -> tuple[str, tuple[str, ...]]:
    """(format, the names containerd gives the archive's images), or Refused naming why."""
    layout = contents.json.get("oci-layout")
    if isinstance(layout, dict) and layout.get("imageLayoutVersion"):
        return "oci-layout", oci_names(contents, f"import-{day or today()}")
    return "docker-save", docker_names(contents)


class _Hashing:
    """A file read once: sha256 of every byte that passes."""

    def __init__(self, f):
        self.f, self.hash, self.size = f, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data


def read_contents(stream, gzip: bool = False) -> Contents:
    """One pass over a tar stream (plain or gzip, as containerd's DecompressStream reads gzip and
    takes anything else for a plain tar): the parts the importer reads (importer.go's loop)."""
    files, symlinks, found = set(), {}, {}
    try:
        with tarfile.open(fileobj=stream, mode="r|gz" if gzip else "r|") as tar:
            for member in tar:
                if member.issym():
                    symlinks[member.name] = posixpath.normpath(
                        posixpath.join(posixpath.dirname(member.name), member.linkname)
                    )
                if not member.isreg():
                    continue
                name = posixpath.normpath(member.name)
                files.add(name)
                if name in JSON_FILES:
                    data = tar.extractfile(member).read(JSON_LIMIT)
                    try:
                        found[name] = json.loads(data)
                    except ValueError as exc:
                        raise Refused(f"untar {name}: not JSON ({exc})") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise Refused(f"not a tar archive ({exc})") from None
    if "oci-layout" in found and not isinstance(found["oci-layout"], dict):
        raise Refused('untar oci layout "oci-layout": not a JSON object')
    return Contents(frozenset(files), symlinks, found)


def read_archive(path: Path, day: str | None = None) -> Archive:
    """The archive at `path` (on this machine) as containerd would import it, or Refused."""
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if not head:
            raise Refused("empty file: unrecognized image format")
        if head == b"\x28\xb5\x2f\xfd":
            raise Refused(
                "compressed with zstd, which osk8s does not read",
                fix="decompress it (zstd -d) or save it uncompressed or with gzip",
            )
        hashing = _Hashing(f)
        contents = read_contents(hashing, gzip=head[:3] == b"\x1f\x8b\x08")
        while hashing.read(1 << 20):  # the tar's end padding, gzip's trailer: all of the file is copied
            pass
    fmt, names = names_of(contents, day)
    return Archive(Path(path), hashing.hash.hexdigest(), hashing.size, fmt, names)
