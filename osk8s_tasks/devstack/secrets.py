"""The lab's own passwords: generated once into .osk8s/<lab>/secrets.yaml (mode 0600), or taken
from OSK8S_ADMIN_PASSWORD; every value is registered so that logs mask it."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import yaml

from osk8s_tasks.core import log
from osk8s_tasks.core.ssh import write_private
from osk8s_tasks.core.engine import StepFailed

KEYS = ("admin", "database", "rabbit", "service")
# local.conf is sourced by bash, and the admin password also lands in clouds.yaml and openrc:
# characters that mean nothing to a shell or YAML only (DevStack's own advice: no special characters).
_SAFE_PASSWORD = re.compile(r"[A-Za-z0-9_.+=-]{8,128}")
ENV_ADMIN = "OSK8S_ADMIN_PASSWORD"


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
    if os.environ.get(ENV_ADMIN):
        data["admin"] = os.environ[ENV_ADMIN]
    for value in data.values():
        log.secret(str(value))
    return {k: str(v) for k, v in data.items()}


def check_env() -> None:
    """OSK8S_ADMIN_PASSWORD, if set, is safe to write into local.conf; the error never shows it."""
    from osk8s_tasks.core.config import ConfigError

    value = os.environ.get(ENV_ADMIN)
    if value and not _SAFE_PASSWORD.fullmatch(value):
        raise ConfigError([f"config: {ENV_ADMIN} (value not shown): must be 8-128 letters, digits or _ . + = - "
                           "(DevStack sources local.conf with bash). Fix: choose such a password, or unset it and "
                           "let the tool generate one"])


def register_known(settings) -> None:
    """Register every secret this lab already has, before a run prints anything: the lab's
    passwords, the application credential, the passwords and secrets in the clouds.yaml files the
    run may read. Nothing is created here (a dry run writes nothing)."""
    check_env()
    if os.environ.get(ENV_ADMIN):
        log.secret(os.environ[ENV_ADMIN])
    lab = settings.lab_dir
    for path, pick in ((lab / "secrets.yaml", lambda d: d.values()),
                       (lab / "app-credential.yaml", lambda d: [d.get("secret")]),
                       (lab / "clouds.yaml", _cloud_secrets),
                       (Path(settings.openstack.clouds_yaml) if settings.openstack.clouds_yaml else None, _cloud_secrets)):
        data = _read(path)
        if isinstance(data, dict):
            for value in pick(data):
                if value:
                    log.secret(str(value))


def _read(path):
    if path is None or not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None  # the task that reads it reports the problem


def _cloud_secrets(data: dict) -> list:
    out = []
    for c in (data.get("clouds") or {}).values():
        auth = (c or {}).get("auth") or {}
        out += [auth.get(k) for k in ("password", "application_credential_secret", "token")]
    return out
