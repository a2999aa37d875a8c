"""verify.ingress: octavia-ingress-controller and an Ingress routing /a and /b to two Services through
one Octavia load balancer, checked in Octavia and over HTTP from the devstack VM."""

from __future__ import annotations

import base64
import time

import yaml

from osk8s_tasks.cluster import addons as cluster_addons
from osk8s_tasks.core.imageref import component_image
from osk8s_tasks.core.render import render
from osk8s_tasks.verify import octavia as verify_cloud
from osk8s_tasks.verify.harness import Ctx, external_ip, http_check, lb_gone, pods_of, rollout_ready, settled, wait

ASSERTIONS = [
    "controller ready",
    "ingress address",
    "octavia: L7 policies for /a and /b",
    "HTTP /a and /b",
    "cleanup: load balancer deleted",
]
DATA_PLANE = ["HTTP /a and /b"]  # requests through the floating IP

APPS = ("echo-a", "echo-b")


def ingress_provider(wanted: str, offered: set[str]) -> tuple[str | None, str]:
    """(the Octavia provider octavia-ingress-controller should ask for, why). It builds HTTP
    listeners and L7 policies; the OVN provider supports only TCP, UDP and SCTP listeners
    (ovn-octavia-provider: ovn_octavia_provider/driver.py, _check_for_supported_protocols), so
    with `ovn` the ingress uses the cloud's amphora provider, or is skipped where there is none."""
    if wanted != "ovn":
        return wanted, f"provider {wanted}"
    if "amphora" in offered:
        return "amphora", "ovn has no HTTP listeners: the Ingress uses the amphora provider"
    return None, (
        "skipped: octavia-ingress-controller needs HTTP listeners, which the OVN provider does not "
        f"support, and this cloud offers no amphora provider (providers: {', '.join(sorted(offered)) or 'none'})"
    )


def controller_docs(ctx: Ctx, content: bool = True, provider: str | None = None) -> list[dict]:
    """octavia-ingress-controller with its config Secret (the lab's application credential)."""
    s = ctx.settings
    config = ""
    if content:
        values = cluster_addons.cloud_values(ctx.s, ctx.clouds)
        config = render(
            "manifests/octavia-ingress-config.yaml.j2",
            lab=s.lab.name,
            lb_provider=provider or s.cluster.lb_provider,
            manage_security_groups=s.cluster.manage_security_groups,
            **values,
        )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": "octavia-ingress-controller-config",
            "namespace": "kube-system",
            "labels": {"osk8s.io/lab": s.lab.name},
        },
        "data": {"config": base64.b64encode(config.encode()).decode()},
    }
    image, pull_policy = component_image(s, "octavia_ingress")
    text = render("manifests/octavia-ingress.yaml.j2", lab=s.lab.name, image=image, pull_policy=pull_policy)
    return [secret] + [d for d in yaml.safe_load_all(text) if d]


def ingress_docs(ctx: Ctx) -> list[dict]:
    return ctx.render("manifests/verify/ingress.yaml.j2", apps=list(APPS))


def run_ingress(ctx: Ctx) -> None:
    timeout = ctx.settings.verify.timeout
    offered = {p.name for p in ctx.clouds.main.load_balancer.providers()}
    provider, why = ingress_provider(ctx.settings.cluster.lb_provider, offered)
    if provider is None:
        ctx.skip("octavia provider", why)
        return
    if provider != ctx.settings.cluster.lb_provider:
        ctx.record("octavia provider", True, why)
    ctx.apply(controller_docs(ctx, provider=provider))
    t0 = time.monotonic()
    ctx.record(
        "controller ready",
        *wait(rollout_ready(ctx.api, "kube-system", "octavia-ingress-controller", "statefulsets"), timeout),
        t0,
    )
    docs = ingress_docs(ctx)
    ctx.apply(docs)
    name = f"kube_ingress_{ctx.settings.lab.name}_{ctx.namespace}_echo"
    t0 = time.monotonic()
    ok, ip = wait(external_ip(ctx.api, f"/apis/networking.k8s.io/v1/namespaces/{ctx.namespace}/ingresses/echo"), timeout)
    if not ctx.record(
        "ingress address",
        ok,
        f"Ingress echo: {ip}"
        if ok
        else f"Ingress echo: {ip} "
        "(octavia-ingress-controller logs: kubectl -n kube-system logs octavia-ingress-controller-0)",
        t0,
    ):
        ctx.cleanup("ingress", docs)
        return
    settled(ctx, name)
    ctx.findings("octavia", verify_cloud.check_ingress_lb(ctx.clouds.main, name, {f"/{a[-1]}" for a in APPS}))
    for app in APPS:
        http_check(
            ctx,
            f"HTTP /{app[-1]}",
            f"http://{ip}/{app[-1]}",
            pods_of(ctx, app),
            lambda: verify_cloud.check_ingress_lb(ctx.clouds.main, name, {f"/{a[-1]}" for a in APPS}),
        )
    ctx.cleanup("ingress", docs, gone=lb_gone(ctx, name))
