"""The value types of the settings model: each a check that says what a good value looks like
(a DNS-1123 label, a path safe in a shell command, a git branch, a one-line name, a port range...),
for config.py's fields. Kept apart so that the model reads as the list of settings it is."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any

import yaml

from osk8s_tasks.core import imageref

PROJECT_DIR = Path(__file__).resolve().parents[2]

DNS1123_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_WHY = (
    "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a "
    "letter or digit, at most 63 characters (kubelet rejects node names with '_' or capitals)"
)


class KeyedError(ValueError):
    """A model-level check's failure that knows the exact key, the value and the fix (a plain
    ValueError there would be reported at the section: "Fix: set cluster to a valid value")."""

    def __init__(self, key: str, value, message: str, fix: str):
        self.key, self.value, self.message, self.fix = key, value, message, fix
        super().__init__(message)


def dns_label(value: str) -> str:
    if len(value) > 63 or not DNS1123_RE.match(value):
        raise ValueError(DNS1123_WHY)
    return value


def cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"not a network in CIDR form ({exc})") from None


def yaml_string(value: Any) -> Any:
    """An INVOKE_* variable is a string; a list or mapping key accepts it as YAML."""
    if isinstance(value, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


def box(value: str | None) -> str:
    if not value:
        raise ValueError("no Vagrant box configured")
    return value


def patch_file(name: str) -> str:
    path = Path(name) if os.path.isabs(name) else PROJECT_DIR / "devstack" / "patches" / name
    if not path.is_file():
        raise ValueError(f"no patch file {path}")
    return name


def remote_path(value: str) -> str:
    """An absolute path that lands in remote shell commands and in local.conf (sourced by bash):
    only characters that mean nothing to a shell."""
    if not re.fullmatch(r"/[A-Za-z0-9._/+-]*", value) or "/../" in f"{value}/" or "//" in value:
        raise ValueError(
            "must be an absolute path of letters, digits and . _ - + / (no '..', no spaces, "
            "quotes, $ or newlines: it lands in shell commands and in local.conf)"
        )
    return value


def git_ref(value: str) -> str:
    """A branch name as git accepts it, never an option: no leading '-', no '..', no spaces."""
    if (
        not re.fullmatch(r"[A-Za-z0-9._/+-]+", value)
        or value.startswith(("-", "/"))
        or ".." in value
        or value.endswith((".", "/", ".lock"))
    ):
        raise ValueError("must be a git branch name: letters, digits and . _ - + /, not starting with '-' or '/', no '..'")
    return value


def one_line(value: str) -> str:
    """A name that goes into config files (cloud.conf, ssh_config): one line, no quotes or
    control characters, not an option."""
    if not value or re.search(r'[\x00-\x1f\x7f"\\]', value) or value.startswith("-") or value != value.strip():
        raise ValueError(
            "must be one line without quotes, backslashes or control characters, not starting with "
            "'-' or a space (it is written into cloud.conf and ssh_config)"
        )
    return value


def user_name(value: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value):
        raise ValueError(
            "must be a POSIX user name: lower-case letters, digits, '_' and '-' (it is written into ssh_config)"
        )
    return value


def port_range(value: str) -> str:
    m = re.fullmatch(r"(\d{1,5})-(\d{1,5})", value)
    if not m or not 1 <= int(m[1]) <= int(m[2]) <= 65535:
        raise ValueError(
            "must be LOW-HIGH with 1 <= LOW <= HIGH <= 65535 (kube-apiserver's --service-node-port-range, e.g. 30000-32767)"
        )
    return value


def image_ref(value: str) -> str:
    """An image reference containerd accepts (distribution/reference's grammar): it lands in the
    add-on manifests and is compared with the names containerd gives a loaded image."""
    try:
        imageref.normalize(value)
    except imageref.RefError as exc:
        raise ValueError(f"not an image reference ({exc})") from None
    return value
