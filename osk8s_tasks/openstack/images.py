"""The node image: uploaded as `<lab>-<name>` from openstack.image.file or .url, unless an image
with the same content is there. A check never downloads: a file source is compared by its hash
(cached by size and mtime), a URL source by the source and checksum the tool recorded on the
image when it uploaded it; the download happens in the apply only, over https or checked
against openstack.image.checksum, and follows redirects only to https."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from osk8s_tasks.core.engine import Decision, Step, StepFailed
from osk8s_tasks.core.files import private_dir
from osk8s_tasks.openstack import clouds as cloud
from osk8s_tasks.openstack.resources import names, step

SOURCE_PROPERTY, CHECKSUM_PROPERTY = "osk8s_source", "osk8s_checksum"


class HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to https: a redirect to http would let anything on the way swap the image."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.startswith("https://"):
            raise urllib.error.HTTPError(newurl, code, f"refused redirect to {newurl} (not https)", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def open_url(req, timeout: float):
    return urllib.request.build_opener(HttpsOnlyRedirects).open(req, timeout=timeout)


def file_hash(path: Path, algo: str) -> str:
    """The file's digest, cached in ~/.cache/osk8s by (size, mtime): node images are hundreds of
    MB, and a re-run must not read them again to learn that nothing changed."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{algo}"
    cache = Path.home() / ".cache" / "osk8s" / "file-hashes.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    known[key] = h.hexdigest()
    private_dir(cache.parent)
    cache.write_text(json.dumps(known))
    return known[key]


def download(s) -> Path:
    """The image at openstack.image.url, downloaded once into .osk8s/cache/ and checked."""
    o = s.settings.openstack.image
    target = s.settings.state_dir / "cache" / Path(o.url.split("?")[0]).name
    if not target.exists():
        private_dir(target.parent)
        s.log.info("image.download", url=o.url, to=str(target))
        part = target.with_suffix(target.suffix + ".part")
        with open_url(o.url, timeout=60) as r, open(part, "wb") as fh:
            while chunk := r.read(1 << 20):
                fh.write(chunk)
        part.rename(target)
    if o.checksum:
        algo, want = o.checksum.split(":", 1)
        if file_hash(target, algo) != want:
            raise StepFailed(
                f"{target}: {algo} does not match openstack.image.checksum. Fix: correct the checksum or the source"
            )
    return target


def find_image(s, clouds):
    """Our own upload (<lab>-<name>), else a pre-existing image of the configured name."""
    img = clouds.main.image
    return cloud.by_name(img.images(name=names(s.settings)["image"])) or cloud.by_name(
        img.images(name=s.settings.openstack.image.name)
    )


@dataclass
class ImageFacts:
    have: object  # the image found, or None
    file_digest: str | None  # the configured file's digest in the image's hash algorithm


def decide_image(facts: ImageFacts, name: str, source: dict) -> Decision:
    """source: {file | url, checksum, disk_format} as configured ({} when none is). With no source,
    an existing image of that name is used as it is, and said to be trusted by name only."""
    have = facts.have
    if not source.get("file") and not source.get("url"):
        if have is None:
            raise StepFailed(f"no image {name!r} and no source given. Fix: set openstack.image.url or openstack.image.file")
        return Decision("none", f"image {have.name} ({have.id[:8]}) TRUSTED BY NAME ONLY: no image url/file/checksum")
    label = Path(source["file"]).name if source.get("file") else source["url"]
    if have is None:
        return Decision("create", f"no image {name}", f"upload {label} as {name} ({source['disk_format']})")
    if source.get("file"):
        same = have.hash_value == facts.file_digest
    else:
        props = have.properties or {}
        same = props.get(SOURCE_PROPERTY) == source["url"] and props.get(CHECKSUM_PROPERTY, "") == (
            source.get("checksum") or ""
        )
    if same and have.status == "active":
        return Decision("none", f"image {have.name} matches {label}")
    if have.name != name:
        return Decision("create", f"image {have.name} is not {label}", f"upload {label} as {name}")
    return Decision("replace", f"image {name} is not {label}", f"replace {name} with {label}", have)


def image_step(s, clouds) -> Step:
    o, name = s.settings.openstack.image, names(s.settings)["image"]
    source = {"file": o.file, "url": o.url, "checksum": o.checksum, "disk_format": o.disk_format} if o.file or o.url else {}

    def read() -> ImageFacts:
        have = find_image(s, clouds)
        digest = file_hash(Path(o.file), have.hash_algo or "sha512") if have is not None and o.file else None
        return ImageFacts(have, digest)

    def decide(facts: ImageFacts) -> Decision:
        d = decide_image(facts, name, source)
        if not source:
            s.log.warning(
                "image.trusted_by_name",
                image=facts.have.name,
                fix="set openstack.image.url (https) or file, with a checksum",
            )
        return d

    def act(d):
        img = clouds.main.image
        if d.action == "replace":
            img.delete_image(d.obj)
        path = Path(o.file) if o.file else download(s)
        props = {} if o.file else {SOURCE_PROPERTY: o.url, CHECKSUM_PROPERTY: o.checksum or ""}
        # allow_duplicates: the decision above already looked; the SDK's own look-up is a deprecated find_image
        created = img.create_image(
            name=name,
            filename=str(path),
            disk_format=o.disk_format,
            container_format="bare",
            tags=[cloud.tag(s.settings)],
            wait=True,
            allow_duplicates=True,
            **props,
        )
        img.wait_for_status(created, "active", wait=600)

    return step(clouds, f"image {name}", read, decide, act)
