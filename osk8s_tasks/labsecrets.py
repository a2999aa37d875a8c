"""The lab's own passwords: generated once into .osk8s/<lab>/secrets.yaml (mode 0600), or taken
from OSK8S_ADMIN_PASSWORD; every value is registered so that logs mask it."""

from __future__ import annotations

import os
import secrets

import yaml

from . import log
from .remote import write_private
from .steps import StepFailed

KEYS = ("admin", "database", "rabbit", "service")


def path(settings):
    return settings.lab_dir / "secrets.yaml"


def load(settings, create: bool = True) -> dict[str, str]:
    """The lab's passwords; created (0600) on first use unless `create` is False (dry run)."""
    p = path(settings)
    if p.exists():
        if p.stat().st_mode & 0o077:
            raise StepFailed(f"{p} is readable by others. Fix: chmod 600 {p}")
        data = yaml.safe_load(p.read_text()) or {}
    else:
        data = {}
    missing = [k for k in KEYS if not data.get(k)]
    for k in missing:
        data[k] = secrets.token_hex(12)
    if missing and create:
        write_private(p, yaml.safe_dump(data, sort_keys=True))
    if os.environ.get("OSK8S_ADMIN_PASSWORD"):
        data["admin"] = os.environ["OSK8S_ADMIN_PASSWORD"]
    for value in data.values():
        log.secret(str(value))
    return {k: str(v) for k, v in data.items()}
