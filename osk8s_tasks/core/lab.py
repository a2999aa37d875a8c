"""The one owner of a lab's own paths and names: every file the tool keeps in .osk8s/<lab>/, the
name of each node's server, the control-plane node, and the DevStack host the nodes are reached
through (the jump host). Nothing here does I/O but register_known_secrets, which reads the
lab's secret files once so that nothing a run prints can show them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from osk8s_tasks.core import config, log

# --- files of the lab ------------------------------------------------------------------------------


def admin_conf(settings) -> Path:
    return settings.lab_dir / "admin.conf"


def clouds_yaml(settings) -> Path:
    """The clouds.yaml devstack.stack writes for the lab."""
    return settings.lab_dir / "clouds.yaml"


def app_credential(settings) -> Path:
    return settings.lab_dir / "app-credential.yaml"


def private_key(settings) -> Path:
    return settings.lab_dir / "id_ed25519"


def secrets_file(settings) -> Path:
    return settings.lab_dir / "secrets.yaml"


def nodes_ssh_config(settings) -> Path:
    return Path(settings.cluster.ssh_config) if settings.cluster.ssh_config else settings.lab_dir / "nodes_ssh_config"


def nodes_known_hosts(settings) -> Path:
    return settings.lab_dir / "nodes_known_hosts"


def vm_ssh_config(settings) -> Path:
    """What host.ssh-config writes for the lab VM (and vm_known_hosts its host keys)."""
    return settings.lab_dir / "ssh_config"


def vm_known_hosts(settings) -> Path:
    return settings.lab_dir / "known_hosts"


def keystone_pki(settings) -> Path:
    return settings.lab_dir / "keystone-auth"


def run_log(settings, task: str, stamp: str) -> Path:
    return settings.lab_dir / "logs" / f"{stamp}-{task}.jsonl"


# --- names ----------------------------------------------------------------------------------------


def server_name(settings, node) -> str:
    """`<lab>-<node>`: the server's, the Kubernetes node's and the SSH alias's name."""
    return f"{settings.lab.name}-{node.name}"


def node_names(settings) -> dict[str, str]:
    """server name -> role, in config order."""
    return {server_name(settings, n): n.role for n in settings.cluster.nodes}


def control_plane(settings) -> str:
    """The server name of the (one) control-plane node."""
    return next(name for name, role in node_names(settings).items() if role == "control-plane")


def jump_host(settings) -> tuple[Path, str]:
    """(ssh_config, alias) of the DevStack host, through which the nodes are reached: the lab VM
    (host.ssh-config), or devstack.ssh_target in devstack.ssh_config."""
    d = settings.devstack
    if d.ssh_target:
        return Path(os.path.expanduser(d.ssh_config or "~/.ssh/config")), d.ssh_target
    return vm_ssh_config(settings), settings.lab.name


# --- secrets --------------------------------------------------------------------------------------

# local.conf is sourced by bash, and the admin password also lands in clouds.yaml and openrc:
# characters that mean nothing to a shell or YAML only (DevStack's own advice: no special characters).
SAFE_PASSWORD = re.compile(r"[A-Za-z0-9_.+=-]{8,128}")
ENV_ADMIN = "OSK8S_ADMIN_PASSWORD"


def check_env() -> None:
    """OSK8S_ADMIN_PASSWORD, if set, is safe to write into local.conf; the error never shows it."""
    value = os.environ.get(ENV_ADMIN)
    if value and not SAFE_PASSWORD.fullmatch(value):
        raise config.ConfigError(
            [
                f"config: {ENV_ADMIN} (value not shown): must be 8-128 letters, digits or "
                "_ . + = - (DevStack sources local.conf with bash). Fix: choose such a password, "
                "or unset it and let the tool generate one"
            ]
        )


def register_known_secrets(settings) -> None:
    """Register every secret this lab already has, before a run prints anything: the lab's
    passwords, the application credential, the passwords and secrets in the clouds.yaml files the
    run may read. Nothing is created here (a dry run writes nothing)."""
    check_env()
    if os.environ.get(ENV_ADMIN):
        log.secret(os.environ[ENV_ADMIN])
    for path, pick in (
        (secrets_file(settings), lambda d: d.values()),
        (app_credential(settings), lambda d: [d.get("secret")]),
        (clouds_yaml(settings), _cloud_secrets),
        (Path(settings.openstack.clouds_yaml) if settings.openstack.clouds_yaml else None, _cloud_secrets),
    ):
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
