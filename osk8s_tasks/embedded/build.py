"""Build the real Kubernetes programs (the test peers, and the embedded lab's control plane and
cloud controllers) from the Go modules under tests/peers/k8s.

One Go module per upstream line (kubernetes, etcd, cloud-provider-openstack, kwok, and one per CSI
sidecar); each lists the main packages it builds as `tool` directives in its go.mod, and go.sum
pins everything. Binaries land in a cache outside the repository:

    $OSK8S_PEERS_CACHE (default /var/cache/osk8s-peers)/
        bin/<module>/<key>/<binary>   key: hash of go.mod, go.sum, *.go, build flags, go version
        gocache/                      GOCACHE (compiled packages, shared by all modules)
        gomod/                        GOMODCACHE (downloaded modules; -modcacherw, so rm -rf works)
        build.lock                    held while building, so concurrent callers build once

A module is rebuilt only when its key changes; a second run finds every binary and returns in
well under a second. Binary names are the last element of each tool's package path.

    from osk8s_tasks.embedded import build
    paths = build.ensure(["kubeadm", "etcd"])    # builds what is missing, returns {name: Path}
    build.binary("kubeadm")                       # path of a built binary (never builds)
    build.status()                                # {module: {binary: Path | None}}

    python -m osk8s_tasks.embedded.build [--status] [names...]   # names: binaries or modules
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# the Go modules (go.mod, go.sum, tool directives): pinned beside the tests that run what they build
HERE = Path(__file__).resolve().parents[2] / "tests" / "peers" / "k8s"
CACHE = Path(os.environ.get("OSK8S_PEERS_CACHE") or "/var/cache/osk8s-peers")
GO = shutil.which("go") or "/usr/local/go/bin/go"  # where the Go tarball installs it

# Every go command runs with exactly these settings (the user's GOFLAGS, GOCACHE... do not leak in).
# -modcacherw: the module cache is writable, so the cache directory can be removed with rm -rf.
# GOTOOLCHAIN=local: never download another Go; a go.mod that needs a newer one fails loudly.
GOFLAGS = "-trimpath -modcacherw -buildvcs=false -mod=readonly"
# -s -w: no symbol table or DWARF, as upstream's release builds (hack/lib/golang.sh, CPO's
# Makefile); stack traces still work. Saves disk and link time.
BASE_LDFLAGS = ("-s", "-w")


def kubernetes_ldflags(version: str, date: str) -> list[str]:
    """What k8s.io/kubernetes' hack/lib/version.sh stamps (kube::version::ldflags).

    kubeadm derives its default kubernetesVersion and its checks from gitVersion; unstamped it
    says v0.0.0-master+$Format:%H$. gitCommit and gitTreeState stay unset, as upstream's script
    leaves them when it does not know the commit: the module proxy does not say which it is.
    """
    major, minor = version.removeprefix("v").split(".")[:2]
    values = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "buildDate": date}
    return [
        f"-X k8s.io/{pkg}/version.{key}={value}"
        for pkg in ("client-go/pkg", "component-base")
        for key, value in values.items()
    ]


def cpo_ldflags(version: str, date: str) -> list[str]:
    """cloud-provider-openstack's Makefile: LDFLAGS := -X ...gitVersion=$(VERSION) -X ...Version=..."""
    return [
        f"-X k8s.io/component-base/version.gitVersion={version}",
        f"-X k8s.io/cloud-provider-openstack/pkg/version.Version={version}",
    ]


def csi_ldflags(version: str, date: str) -> list[str]:
    """csi-release-tools' build.make: -X main.version=$(REV)."""
    return [f"-X main.version={version}"]


@dataclass(frozen=True)
class Module:
    dir: str  # relative to this file
    stamp: str | None = None  # the required module whose version the binaries report
    ldflags: Callable[[str, str], list[str]] | None = None

    @property
    def name(self) -> str:
        return Path(self.dir).name

    @property
    def path(self) -> Path:
        return HERE / self.dir


# etcd (api/v3/version.Version) and kwok (pkg/consts.Version) carry their version as a constant.
MODULES = (
    Module("kubernetes", "k8s.io/kubernetes", kubernetes_ldflags),
    Module("etcd"),
    Module("cloud-provider-openstack", "k8s.io/cloud-provider-openstack", cpo_ldflags),
    Module("kwok"),
    Module("csi-sidecars/external-provisioner", "github.com/kubernetes-csi/external-provisioner/v5", csi_ldflags),
    Module("csi-sidecars/external-attacher", "github.com/kubernetes-csi/external-attacher/v4", csi_ldflags),
    Module("csi-sidecars/external-resizer", "github.com/kubernetes-csi/external-resizer", csi_ldflags),
)


def go_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(
        GOFLAGS=GOFLAGS,
        GOCACHE=str(CACHE / "gocache"),
        GOMODCACHE=str(CACHE / "gomod"),
        GOPATH=str(CACHE / "gopath"),
        GOTOOLCHAIN="local",
        CGO_ENABLED="0",
        GOPROXY=os.environ.get("GOPROXY") or "https://proxy.golang.org,direct",
    )
    return env


def go(*args: str, cwd: Path, capture: bool = True) -> str:
    proc = subprocess.run(
        [GO, *args],
        cwd=cwd,
        env=go_env(),
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
    )
    if proc.returncode:
        detail = (proc.stderr or "").strip() if capture else "(output above)"
        raise RuntimeError(f"go {' '.join(args)} in {cwd} failed ({proc.returncode}): {detail}")
    return proc.stdout or ""


@cache
def go_version() -> str:
    return go("env", "GOVERSION", cwd=HERE).strip()


def gomod(module: Module) -> dict:
    """go.mod as `go mod edit -json` parses it (reads the file only; no network, no module cache)."""
    return parse_gomod(module.path, (module.path / "go.mod").read_bytes())


@cache
def parse_gomod(path: Path, content: bytes) -> dict:  # cached per content: go.mod may change
    return json.loads(go("mod", "edit", "-json", cwd=path))


def tools(module: Module) -> dict[str, str]:
    """{binary name: package} from the module's `tool` directives."""
    return {exec_name(t["Path"]): t["Path"] for t in gomod(module).get("Tool", [])}


def exec_name(package: str) -> str:
    """The name `go build -o DIR` gives a main package: its last element, minus a /vN suffix."""
    parts = package.split("/")
    if len(parts) > 1 and parts[-1][:1] == "v" and parts[-1][1:].isdigit():
        parts.pop()
    return parts[-1]


def required_version(gomod_json: dict, path: str) -> str:
    """The version go.mod selects for `path`: a replace of it wins over its require line."""
    for r in gomod_json.get("Replace") or []:
        if r["Old"]["Path"] == path and r["New"].get("Version"):
            return r["New"]["Version"]
    for r in gomod_json.get("Require") or []:
        if r["Path"] == path:
            return r["Version"]
    raise LookupError(f"{path} is not required by {gomod_json['Module']['Path']}")


def ldflags(module: Module, date: str = "") -> str:
    """The -ldflags string; `date` (the stamped module's release time) only matters to kubernetes."""
    flags = list(BASE_LDFLAGS)
    if module.stamp and module.ldflags:
        flags += module.ldflags(required_version(gomod(module), module.stamp), date)
    return " ".join(flags)


def key(module: Module) -> str:
    """Hash of everything a build of this module depends on; names its bin directory."""
    h = hashlib.sha256()
    sources = ["go.mod", "go.sum", *sorted(p.name for p in module.path.glob("*.go"))]
    for name in sources:
        h.update(name.encode() + b"\0" + (module.path / name).read_bytes() + b"\0")
    # the flags, with the stamping function's source standing in for the date it computes
    h.update(f"{GOFLAGS}\0{ldflags(module, '<date>')}\0CGO_ENABLED=0\0{go_version()}".encode())
    return h.hexdigest()[:16]


def bin_dir(module: Module) -> Path:
    return CACHE / "bin" / module.name / key(module)


def status() -> dict[str, dict[str, Path | None]]:
    """{module: {binary: path, or None when not built for the current go.mod/go.sum/flags}}."""
    out = {}
    for module in MODULES:
        d = bin_dir(module)
        out[module.name] = {b: (d / b if (d / b).is_file() else None) for b in tools(module)}
    return out


def all_binaries() -> dict[str, Module]:
    return {b: m for m in MODULES for b in tools(m)}


def resolve(names: Iterable[str] | None) -> dict[Module, list[str]]:
    """Module and binary names → {module: [binaries]}; None means all."""
    index = all_binaries()
    wanted: dict[Module, list[str]] = {}
    for name in names if names is not None else [m.name for m in MODULES]:
        modules = [m for m in MODULES if name in (m.name, m.dir)]
        if modules:
            wanted.setdefault(modules[0], []).extend(tools(modules[0]))
        elif name in index:
            wanted.setdefault(index[name], []).append(name)
        else:
            known = sorted({m.name for m in MODULES} | set(index))
            raise LookupError(f"unknown peer binary or module {name!r}; known: {', '.join(known)}")
    return {m: sorted(set(bs)) for m, bs in wanted.items()}


def binary(name: str) -> Path:
    """Path of a built binary; never builds (call ensure() first)."""
    modules = [m for m in MODULES if name in tools(m)]
    if not modules:
        raise LookupError(f"unknown peer binary {name!r}; known: {', '.join(sorted(all_binaries()))}")
    path = bin_dir(modules[0]) / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} is not built at {path}; run: python -m osk8s_tasks.embedded.build {name}")
    return path


@contextmanager
def locked():
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "build.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another build to finish ({CACHE / 'build.lock'})")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def log(msg: str) -> None:
    print(f"[k8s peers] {msg}", file=sys.stderr, flush=True)


def release_date(module: Module) -> str:
    """The stamped module's release time from the proxy's .info (downloads the module if need be)."""
    if not module.stamp:
        return ""
    version = required_version(gomod(module), module.stamp)
    info = json.loads(go("mod", "download", "-json", f"{module.stamp}@{version}", cwd=module.path))
    if info.get("Error"):
        raise RuntimeError(f"{module.stamp}@{version}: {info['Error']}")
    return json.loads(Path(info["Info"]).read_text())["Time"]


def build(module: Module, binaries: list[str]) -> None:
    target = bin_dir(module)
    packages = [tools(module)[b] for b in binaries]
    log(f"building {module.dir}: {', '.join(binaries)} (key {target.name}) ...")
    wall, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    flags = ldflags(module, release_date(module))
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        go("build", "-ldflags", flags, "-o", tmp + "/", *packages, cwd=module.path, capture=False)
        for b in binaries:
            os.replace(Path(tmp) / b, target / b)  # atomic: a present binary is a complete one
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    log(
        f"built {module.dir} in {time.monotonic() - wall:.0f}s wall, {cpu:.0f}s CPU"
        f" (largest child so far {after.ru_maxrss // 1024} MiB) -> {target}"
    )
    for old in target.parent.iterdir():  # bin dirs of older keys of this module
        if old.is_dir() and old.name != target.name and not old.name.startswith(".build-"):
            shutil.rmtree(old, ignore_errors=True)


def ensure(names: Iterable[str] | None = None) -> dict[str, Path]:
    """Build whichever of `names` (binaries or modules; None: all) is missing; {binary: path}."""
    wanted = resolve(names)

    def missing() -> dict[Module, list[str]]:
        todo = {m: [b for b in bs if not (bin_dir(m) / b).is_file()] for m, bs in wanted.items()}
        return {m: bs for m, bs in todo.items() if bs}

    if missing():
        # the cache is the machine's, read and run by the nodes' login user too: never private, even
        # when the caller's umask is (an inv session's is 077)
        umask = os.umask(0o022)
        try:
            with locked():
                for module, binaries in missing().items():  # re-read: another caller may have built them
                    build(module, binaries)
        finally:
            os.umask(umask)
    return {b: bin_dir(m) / b for m, bs in wanted.items() for b in bs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m osk8s_tasks.embedded.build", description=__doc__.split("\n")[0])
    parser.add_argument("--status", action="store_true", help="say what is built and where; build nothing")
    parser.add_argument("names", nargs="*", help="binaries or modules (default: all)")
    args = parser.parse_args(argv)
    if args.status:
        built = status()
        for module, binaries in resolve(args.names or None).items():
            for b in binaries:
                print(f"{module.dir:34} {b:36} {built[module.name][b] or 'not built'}")
        return 0
    start = time.monotonic()
    for b, path in ensure(args.names or None).items():
        print(f"{b:36} {path}")
    log(f"done in {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
