"""Read-only checks that make bad input fail before the first write: both clouds authenticate,
the external network, network, subnet and router exist, the image source is there."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from osk8s_tasks.core.engine import Status, Step, StepFailed
from osk8s_tasks.openstack import clouds as cloud
from osk8s_tasks.openstack.images import find_image, open_url


def preflight_steps(s, clouds) -> list[Step]:
    o = s.settings.openstack

    def cloud_ok(name):
        def check():
            conn = clouds.get(name)
            return Status(True, f"authenticated to {conn.config.auth['auth_url']} as {conn.config.auth.get('username')}")

        return check

    def networks():
        net = clouds.main.network
        ext = cloud.by_name(net.networks(name=o.external_network))
        if ext is None or not ext.is_router_external:
            have = [n.name for n in net.networks(is_router_external=True)]
            raise StepFailed(
                f"external network {o.external_network!r} not found (external networks: {', '.join(have) or 'none'}). "
                "Fix: set openstack.external_network"
            )
        missing = [
            f"{k} {v!r}"
            for k, v, f in (
                ("network", o.network, net.networks),
                ("subnet", o.subnet, net.subnets),
                ("router", o.router, net.routers),
            )
            if cloud.by_name(f(name=v)) is None
        ]
        if missing:
            raise StepFailed(f"not found: {', '.join(missing)}. Fix: set openstack.network/subnet/router to existing names")
        return Status(True, f"{o.network}/{o.subnet} behind {o.router}, floating IPs from {o.external_network}")

    def image_source():
        if o.image.file:
            if not Path(o.image.file).is_file():
                raise StepFailed(f"openstack.image.file {o.image.file!r}: no such file. Fix: give the path of the image")
            return Status(True, f"image file {o.image.file} is readable")
        if o.image.url:
            try:
                req = urllib.request.Request(o.image.url, method="HEAD")
                with open_url(req, timeout=15) as r:
                    size = r.headers.get("Content-Length", "?")
            except (OSError, ValueError) as exc:
                raise StepFailed(
                    f"openstack.image.url {o.image.url!r} is unreachable ({exc}). "
                    "Fix: check the URL, or download the image and set openstack.image.file"
                ) from None
            return Status(True, f"image URL answers ({size} bytes)")
        found = find_image(s, clouds)
        if found is None:
            raise StepFailed(
                f"no image {o.image.name!r} in the cloud and no source given. "
                "Fix: set openstack.image.url or openstack.image.file"
            )
        return Status(True, f"image {found.name} exists")

    return [
        Step(f"cloud {o.cloud}", cloud_ok(o.cloud)),
        Step(f"cloud {o.admin_cloud}", cloud_ok(o.admin_cloud)),
        Step("networks", networks),
        Step("image source", image_source),
    ]
