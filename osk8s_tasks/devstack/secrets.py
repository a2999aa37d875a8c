"""The lab's own passwords: generated once into .osk8s/<lab>/secrets.yaml (mode 0600), or taken
from OSK8S_ADMIN_PASSWORD; every value is registered so that logs mask it. Reading never writes
(a check, a dry run); only `ensure` (an apply) creates the file."""

from __future__ import annotations

import os
import secrets

import yaml

from osk8s_tasks.core import lab, log
from osk8s_tasks.core.engine import StepFailed
from osk8s_tasks.core.files import write_private

KEYS = ("admin", "database", "rabbit", "service")


def stored(settings) -> dict[str, str]:
    """The passwords in secrets.yaml ({} when there is none); a file others can read is refused."""
    p = lab.secrets_file(settings)
    if not p.exists():
        return {}
    if p.stat().st_mode & 0o077:
        raise StepFailed(f"{p} is readable by others. Fix: chmod 600 {p}")
    data = yaml.safe_load(p.read_text()) or {}
    return {k: str(v) for k, v in data.items() if v}


def missing(settings) -> list[str]:
    return [k for k in KEYS if k not in stored(settings)]


def load(settings) -> dict[str, str]:
    """Every password the lab uses: stored ones, OSK8S_ADMIN_PASSWORD for admin, and for the
    missing ones fresh values that are NOT kept (what a check compares against; `ensure` keeps them)."""
    data = stored(settings)
    data.update({k: secrets.token_hex(12) for k in KEYS if k not in data})
    if os.environ.get(lab.ENV_ADMIN):
        data["admin"] = os.environ[lab.ENV_ADMIN]
    for value in data.values():
        log.secret(value)
    return data


def ensure(settings) -> dict[str, str]:
    """Create the missing passwords in secrets.yaml (0600); the passwords, as load() gives them."""
    data = stored(settings)
    if missing(settings):
        data.update({k: secrets.token_hex(12) for k in KEYS if k not in data})
        write_private(lab.secrets_file(settings), yaml.safe_dump(data, sort_keys=True))
    return load(settings)
