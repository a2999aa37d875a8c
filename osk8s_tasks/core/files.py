"""Local files the tool writes: private from creation (directories 0700, files 0600), never through
a symlink planted in their place, and replaced atomically. Lab files hold passwords, keys and
tokens; a window in which one is readable by others, or a predictable temporary name another
user could pre-create, is a leak."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def make_dirs(path: Path) -> Path:
    """`path` and every missing parent, created 0700; directories that exist are left as they are
    (a report's directory is the user's: /tmp must stay /tmp)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
    return path


def private_dir(path: Path) -> Path:
    """One of the tool's own directories (the lab's, its caches): created 0700, and made 0700 if
    it exists. Never for a directory the user named."""
    path = make_dirs(path)
    if path.is_symlink():
        raise OSError(f"{path} is a symlink: refusing to use it as a private directory")
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: str | bytes) -> None:
    """Write a file readable by its owner only (0600), atomically: a fresh temporary file in the
    same directory (O_EXCL, O_NOFOLLOW, unpredictable name), then renamed over `path`. Missing
    parents are created 0700; an existing parent keeps its mode."""
    path = Path(path)
    make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def open_private(path: Path, mode: str = "a"):
    """A file object on `path`, created 0600 if missing, never through a symlink; an existing file
    is made 0600 (the tool's own log files: older runs may have left them wider). Missing parents
    are created 0700; an existing parent keeps its mode."""
    path = Path(path)
    make_dirs(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, mode, buffering=-1 if "b" in mode else 1)
