"""Run main.go (containerd's `ctr images ls` layout) on a list of images: the Go toolchain the
peers are built with, offline (standard library only)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
GO = shutil.which("go") or "/usr/local/go/bin/go"


def ctr_ls(images: list[dict]) -> str:
    env = {**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    return subprocess.run(
        [GO, "run", "."],
        cwd=HERE,
        input=json.dumps(images),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=300,
    ).stdout
