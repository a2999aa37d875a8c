"""Faults of the peers the tool talks to, told apart from bugs of the tool: a cloud API that does
not answer, times out or answers 5xx is the service's problem, and the user needs its name, its
endpoint and what to do, not "internal error: ConnectFailure(...)".

Only exception classes already imported are looked at (sys.modules): this module costs nothing
at start-up and needs none of the clients.
"""

from __future__ import annotations

import re
import sys
from urllib.parse import urlsplit

# Where DevStack (behind Apache: path prefixes) and a plain deployment (ports) serve each API.
_BY_PATH = {
    "/identity": "keystone (identity)",
    "/compute": "nova (compute)",
    "/networking": "neutron (network)",
    "/volume": "cinder (block storage)",
    "/image": "glance (image)",
    "/load-balancer": "octavia (load balancer)",
    "/placement": "placement",
}
_BY_PORT = {
    5000: "keystone (identity)",
    8774: "nova (compute)",
    9696: "neutron (network)",
    8776: "cinder (block storage)",
    9292: "glance (image)",
    9876: "octavia (load balancer)",
    8778: "placement",
}
_URL = re.compile(r"https?://[^\s'\"),]+")


_TYPES = {
    "identity": "keystone (identity)",
    "compute": "nova (compute)",
    "network": "neutron (network)",
    "block-storage": "cinder (block storage)",
    "volume": "cinder (block storage)",
    "image": "glance (image)",
    "load-balancer": "octavia (load balancer)",
    "placement": "placement",
}
_NOT_SUPPORTED = re.compile(r"The (\S+) service for \S+ exists but does not have any supported versions")
_catalogs: list = []


def catalog(conn) -> None:
    """Remember a connection whose catalog can name a service's endpoint later (openstacksdk's
    version discovery failing on a dead service says only the service type)."""
    _catalogs.append(conn)


def _endpoint(service_type: str) -> str | None:
    for conn in reversed(_catalogs):
        try:
            return conn.endpoint_for(service_type)
        except Exception:  # no such service in this cloud's catalog, or no token: try the next  # noqa: BLE001
            continue
    return None


def service_of(url: str) -> str:
    parts = urlsplit(url)
    for prefix, name in _BY_PATH.items():
        if parts.path == prefix or parts.path.startswith(prefix + "/"):
            return name
    return _BY_PORT.get(parts.port or (443 if parts.scheme == "https" else 80), "the cloud API")


def _is(exc: BaseException, module: str, names: tuple[str, ...]) -> bool:
    mod = sys.modules.get(module)
    classes = tuple(c for c in (getattr(mod, n, None) for n in names) if isinstance(c, type)) if mod else ()
    return bool(classes) and isinstance(exc, classes)


def describe(exc: BaseException) -> str | None:
    """A one-line message naming the service, its endpoint and the fix, or None (not a peer fault)."""
    text = str(exc)
    url = getattr(exc, "url", None) or (m.group(0) if (m := _URL.search(text)) else None)
    where = ""
    if url:
        p = urlsplit(url)
        where = f" at {p.scheme}://{p.netloc}{'/' + p.path.strip('/').split('/')[0] if p.path.strip('/') else ''}"
    what = service_of(url) if url else "a cloud API"
    if _is(exc, "openstack.exceptions", ("NotSupported",)) and (m := _NOT_SUPPORTED.search(text)):
        # openstacksdk found the service in the catalog but its version document did not answer
        url = _endpoint(m.group(1))
        where = f" at {url.rstrip('/')}" if url else ""
        return (
            f"{_TYPES.get(m.group(1), m.group(1))}{where} does not answer (its version discovery failed). "
            "Fix: check that service (on the devstack lab: inv devstack.status), then run the task again: "
            "it resumes where it stopped"
        )
    if _is(exc, "openstack.exceptions", ("ResourceTimeout",)):
        # the API answered, but the work behind it (a worker, an agent) never finished
        return (
            f"the cloud did not finish in time: {text}. Fix: check the service's worker (on the devstack lab: "
            "inv devstack.status and devstack.logs; an Octavia object stuck in PENDING_* needs o-cw), then run "
            "the task again"
        )
    if _is(exc, "keystoneauth1.exceptions", ("ConnectFailure", "ConnectTimeout", "SSLError")) or _is(
        exc, "requests.exceptions", ("ConnectionError", "Timeout")
    ):
        why = "does not answer" if "imeout" not in type(exc).__name__ else "timed out"
    elif _is(exc, "keystoneauth1.exceptions", ("HttpError",)) and (getattr(exc, "http_status", 0) or 0) >= 500:
        why = f"answered {exc.http_status}"
    elif _is(exc, "openstack.exceptions", ("HttpException",)) and (getattr(exc, "status_code", 0) or 0) >= 500:
        why = f"answered {exc.status_code}"
    else:
        return None
    return (
        f"{what}{where} {why} ({type(exc).__name__}). Fix: check that service (on the devstack lab: "
        "inv devstack.status), then run the task again: it resumes where it stopped"
    )
