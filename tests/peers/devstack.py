"""Builds the DevStack stand-in git repository (see devstack_standin/README.md for why, and for the
upstream DevStack files it follows: stackrc, lib/nova, stack.sh's phases and log lines)."""

import shutil
import subprocess
from pathlib import Path

STANDIN = Path(__file__).resolve().parent / "devstack_standin"


def git(*args, cwd):
    subprocess.run(
        ["git", "-c", "user.name=osk8s-tests", "-c", "user.email=tests@osk8s.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def standin_repo(where: Path) -> Path:
    """A bare repository (branch master, one commit) holding the stand-in; returns its path."""
    work = where / "standin-work"
    shutil.copytree(STANDIN, work)
    git("init", "-q", "-b", "master", ".", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "DevStack stand-in", cwd=work)
    bare = where / "devstack-standin.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=where)
    shutil.rmtree(work)
    subprocess.run(["chmod", "-R", "a+rX", str(where)], check=True)
    return bare


def patch_for_standin(where: Path) -> Path:
    """A real patch against the stand-in's stack.sh (adds a phase), made with git."""
    work = where / "patch-work"
    git("clone", "-q", str(where / "devstack-standin.git"), str(work), cwd=where)
    stack = work / "stack.sh"
    stack.write_text(
        stack.read_text().replace(
            'phase "Installing package prerequisites"\n',
            'phase "Installing package prerequisites"\nphase "Patched by osk8s"\n',
        )
    )
    out = subprocess.run(["git", "diff"], cwd=work, check=True, capture_output=True, text=True).stdout
    shutil.rmtree(work)
    patch = where / "add-phase.patch"
    patch.write_text(out)
    return patch
