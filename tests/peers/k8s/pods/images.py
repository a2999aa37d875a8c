"""The images the pod runner plays, and the binaries that play them.

What the upstream image has, from its Dockerfile (cloud-provider-openstack v1.36.0 Dockerfile: FROM
go-runner, the binary at /bin/<name>; csi-release-tools Dockerfile: FROM distroless/static,
ENTRYPOINT ["/csi-x"]; kubernetes build/server-image/Dockerfile; kubernetes test/images/busybox).
The map given to PodRunner says which binary plays which image; this says where the image has it
and how it starts. A pod is taken when its image tag is the binary's version
(pkg/kubelet/kubelet.go HandlePodAdditions has no such check: a real kubelet pulls the tag).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImageConfig:
    binary: str | None = None  # where the image has its program (None: wherever argv[0] says)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    workdir: str = "/"
    user: int = 0
    applets: bool = False  # a multi-call binary (busybox): a link per applet beside it, argv[0] found on PATH
    libs: tuple[str, ...] = ()  # host library directories the (dynamically linked) binary needs, read-only
    version_argv: tuple[str, ...] = ("--version",)  # how the binary tells its version
    release: str = "exact"  # "exact": the tag is the binary's version; "major": the same major version
    env: tuple[tuple[str, str], ...] = (
        ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),  # distroless static
    )


GO_RUNNER = "/go-runner"


def _cpo(name: str) -> ImageConfig:
    # cloud-provider-openstack v1.36.0 Dockerfile: FROM go-runner (ENTRYPOINT ["/go-runner"]), the binary
    # at /bin/<name>, CMD ["/bin/<name>"]
    return ImageConfig(f"/bin/{name}", (GO_RUNNER,), (f"/bin/{name}",))


IMAGES = {
    **{
        f"registry.k8s.io/provider-os/{n}": _cpo(n)
        for n in (
            "openstack-cloud-controller-manager",
            "cinder-csi-plugin",
            "k8s-keystone-auth",
            "octavia-ingress-controller",
        )
    },
    # csi-release-tools Dockerfile: FROM distroless/static, COPY csi-x /csi-x, ENTRYPOINT ["/csi-x"]
    **{
        f"registry.k8s.io/sig-storage/{n}": ImageConfig(f"/{n}", (f"/{n}",))
        for n in (
            "csi-provisioner",
            "csi-attacher",
            "csi-resizer",
            "csi-snapshotter",
            "livenessprobe",
            "csi-node-driver-registrar",
        )
    },
    # kubernetes build/server-image/Dockerfile: /usr/local/bin/<binary>, ENTRYPOINT ["/go-runner"]
    "registry.k8s.io/kube-proxy": ImageConfig("/usr/local/bin/kube-proxy", (GO_RUNNER,)),
    # kubernetes test/images/busybox (FROM busybox): /bin/busybox and its applet links, CMD ["sh"]. Played by
    # Debian's busybox (1.35; no 1.36 can be had here), dynamically linked: glibc read-only beside it. verify.pv
    # uses sh, echo, cat, sync and sleep of it; the release check is on the major version (BusyBox v1).
    "registry.k8s.io/e2e-test-images/busybox": ImageConfig(
        "/bin/busybox",
        cmd=("sh",),
        applets=True,
        libs=("/usr/lib/x86_64-linux-gnu", "/usr/lib64"),
        version_argv=(),
        release="major",
    ),
}


def split_image(ref: str) -> tuple[str, str | None]:
    """'registry/repo:tag@sha256:..' -> (repository, tag or None)."""
    ref = ref.split("@", 1)[0]
    head, _, last = ref.rpartition("/")
    if ":" in last:
        last, tag = last.split(":", 1)
        return (f"{head}/{last}" if head else last), tag
    return ref, None


_versions: dict[tuple, str | None] = {}
_digests: dict[tuple, str] = {}


def binary_version(path: Path, argv: tuple[str, ...] = ("--version",)) -> str | None:
    """The version a binary reports with --version (the first vX.Y.Z-like word), cached per file."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size, argv)
    if key not in _versions:
        try:
            out = subprocess.run([str(path), *argv], capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
            m = re.search(r"(?:^|\s)(v?\d+\.\d+\.\d+[^\s]*)", out.stdout + "\n" + out.stderr)
            _versions[key] = m.group(1) if m else None
        except (subprocess.TimeoutExpired, OSError):
            _versions[key] = None
    return _versions[key]


def _digest(target: Path | list[str]) -> str:
    if isinstance(target, list):
        return hashlib.sha256("\0".join(target).encode()).hexdigest()
    st = target.stat()
    key = (str(target), st.st_mtime_ns, st.st_size)
    if key not in _digests:
        h = hashlib.sha256()
        with open(target, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _digests[key] = h.hexdigest()
    return _digests[key]


_applets: dict[str, list[str]] = {}


def applets(binary: Path) -> list[str]:
    """The applets of a multi-call busybox (`busybox --list`)."""
    if str(binary) not in _applets:
        out = subprocess.run([str(binary), "--list"], capture_output=True, text=True, timeout=20, check=True)
        _applets[str(binary)] = [a for a in out.stdout.split() if a and "/" not in a and a != os.path.basename(binary)]
    return _applets[str(binary)]


def python_standin(script: Path) -> list[str]:
    """The argv prefix that runs a Python stand-in of this repository (kept as a file path: the
    container's workingDir is the manifest's, not the repository)."""
    return [sys.executable, "-I", str(Path(script).resolve())]


# ---------------------------------------------------------------------------------------------------
