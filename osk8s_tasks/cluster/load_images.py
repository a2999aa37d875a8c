"""`cluster.load-images`: image archives (`docker save`, OCI layout tarballs) copied to every node
through the jump host and imported into containerd's `k8s.io` namespace, where the kubelet finds
them: the way to run your own build of an add-on (cluster.images) in the lab.

Everything that can be wrong with the input is found before the first copy: a missing file, a file
containerd would not import as a usable image (cluster.archives), a node without containerd, and
an image in cluster.images that is a local build (not upstream's pinned image: osk8s cannot ask a
registry from here) but in none of the archives and not already on every node.

Each node's images are read once (`ctr -n k8s.io images ls`, cluster.facts.parse_ctr_images). An
archive is imported with the label osk8s.io/archive=sha256:<sha256 of the archive file>; a node
whose images of that archive all carry that label already has exactly this archive, and is left
alone with that reason. One decision (:func:`decide`) serves the check, the dry run and the apply.
"""

from __future__ import annotations

import shlex
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from osk8s_tasks.cluster import archives, facts
from osk8s_tasks.cluster.nodes import connections
from osk8s_tasks.core import imageref
from osk8s_tasks.core.engine import NODE_THREADS, Decision, Status, Step, StepFailed, decision_step

LABEL = "osk8s.io/archive"
NAMESPACE = "k8s.io"  # the CRI's: images anywhere else never reach the kubelet
REMOTE_TEMP = "/tmp/osk8s-image.XXXXXX"


def split_files(files) -> list[str]:
    """The archives named on the command line: one value, or several separated by commas (Invoke
    gives a task one value per positional argument); a list is taken as it is."""
    items = files if isinstance(files, list | tuple) else str(files or "").split(",")
    return [f.strip() for f in items if f and f.strip()]


def size_text(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def archive_status(path: str, day: str | None = None) -> tuple[Status, archives.Archive | None]:
    """Is this file an archive containerd imports as usable images? (status, the archive or None)."""
    p = Path(path).expanduser()
    if not p.exists():
        return Status(
            False,
            f"{path}: no such file. Fix: give the path of the image archive "
            f"(`docker save -o {p.name or 'occm.tar'} NAME:TAG` writes one)",
        ), None
    if not p.is_file():
        return Status(False, f"{path}: not a regular file. Fix: give an image archive (a tar file), not a directory"), None
    try:
        archive = archives.read_archive(p, day)
    except archives.Refused as exc:
        return Status(
            False, f"{path}: not an image archive containerd can import as a usable image: {exc.reason}. Fix: {exc.fix}"
        ), None
    except OSError as exc:
        return Status(False, f"{path}: cannot be read ({exc.strerror or exc}). Fix: check the file's permissions"), None
    return Status(
        True, f"{archive.format}, {size_text(archive.size)}, sha256:{archive.sha256[:12]}: {', '.join(archive.names)}"
    ), archive


def local_images(settings) -> dict[str, str]:
    """{cluster.images.<key>: the image as containerd names it} for every add-on whose image is
    not upstream's pinned one: a local build, which the nodes cannot pull."""
    out = {}
    for key in imageref.COMPONENTS:
        image, policy = imageref.component_image(settings, key)
        if policy == "IfNotPresent":
            out[f"cluster.images.{key}"] = image
    return out


def images_problems(
    wanted: dict[str, str], loaded: list[archives.Archive], node_images: dict[str, dict[str, facts.CtrImage] | None]
) -> list[str]:
    """What is wrong before any copy (pure): nodes without containerd, and local images that are
    in no archive given and not already on every node."""
    out = []
    no_ctr = sorted(n for n, images in node_images.items() if images is None)
    if no_ctr:
        out.append(f"containerd is not installed on {', '.join(no_ctr)} (no ctr). Fix: inv cluster.prepare-nodes")
    in_archives = {name for a in loaded for name in a.names}
    for key, image in wanted.items():
        name = imageref.normalize(image)
        if name in in_archives:
            continue
        lacking = sorted(n for n, images in node_images.items() if images is not None and name not in images)
        if lacking or no_ctr:
            given = ", ".join(a.path.name for a in loaded) or "none"
            out.append(
                f"{key} = {image!r} is a local build (not upstream's {imageref.COMPONENTS[key.rsplit('.', 1)[1]]} "
                f"at versions.cloud_provider_openstack), in none of the archives given ({given}) and not on "
                f"{', '.join(lacking or no_ctr)}. Fix: add its archive to the command (`docker save -o "
                f"FILE {image}`), or set {key} to the name an archive holds, or unset it for upstream's image"
            )
    return out


def decide(archive: archives.Archive, images: dict[str, facts.CtrImage] | None) -> Decision:
    """Import `archive` on a node whose images are `images` (pure)?"""
    if images is None:
        return Decision("fail", "containerd is not installed (no ctr). Fix: inv cluster.prepare-nodes")
    want = f"sha256:{archive.sha256}"
    label = f"{LABEL}={want}"
    stale = []
    for name in archive.names:
        have = images.get(name)
        if have is None:
            stale.append(f"{name} is not on the node")
        elif have.labels.get(LABEL) != want:
            other = have.labels.get(LABEL)
            stale.append(
                f"{name} on the node is another build ({have.digest[:19]}, "
                f"{f'from archive {other[:19]}' if other else 'not loaded by osk8s'})"
            )
    if not stale:
        return Decision(
            "none", f"{', '.join(archive.names)} already imported from {archive.path.name} ({LABEL}={want[:19]})"
        )
    action = "create" if all(s.endswith("is not on the node") for s in stale) else "update"
    why = "; ".join(stale)
    if action == "update":  # the add-on's manifest does not change, so nothing restarts its pods
        why += ": pods already running that name keep the old build until restarted (give each build its own tag)"
    return Decision(
        action,
        why,
        diff=f"copy {archive.path.name} ({size_text(archive.size)}) to the node, "
        f"ctr -n {NAMESPACE} images import --label {label[: len(LABEL) + 20]}... COPY, remove COPY",
        data={"label": label},
    )


def import_command(label: str, path: str) -> str:
    return f"ctr -n {NAMESPACE} images import --label {shlex.quote(label)} {shlex.quote(path)}"


def import_archive(r, archive: archives.Archive, label: str) -> None:
    """Copy the archive to a fresh temporary file on the node (checked against its sha256, so the
    label never names a different file), import it, and remove the copy whatever happened."""
    tmp = r.run(f"mktemp {REMOTE_TEMP}").stdout.strip()
    try:
        r.put_file(archive.path, tmp)
        r.run(
            f"echo {archive.sha256}'  '{shlex.quote(tmp)} | sha256sum -c --status || "
            f"{{ echo 'the copy of {archive.path.name} differs from the local file (sha256)' >&2; exit 1; }}"
        )
        r.run(import_command(label, tmp), sudo=True, timeout=1800)
    finally:
        r.run(f"rm -f {shlex.quote(tmp)}", warn=True)


class NodeImages:
    """A node's images in k8s.io, read on first use and again after an import."""

    def __init__(self, r):
        self.r, self._images, self._read = r, None, False
        self._lock = threading.Lock()

    def get(self) -> dict[str, facts.CtrImage] | None:
        with self._lock:
            if not self._read:
                self._images = facts.parse_ctr_images(self.r.run(facts.CTR_IMAGES_PROBE, sudo=True).stdout)
                self._read = True
            return self._images

    def drop(self) -> None:
        with self._lock:
            self._read = False


def archive_steps(s, node: str, r, state: NodeImages, loaded: list[archives.Archive]) -> list[Step]:
    def act_for(archive):
        def act(d: Decision) -> None:
            if d.action == "fail":
                raise StepFailed(d.reason)
            if d.action != "none":
                import_archive(r, archive, d.data["label"])

        return act

    return [
        decision_step(
            f"image archive {a.path.name}",
            state.get,
            lambda images, a=a: decide(a, images),
            act_for(a),
            node=node,
            after_act=state.drop,
        )
        for a in loaded
    ]


def read_all(states: dict[str, NodeImages]) -> dict[str, dict[str, facts.CtrImage] | None]:
    """Every node's images, read concurrently (a node that cannot be read fails the run here,
    before any copy)."""
    with ThreadPoolExecutor(max_workers=max(1, min(NODE_THREADS, len(states)))) as pool:
        futures = {n: pool.submit(st.get) for n, st in states.items()}
    errors = {}
    out = {}
    for n, f in futures.items():
        try:
            out[n] = f.result()
        except StepFailed as exc:
            errors[n] = str(exc)
    if errors:
        raise StepFailed("; ".join(f"{n}: {e}" for n, e in errors.items()))
    return out


def run_load_images(s, files) -> None:
    paths = split_files(files)
    if not paths:
        raise StepFailed("no image archive given. Fix: inv cluster.load-images FILE (several: FILE1,FILE2)")
    loaded, refused = [], []
    for path in paths:  # every archive is read (and every error shown) before anything else
        status, archive = archive_status(path)
        try:
            s.converge([Step(f"archive {path}", lambda st=status: st if st.ok else _refuse(st))])
            loaded.append(archive)
        except StepFailed as exc:
            refused.append(str(exc))
    if refused:
        raise StepFailed(f"{len(refused)} of {len(paths)} archive(s) refused, nothing was copied: " + " | ".join(refused))
    wanted = local_images(s.settings)
    with connections(s) as remotes:
        states = {n: NodeImages(r) for n, r in remotes.items()}

        def check_nodes() -> Status:
            problems = images_problems(wanted, loaded, read_all(states))
            if problems:
                raise StepFailed(" | ".join(problems) + " (nothing was copied)")
            local = ", ".join(f"{k.rsplit('.', 1)[1]} {v}" for k, v in wanted.items()) or "none (every add-on upstream's)"
            return Status(True, f"containerd on all {len(states)} nodes; local builds in cluster.images: {local}")

        s.converge([Step("nodes and cluster.images", check_nodes)])
        s.converge_nodes({n: archive_steps(s, n, remotes[n], states[n], loaded) for n in remotes})


def _refuse(status: Status) -> Status:
    raise StepFailed(status.reason)
