"""`ctr images import` and `ctr images ls` for the test nodes: containerd's client, with an image
store kept in a JSON file on the node (STATE, default /var/lib/osk8s-standin/containerd/images.json).

Why a stand-in: no containerd daemon can run here (no snapshotter, no CRI to hand images to), and
ctr alone only talks to one. What it keeps is what decides whether an image the kubelet asks for
is there, read from upstream containerd v2.4.2's code, not its docs:

- cmd/ctr/app/main.go: the global flags (--debug, --address/-a, --timeout, --connect-timeout,
  --namespace/-n, default "default" or $CONTAINERD_NAMESPACE); cmd/ctr/main.go: an error is
  printed as `ctr: <error>` and exits 1.
- cmd/ctr/commands/images/import.go (importCommand, the transfer-API path, ctr's default): the
  flags it defines (anything else is "flag provided but not defined"); the prefix `import-<date>`
  unless --base-name; --label k=v (commands.LabelArgs: a bare key is "true"); `-` reads stdin.
- core/images/archive/importer.go ImportIndex: every regular file of the tar is a blob stored by
  its own sha256 (its name does not matter); `oci-layout` with a version makes it an OCI layout
  ("unsupported OCI version", "missing index.json in OCI layout"); else `manifest.json` (none:
  "unrecognized image format") whose Config and Layers (symlinks followed: "no target for
  symlink layer") become a Docker schema 2 manifest, JSON as Go marshals it, one descriptor per
  RepoTag with the normalized name (normalizeReference, ported in osk8s_tasks.core.imageref).
- core/transfer/local/import.go importStream + images.WalkNotEmpty: the images are the top
  index's manifests (none: "image might be filtered out"); every blob a manifest names must be in
  the archive ("content digest ...: not found").
- core/transfer/image/imagestore.go Store/imageName with archive.AddRefPrefix (or
  FilterRefPrefix with --base-name): which name each image gets; no name: not stored, and ctr
  still exits 0; an existing name is updated (its target and labels replaced).
- cmd/ctr/commands/images/images.go listCommand: the tabwriter table (REF TYPE DIGEST SIZE
  PLATFORMS LABELS), as tests/peers/ctr_format/main.go prints it from the same format strings.

Stricter than containerd, on purpose: only the CRI's namespace k8s.io is served (an image imported
elsewhere would never reach the kubelet: refused, not silently stored), only the default address,
and only as root (containerd's socket is root's: "permission denied" otherwise); the import flags
this stand-in does not implement, zstd archives and `ls` filters are refused.

    ctr [global flags] images|image|i import|list|ls ...
"""

from __future__ import annotations

import datetime
import fcntl
import gzip
import hashlib
import io
import json
import os
import posixpath
import sys
import tarfile
from pathlib import Path

from osk8s_tasks.core import imageref

STATE = Path(os.environ.get("OSK8S_CTR_STATE") or "/var/lib/osk8s-standin/containerd/images.json")
ADDRESS = "/run/containerd/containerd.sock"
SERVED_NAMESPACE = "k8s.io"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = DOCKER_LAYER + ".gzip"
OCI_INDEX, OCI_MANIFEST = "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json"
INDEXES = (OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
LABEL_MAX = 4096  # pkg/labels maxSize

GLOBAL = {
    "--debug": False,
    "--address": True,
    "-a": True,
    "--timeout": True,
    "--connect-timeout": True,
    "--namespace": True,
    "-n": True,
}
IMPORT_FLAGS = {
    "--base-name": True,
    "--label": True,
    "--digests": False,
    "--skip-digest-for-named": False,
    "--index-name": True,
    "--all-platforms": False,
    "--platform": True,
    "--no-unpack": False,
    "--local": False,
    "--compress-blobs": False,
    "--discard-unpacked-layers": False,
    "--sync-fs": False,
    "--snapshotter": True,
}
IMPLEMENTED = {"--base-name", "--label", "--snapshotter"}
LIST_FLAGS = {"--quiet": False, "-q": False}


class CtrError(Exception):
    """Printed as `ctr: <message>`, exit 1 (cmd/ctr/main.go)."""


def parse_flags(args: list[str], known: dict[str, bool]) -> tuple[dict[str, list[str]], list[str]]:
    """urfave/cli's flags before the arguments: -x and --x alike, `--x=v` or `--x v`."""
    flags: dict[str, list[str]] = {}
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-":
        if args[i] == "--":
            i += 1
            break
        name, eq, value = args[i].partition("=")
        if not name.startswith("--") and len(name) > 2:
            name = "-" + name  # urfave/cli accepts -namespace as --namespace
        if name not in known:
            raise CtrError(f"flag provided but not defined: -{name.lstrip('-')}")
        if known[name] and not eq:
            i += 1
            if i >= len(args):
                raise CtrError(f"flag needs an argument: -{name.lstrip('-')}")
            value = args[i]
        elif not known[name]:
            value = value or "true"
        flags.setdefault(name, []).append(value)
        i += 1
    return flags, args[i:]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def go_json(obj) -> bytes:
    """encoding/json.Marshal of these structs: no spaces, fields in declaration order, and <, >, &
    escaped as Go does."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def read_tar(data: bytes) -> tuple[dict[str, bytes], dict[str, str], dict, object]:
    """ImportIndex's loop: (blobs by cleaned name, symlinks, oci-layout, manifest.json)."""
    blobs, symlinks, layout, manifests = {}, {}, {}, None
    if not data:
        return blobs, symlinks, layout, manifests  # tar.Next: io.EOF at once
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for m in tar:
                if m.issym():
                    symlinks[m.name] = posixpath.join(posixpath.dirname(m.name), m.linkname)
                if not m.isreg():
                    continue
                name, body = posixpath.normpath(m.name), tar.extractfile(m).read()
                if name == "oci-layout":
                    try:
                        layout = json.loads(body[: 20 << 20])
                    except ValueError as exc:
                        raise CtrError(f"untar oci layout {m.name!r}: {exc}") from None
                    if not isinstance(layout, dict):
                        raise CtrError(f"untar oci layout {m.name!r}: json: cannot unmarshal into ocispec.ImageLayout")
                elif name == "manifest.json":
                    try:
                        manifests = json.loads(body[: 20 << 20])
                    except ValueError as exc:
                        raise CtrError(f"untar manifest {m.name!r}: {exc}") from None
                else:
                    blobs[name] = body
    except tarfile.TarError:
        raise CtrError("archive/tar: invalid tar header") from None
    return blobs, symlinks, layout, manifests


def platform_of(config: bytes) -> str:
    c = json.loads(config)
    return "/".join(p for p in (c.get("os"), c.get("architecture"), c.get("variant")) if p)


def import_index(data: bytes) -> tuple[dict[str, bytes], list[dict]]:
    """(content store: digest -> bytes, the top index's manifest descriptors)."""
    if data[:4] == b"\x28\xb5\x2f\xfd":
        raise CtrError("stand-in: zstd-compressed archives are not read here")
    if data[:3] == b"\x1f\x8b\x08":
        data = gzip.decompress(data)
    blobs, symlinks, layout, manifests = read_tar(data)
    content = {sha256(b): b for b in blobs.values()}
    version = layout.get("imageLayoutVersion") or ""
    if version:
        if version != "1.0.0":
            raise CtrError(f"unsupported OCI version {version}")
        if "index.json" not in blobs:
            raise CtrError("missing index.json in OCI layout 1.0.0")
        index = json.loads(blobs["index.json"])
        return content, list(index.get("manifests") or [])
    if manifests is None:
        raise CtrError("unrecognized image format")
    for name, target in symlinks.items():
        if target not in blobs:
            raise CtrError(f"no target for symlink layer from {name!r} to {target!r}")
        blobs[name] = blobs[target]
    out = []
    for m in manifests:
        config = blobs.get(m.get("Config") or "")
        if config is None:
            raise CtrError(f"image config {m.get('Config') or ''!r} not found")
        layers = []
        for f in m.get("Layers") or []:
            if f not in blobs:
                raise CtrError(f"failed to resolve layers: layer {f!r} not found")
            gz = blobs[f][:3] == b"\x1f\x8b\x08" or blobs[f][:4] == b"\x28\xb5\x2f\xfd"
            layers.append(
                {"mediaType": DOCKER_LAYER_GZIP if gz else DOCKER_LAYER, "digest": sha256(blobs[f]), "size": len(blobs[f])}
            )
        body = go_json(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": DOCKER_CONFIG, "digest": sha256(config), "size": len(config)},
                "layers": layers,
            }
        )
        content[sha256(body)] = body
        desc = {"mediaType": DOCKER_MANIFEST, "digest": sha256(body), "size": len(body)}
        for tag in m.get("RepoTags") or [None]:
            d = dict(desc)
            if tag is not None:
                try:
                    name = imageref.normalize(tag)
                except imageref.RefError as exc:
                    raise CtrError(f"normalize image ref {tag!r}: {exc}") from None
                _, _, tagged, _ = imageref.parse(name)  # ociReferenceName: the tag, else the whole name
                d["annotations"] = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tagged or name}
            out.append(d)
    return content, out


def blob(content: dict, desc: dict) -> bytes:
    data = content.get(desc.get("digest") or "")
    if data is None:
        raise CtrError(f"content digest {desc.get('digest')}: not found")
    return data


def walk(content: dict, desc: dict) -> tuple[int, list[str]]:
    """(size of the image for this platform, its platforms): every blob it names must be there."""
    data = blob(content, desc)
    doc = json.loads(data)
    if desc.get("mediaType") in INDEXES or doc.get("mediaType") in INDEXES:
        size, platforms = len(data), []
        for child in doc.get("manifests") or []:
            s, p = walk(content, child)
            size, platforms = size + s, platforms + p
        return size, platforms
    config = blob(content, doc.get("config") or {})
    size = len(data) + len(config)
    for layer in doc.get("layers") or []:
        size += len(blob(content, layer))
    return size, [platform_of(config)] if platform_of(config) else []


def ref_translator(prefix: str, check_prefix: bool):
    """archive.AddRefPrefix (check_prefix False) / FilterRefPrefix (True), reference.go."""

    def translate(ref: str) -> str:
        if any(ch in ref for ch in "/:@"):
            if check_prefix and not (ref.startswith(prefix) and (len(ref) == len(prefix) or ref[len(prefix)] in "/:@")):
                return ""
            return ref
        return f"{prefix}:{ref}"

    return translate


def image_name(annotations: dict, cleanup) -> str:
    """imagestore.go imageName."""
    name = annotations.get("io.containerd.image.name") or ""
    if name:
        return name if cleanup(name) == name else ""
    name = annotations.get("org.opencontainers.image.ref.name") or ""
    return cleanup(name) if name else ""


class Store:
    """The namespace's images in STATE, under an exclusive lock while a command runs."""

    def __enter__(self):
        STATE.parent.mkdir(parents=True, exist_ok=True)
        self.lock = open(STATE.with_suffix(".lock"), "w")
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.data = json.loads(STATE.read_text()) if STATE.exists() else {}
        return self

    def save(self) -> None:
        tmp = STATE.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(tmp, STATE)

    def __exit__(self, *exc):
        self.lock.close()


def import_command(namespace: str, args: list[str]) -> None:
    flags, rest = parse_flags(args, IMPORT_FLAGS)
    for name in flags:
        if name not in IMPLEMENTED:
            raise CtrError(f"stand-in: {name} is not implemented here (tests/peers/k8s/ctr.py)")
    path = rest[0] if rest else ""
    if path == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CtrError(f"open {path}: {exc.strerror.lower()}") from None
    labels = {}
    for item in flags.get("--label", []):
        k, eq, v = item.partition("=")
        labels[k] = v if eq else "true"
        if len(k) + len(labels[k]) > LABEL_MAX:
            raise CtrError(
                f"label key and value length ({len(k) + len(labels[k])} bytes) greater than maximum "
                f"size ({LABEL_MAX} bytes), key: {k}: invalid argument"
            )
    base = (flags.get("--base-name") or [""])[-1]
    prefix = base or f"import-{datetime.date.today().isoformat()}"
    cleanup = ref_translator(prefix, check_prefix=bool(base))
    print("Importing", flush=True)
    content, descs = import_index(data)
    if not descs:
        raise CtrError("image might be filtered out")
    found = []
    for desc in descs:
        size, platforms = walk(content, desc)
        found.append((desc, size, platforms))
    with Store() as store:
        images = store.data.setdefault(namespace, {})
        for desc, size, platforms in found:
            name = image_name(desc.get("annotations") or {}, cleanup)
            if not name:
                continue  # Store: "no image name found" (NotFound), which importStream only logs
            images[name] = {
                "target": {
                    "mediaType": desc.get("mediaType") or OCI_MANIFEST,
                    "digest": desc["digest"],
                    "size": desc.get("size", 0),
                },
                "labels": labels,
                "size": size,
                "platforms": sorted(set(platforms)),
            }
            print(f"saved\t{name}", flush=True)
        store.save()
    print("Completed import", flush=True)


def human(size: int) -> str:
    """pkg/progress Bytes: go-units CustomSize("%02.1f %s", size, 1024, binary units)."""
    units, n, i = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"], float(size), 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.1f} {units[i]}"  # %02.1f: width 2 is never more than "0.0" takes


def tabwriter(rows: list[list[str]]) -> str:
    """text/tabwriter.NewWriter(w, 1, 8, 1, ' ', 0) with every cell tab-terminated: each column as
    wide as its widest cell plus one space; the text after the last tab is empty."""
    widths = [max(len(r[i]) for r in rows) + 1 for i in range(len(rows[0]))]
    return "".join("".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + "\n" for r in rows)


def list_command(namespace: str, args: list[str]) -> None:
    flags, rest = parse_flags(args, LIST_FLAGS)
    if rest:
        raise CtrError("stand-in: list filters are not implemented here (tests/peers/k8s/ctr.py)")
    with Store() as store:
        images = store.data.get(namespace, {})
    names = sorted(images)  # the metadata store lists by name
    if flags:
        print("".join(n + "\n" for n in names), end="")
        return
    rows = [["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]]
    for n in names:
        img = images[n]
        labels = ",".join(sorted(f"{k}={v}" for k, v in img["labels"].items())) or "-"
        rows.append(
            [
                n,
                img["target"]["mediaType"],
                img["target"]["digest"],
                human(img["size"]),
                ",".join(img["platforms"]) or "-",
                labels,
            ]
        )
    sys.stdout.write(tabwriter(rows))


def main(argv: list[str]) -> int:
    try:
        flags, rest = parse_flags(argv, GLOBAL)
        default_ns = os.environ.get("CONTAINERD_NAMESPACE") or "default"
        namespace = ((flags.get("--namespace") or flags.get("-n")) or [default_ns])[-1]
        address = ((flags.get("--address") or flags.get("-a")) or [os.environ.get("CONTAINERD_ADDRESS") or ADDRESS])[-1]
        if address != ADDRESS:
            raise CtrError(f'failed to dial "{address}": context deadline exceeded')
        if os.geteuid() != 0:
            raise CtrError(
                f'failed to dial "{ADDRESS}": connection error: desc = "transport: error while dialing: '
                f'dial unix {ADDRESS}: connect: permission denied"'
            )
        if not rest or rest[0] not in ("images", "image", "i"):
            asked = " ".join(rest[:2]) or "(none)"
            raise CtrError(f"stand-in: only `ctr images import|ls` is implemented here, not {asked}")
        if namespace != SERVED_NAMESPACE:
            raise CtrError(
                f"stand-in: namespace {namespace!r} refused: the kubelet's CRI reads images from "
                f"{SERVED_NAMESPACE!r} only (use -n {SERVED_NAMESPACE})"
            )
        sub, args = (rest[1] if len(rest) > 1 else ""), rest[2:]
        if sub == "import":
            import_command(namespace, args)
        elif sub in ("list", "ls"):
            list_command(namespace, args)
        else:
            raise CtrError(f"stand-in: `ctr images {sub}` is not implemented here")
    except CtrError as exc:
        print(f"ctr: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
