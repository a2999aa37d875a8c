"""Inside the container's new mount + UTS namespace (started by `unshare`): build the root, enter it,
drop what the container may not keep, exec. Only the standard library (it runs as
`python -I -S enter.py --container SPEC`); no threads.

Follows runc: libcontainer/rootfs_linux.go (the tmpfs root, bind mounts parents first with their
propagation, /dev as a tmpfs with the default devices, /proc, /sys read-only, readonlyRootfs),
libcontainer/init_linux.go finalizeNamespace (groups, the bounding set, no_new_privs, then the
user; a non-root user loses its capabilities on setuid, root keeps the container's set, the
inheritable set stays empty since CVE-2022-24769); a container that cannot start fails as
containerd reports it ("failed to create containerd task ... OCI runtime create failed", exit 128).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from pathlib import Path

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MS_PRIVATE, MS_SLAVE, MS_SHARED = 1 << 18, 1 << 19, 1 << 20
PROPAGATION = {"None": MS_PRIVATE, "HostToContainer": MS_SLAVE, "Bidirectional": MS_SHARED}


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _mount(libc, source, target, fstype, flags, data=None):
    if (
        libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(), flags, data and data.encode())
        != 0
    ):
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or fstype} on {target}: {os.strerror(err)}")


def _mountpoint(path: str, is_file: bool) -> None:
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if is_file:
        open(path, "a").close()
    else:
        os.makedirs(path)


def container_main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    os.unlink(spec_file)  # the environment may hold secrets
    # opened before the chroot, closed by the exec: written only when the container cannot start
    error_fd = os.open(spec["error_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        fail = spec.get("fail") or {}
        if "message" in fail:  # go-runner's own failure: it ran, printed, and exited
            print(fail["message"], file=sys.stderr, flush=True)
            os._exit(fail["code"])
        enter(spec)
        if "start_error" in fail:
            raise OSError(fail["start_error"])
        argv, env = spec["argv"], spec["env"]
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        path = argv[0]
        if "/" not in path:
            for d in env.get("PATH", "").split(":"):
                if d and os.access(os.path.join(d, path), os.X_OK):
                    path = os.path.join(d, path)
                    break
            else:
                raise OSError(f'exec: "{argv[0]}": executable file not found in $PATH')
        try:
            os.execve(path, argv, env)
        except OSError as e:
            raise OSError(f'exec: "{argv[0]}": stat {argv[0]}: {e.strerror.lower() if e.strerror else e}') from e
    except BaseException as e:  # runc's "failed to create containerd task" -> StartError, exit 128
        msg = str(e.args[0]) if isinstance(e, OSError) and len(e.args) == 1 else str(e)
        os.write(
            error_fd,
            f"failed to create containerd task: failed to create shim task: OCI runtime create failed: {msg}".encode(),
        )
        print(msg, file=sys.stderr, flush=True)
        os._exit(128)


def enter(spec: dict) -> None:
    libc = _libc()
    name = spec["hostname"].encode()
    if libc.sethostname(name, len(name)) != 0:
        raise OSError(ctypes.get_errno(), "sethostname")
    root = spec["root"]
    os.makedirs(root, exist_ok=True)
    _mount(libc, "tmpfs", root, "tmpfs", MS_NOSUID, "mode=0755,size=512m")
    for d, mode in (
        ("etc", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("run", 0o755),
        ("root", 0o700),
        ("var", 0o755),
    ):
        os.makedirs(f"{root}/{d}", exist_ok=True)
        os.chmod(f"{root}/{d}", mode)
    os.symlink("../run", f"{root}/var/run")
    for path, text in spec["files"].items():
        with open(root + path, "w") as f:
            f.write(text)
    mounts = sorted(spec["mounts"], key=lambda m: len(Path(m["target"]).parts))  # parents first (containerd)
    for m in mounts:
        target = root + os.path.normpath("/" + m["target"])
        if m["kind"] == "symlink":
            if not os.path.lexists(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.symlink(m["to"], target)
            continue
        src = m["source"]
        if not os.path.lexists(src):
            raise OSError(f'error mounting "{src}" to rootfs at "{m["target"]}": no such file or directory')
        _mountpoint(target, not os.path.isdir(src))
        _mount(libc, src, target, None, MS_BIND | MS_REC)
        if m.get("ro"):
            _mount(libc, None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        _mount(libc, None, target, None, MS_REC | PROPAGATION.get(m.get("propagation") or "None", MS_PRIVATE))
    if any(Path(m["target"]).is_relative_to("/root") for m in mounts):
        os.chmod(f"{root}/root", 0o755)  # a stand-in's interpreter installed under /root (pyenv): traversable
    if spec.get("privileged"):
        _mount(libc, "/dev", f"{root}/dev", None, MS_BIND | MS_REC)
    else:
        _mount(libc, "tmpfs", f"{root}/dev", "tmpfs", MS_NOSUID, "mode=0755,size=65536k")
        for dev in ("null", "zero", "full", "random", "urandom", "tty"):
            open(f"{root}/dev/{dev}", "a").close()
            _mount(libc, f"/dev/{dev}", f"{root}/dev/{dev}", None, MS_BIND)
        os.makedirs(f"{root}/dev/shm")
        _mount(libc, "shm", f"{root}/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
        for link, to in (
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ):
            os.symlink(to, f"{root}/dev/{link}")
    _mount(libc, "proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount(
        libc,
        "sysfs",
        f"{root}/sys",
        "sysfs",
        MS_NOSUID | MS_NODEV | MS_NOEXEC | (0 if spec.get("privileged") else MS_RDONLY),
    )
    cwd = os.path.normpath("/" + spec["cwd"])
    os.makedirs(root + cwd, exist_ok=True)
    if spec.get("readonly_root"):
        _mount(libc, None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
    os.chroot(root)
    os.chdir(cwd)
    os.umask(0o022)
    # runc's order: groups while all capabilities are held, the bounding set, then the user (a non-root
    # user loses its effective and permitted capabilities on setuid), or the kept set for root
    os.setgroups(sorted({spec["gid"], *spec["groups"]}))
    os.setgid(spec["gid"])
    drop_bounding(libc, spec["caps"])
    if spec.get("no_new_privs") and libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if spec["uid"] != 0:
        os.setuid(spec["uid"])
    else:
        capset(libc, spec["caps"])


def drop_bounding(libc, keep: list[int]) -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        if cap not in keep and libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap})")


def capset(libc, keep: list[int]) -> None:

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    have = int(
        next(ln.split()[1] for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("CapPrm:")), 16
    )
    mask = sum(1 << c for c in keep) & have  # what this runner holds: a privileged container gets no more
    data = (Data * 2)()
    for i in (0, 1):  # inheritable stays empty (containerd since CVE-2022-24769)
        data[i].effective = data[i].permitted = (mask >> (32 * i)) & 0xFFFFFFFF
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), data) != 0:  # _LINUX_CAPABILITY_VERSION_3
        raise OSError(ctypes.get_errno(), "capset")


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--container":
    container_main(sys.argv[2])
