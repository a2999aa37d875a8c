"""Image archives built here with tarfile, as `docker save` and OCI image layout exporters write
them (no Docker on this machine, and nothing may be fetched): a one-layer linux/amd64 image whose
layer holds one file.

- docker_save(..., oci=False): Docker's classic `docker save` (docker/docker image/tarexport/save.go
  before v25): <config hex>.json, <layer id>/layer.tar, manifest.json [{Config, RepoTags, Layers}].
- docker_save(..., oci=True): `docker save` from Docker v25 on: an OCI layout (oci-layout,
  index.json whose manifest carries io.containerd.image.name and the tag as
  org.opencontainers.image.ref.name, blobs/sha256/...) plus the same manifest.json pointing at the blobs.
- oci_layout(...): an OCI image layout tarball (image-spec image-layout.md) with the index
  annotations given, as buildah/skopeo `oci-archive:` write it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

MANIFEST_V2 = "application/vnd.oci.image.manifest.v1+json"
CONFIG_V1 = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def _bytes(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image(payload: bytes) -> tuple[bytes, bytes]:
    """(layer tar, config JSON) of a one-file image; `payload` makes builds differ."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        _add(t, "hello.txt", payload)
    layer = buf.getvalue()
    config = _bytes(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/cat", "/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha(layer)}"]},
        }
    )
    return layer, config


def docker_save(
    path: Path, repo_tags: list[str] | None, payload: bytes = b"hello\n", oci: bool = False, filler: int = 0
) -> Path:
    """`filler` bytes of incompressible data in a second file of the layer (to time big copies)."""
    layer, config = image(payload + (bytes(range(256)) * (filler // 256 + 1))[:filler])
    with tarfile.open(path, "w") as t:
        if oci:
            manifest = _bytes(
                {
                    "schemaVersion": 2,
                    "mediaType": MANIFEST_V2,
                    "config": {"mediaType": CONFIG_V1, "digest": f"sha256:{sha(config)}", "size": len(config)},
                    "layers": [{"mediaType": LAYER_TAR, "digest": f"sha256:{sha(layer)}", "size": len(layer)}],
                }
            )
            for blob in (layer, config, manifest):
                _add(t, f"blobs/sha256/{sha(blob)}", blob)
            annotations = {}
            if repo_tags:
                annotations = {
                    "io.containerd.image.name": _normalized(repo_tags[0]),
                    "org.opencontainers.image.ref.name": repo_tags[0].rsplit(":", 1)[-1],
                }
            _add(
                t,
                "index.json",
                _bytes(
                    {
                        "schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [
                            {
                                "mediaType": MANIFEST_V2,
                                "digest": f"sha256:{sha(manifest)}",
                                "size": len(manifest),
                                "annotations": annotations,
                            }
                        ],
                    }
                ),
            )
            _add(t, "oci-layout", _bytes({"imageLayoutVersion": "1.0.0"}))
            entry = {"Config": f"blobs/sha256/{sha(config)}", "Layers": [f"blobs/sha256/{sha(layer)}"]}
        else:
            layer_id = sha(layer)
            _add(t, f"{sha(config)}.json", config)
            _add(t, f"{layer_id}/VERSION", b"1.0")
            _add(t, f"{layer_id}/layer.tar", layer)
            entry = {"Config": f"{sha(config)}.json", "Layers": [f"{layer_id}/layer.tar"]}
        entry["RepoTags"] = repo_tags
        _add(t, "manifest.json", _bytes([entry]))
    return path


def oci_layout(
    path: Path, annotations: dict | None, payload: bytes = b"hello\n", version: str = "1.0.0", index: bool = True
) -> Path:
    layer, config = image(payload)
    manifest = _bytes(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {"mediaType": CONFIG_V1, "digest": f"sha256:{sha(config)}", "size": len(config)},
            "layers": [{"mediaType": LAYER_TAR, "digest": f"sha256:{sha(layer)}", "size": len(layer)}],
        }
    )
    desc = {"mediaType": MANIFEST_V2, "digest": f"sha256:{sha(manifest)}", "size": len(manifest)}
    if annotations:
        desc["annotations"] = annotations
    with tarfile.open(path, "w") as t:
        _add(t, "oci-layout", _bytes({"imageLayoutVersion": version}))
        if index:
            _add(t, "index.json", _bytes({"schemaVersion": 2, "manifests": [desc]}))
        for blob in (layer, config, manifest):
            _add(t, f"blobs/sha256/{sha(blob)}", blob)
    return path


def _normalized(tag: str) -> str:
    """What Docker writes as io.containerd.image.name: the full name (no import of the product here)."""
    name = tag if "/" in tag.split(":")[0] else f"library/{tag}"
    return name if "." in name.split("/")[0] else f"docker.io/{name}"
