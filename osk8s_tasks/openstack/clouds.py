"""OpenStack connections from clouds.yaml (the ecosystem's standard), with errors a user can act
on, and a count of the API requests each run made (reads and writes), from keystoneauth's own
timing records."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import keystoneauth1.exceptions as ksa
import openstack
from openstack import exceptions as osx
from openstack.config import OpenStackConfig, loader

from osk8s_tasks.core import faults, lab
from osk8s_tasks.core.engine import StepFailed

READ_METHODS = {"GET", "HEAD", "OPTIONS"}


def tag(settings) -> str:
    """The tag every OpenStack object of this lab carries."""
    return f"osk8s:{settings.lab.name}"


def clouds_files(settings) -> list[str]:
    """clouds.yaml files to read, most specific first."""
    own = settings.openstack.clouds_yaml or lab.clouds_yaml(settings)
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
        self._lock = threading.Lock()  # checks run concurrently; each cloud is authenticated once
        self.cache = {}  # reads shared by one pass of checks; cleared by every apply

    def servers(self) -> dict:
        """The lab's servers by name: one request per pass of checks."""
        main = self.main
        with self._lock:
            if "servers" not in self.cache:
                self.cache["servers"] = {x.name: x for x in main.compute.servers(tags=tag(self.settings))}
            return self.cache["servers"]

    def get(self, name: str):
        with self._lock:
            if name not in self._conns:
                self._conns[name] = connect(self.settings, name)
            return self._conns[name]

    @property
    def main(self):
        return self.get(self.settings.openstack.cloud)

    @property
    def admin(self):
        return self.get(self.settings.openstack.admin_cloud)

    def slowest(self, n: int = 5) -> list[str]:
        all_ = [(t.elapsed.total_seconds(), t.method, t.url) for c in self._conns.values() for t in c.session.get_timings()]
        return [f"{e:.3f}s {m} {u}" for e, m, u in sorted(all_, reverse=True)[:n]]

    def api_counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for name, conn in self._conns.items():
            timings = conn.session.get_timings()
            writes = [t for t in timings if t.method not in READ_METHODS and not t.url.endswith("/auth/tokens")]
            out[name] = {"requests": len(timings), "writes": len(writes)}
        return out


def by_name(objects):
    """The one object a name-filtered listing returned, or None. Neutron lookups list by name:
    openstacksdk's find_* tries GET /<name> as an ID first, a 404 path that costs ~0.5 s."""
    return next(iter(objects), None)


def connect(settings, name: str):
    """An authenticated openstacksdk Connection to cloud `name`, or StepFailed saying why."""
    files = clouds_files(settings)
    explicit = settings.openstack.clouds_yaml
    saved = os.environ.pop("OS_CLIENT_CONFIG_FILE", None) if explicit else None
    try:  # openstacksdk reads OS_CLIENT_CONFIG_FILE before the files it is given: a configured one must win
        region = OpenStackConfig(config_files=[explicit] if explicit else files).get_one(cloud=name, timing=True)
    except osx.ConfigException as exc:
        existing = [f for f in files if os.path.exists(f)]
        raise StepFailed(
            f"cloud {name!r} is not in clouds.yaml ({exc}; read: {', '.join(existing) or 'no file found'}). "
            "Fix: set openstack.cloud / openstack.admin_cloud to a cloud listed there, or run inv devstack.stack, "
            "which writes .osk8s/<lab>/clouds.yaml"
        ) from None
    finally:
        if saved is not None:
            os.environ["OS_CLIENT_CONFIG_FILE"] = saved
    conn = openstack.connection.Connection(config=region)
    auth_url = region.config.get("auth", {}).get("auth_url", "?")
    try:
        conn.session.get_token()  # keystoneauth errors stay typed (authorize() flattens them)
    except (ksa.Unauthorized, osx.HttpException) as exc:
        status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
        if status == 401 or isinstance(exc, ksa.Unauthorized):
            raise StepFailed(
                f"cloud {name!r}: authentication refused by {auth_url} (401). "
                "Fix: check username, password and project of this cloud in clouds.yaml"
            ) from None
        raise StepFailed(f"cloud {name!r}: {auth_url} answered {status}: {exc}") from None
    except (ksa.ConnectFailure, ksa.DiscoveryFailure, ksa.ConnectTimeout) as exc:
        raise StepFailed(
            f"cloud {name!r}: cannot reach {auth_url} ({exc.__class__.__name__}). "
            "Fix: is the cloud up (inv devstack.status) and auth_url right?"
        ) from None
    faults.catalog(conn)  # a service that dies later is then named with its endpoint
    return conn
