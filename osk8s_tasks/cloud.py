"""OpenStack connections from clouds.yaml (the ecosystem's standard), with errors a user can act
on, and a count of the API requests each run made (reads and writes), from keystoneauth's own
timing records."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .steps import StepFailed

READ_METHODS = {"GET", "HEAD", "OPTIONS"}


def tag(settings) -> str:
    """The tag every OpenStack object of this lab carries."""
    return f"osk8s:{settings.lab.name}"


def clouds_files(settings) -> list[str]:
    """clouds.yaml files to read, most specific first."""
    from openstack.config import loader

    own = settings.openstack.clouds_yaml or (settings.lab_dir / "clouds.yaml")
    files = [str(own)] if Path(own).exists() else []
    if os.environ.get("OS_CLIENT_CONFIG_FILE"):
        files.append(os.environ["OS_CLIENT_CONFIG_FILE"])
    return files + [f for f in loader.CONFIG_FILES if f not in files]


@dataclass
class Clouds:
    """The lab's connections, opened and authenticated on first use."""

    settings: object
    _conns: dict = None

    def __post_init__(self):
        self._conns = {}

    def get(self, name: str):
        if name not in self._conns:
            self._conns[name] = connect(self.settings, name)
        return self._conns[name]

    @property
    def main(self):
        return self.get(self.settings.openstack.cloud)

    @property
    def admin(self):
        return self.get(self.settings.openstack.admin_cloud)

    def api_counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for name, conn in self._conns.items():
            timings = conn.session.get_timings()
            writes = [t for t in timings if t.method not in READ_METHODS and not t.url.endswith("/auth/tokens")]
            out[name] = {"requests": len(timings), "writes": len(writes)}
        return out


def connect(settings, name: str):
    """An authenticated openstacksdk Connection to cloud `name`, or StepFailed saying why."""
    import keystoneauth1.exceptions as ksa
    import openstack
    from openstack import exceptions as osx
    from openstack.config import OpenStackConfig

    files = clouds_files(settings)
    try:
        region = OpenStackConfig(config_files=files).get_one(cloud=name, timing=True)
    except osx.ConfigException as exc:
        existing = [f for f in files if os.path.exists(f)]
        raise StepFailed(f"cloud {name!r} is not in clouds.yaml ({exc}; read: {', '.join(existing) or 'no file found'}). "
                         "Fix: set openstack.cloud / openstack.admin_cloud to a cloud listed there, or run inv devstack.stack, "
                         "which writes .osk8s/<lab>/clouds.yaml") from None
    conn = openstack.connection.Connection(config=region)
    auth_url = region.config.get("auth", {}).get("auth_url", "?")
    try:
        conn.authorize()
    except (ksa.Unauthorized, osx.HttpException) as exc:
        status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
        if status == 401 or isinstance(exc, ksa.Unauthorized):
            raise StepFailed(f"cloud {name!r}: authentication refused by {auth_url} (401). "
                             "Fix: check username, password and project of this cloud in clouds.yaml") from None
        raise StepFailed(f"cloud {name!r}: {auth_url} answered {status}: {exc}") from None
    except (ksa.ConnectFailure, ksa.DiscoveryFailure, ksa.ConnectTimeout) as exc:
        raise StepFailed(f"cloud {name!r}: cannot reach {auth_url} ({exc.__class__.__name__}). "
                         "Fix: is the cloud up (inv devstack.status) and auth_url right?") from None
    return conn
