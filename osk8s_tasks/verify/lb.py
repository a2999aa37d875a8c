"""verify.lb: traffic from outside the cluster through Octavia: an echo Deployment behind a
Service of type LoadBalancer; the Octavia side checked with openstacksdk (verify.octavia); an
HTTP request to the floating IP from the devstack VM must be answered by one of the echo pods;
when it is not, the OpenStack findings name the cause. Then a second Service shares that load
balancer (the write-up's "can Services share one LB?")."""

from __future__ import annotations

import time

from osk8s_tasks.openstack import clouds as cloud
from osk8s_tasks.openstack.resources import names
from osk8s_tasks.verify import octavia as verify_cloud
from osk8s_tasks.verify.harness import (
    Ctx,
    external_ip,
    http_check,
    lb_gone,
    node_addresses,
    pods_of,
    rollout_ready,
    service_events,
    settled,
    wait,
)

LB_ASSERTIONS = [
    "echo pods ready",
    "external IP",
    "octavia: load balancer, listener, pool members, floating IP, NodePort rule",
    "HTTP from the devstack VM",
    "shared load balancer: second listener",
    "shared load balancer: HTTP",
    "cleanup: load balancer deleted",
]
DATA_PLANE = ["HTTP from the devstack VM", "shared load balancer: HTTP"]  # requests through the floating IP


def lb_docs(ctx: Ctx, shared_lb_id: str = "") -> list[dict]:
    return ctx.render("manifests/verify/lb.yaml.j2", shared_lb_id=shared_lb_id)


def _service(ctx: Ctx, name: str) -> str:
    return f"/api/v1/namespaces/{ctx.namespace}/services/{name}"


def _octavia_findings(ctx: Ctx, service: str, port: int):
    svc = ctx.api.request("GET", _service(ctx, service)) or {}
    node_port = next((p.get("nodePort") for p in svc.get("spec", {}).get("ports", []) if p["port"] == port), None)
    lb = verify_cloud.occm_lb_name(ctx.settings.lab.name, ctx.namespace, "echo")
    return verify_cloud.check_load_balancer(
        ctx.clouds.main, lb, port, node_port or 0, node_addresses(ctx.api), names(ctx.settings)["secgroup"]
    )


def run_lb(ctx: Ctx) -> None:
    timeout, lab = ctx.settings.verify.timeout, ctx.settings.lab.name
    docs = lb_docs(ctx)
    ctx.apply(docs)
    t0 = time.monotonic()
    ctx.record("echo pods ready", *wait(rollout_ready(ctx.api, ctx.namespace, "echo"), timeout), t0)
    t0 = time.monotonic()
    ok, ip = wait(external_ip(ctx.api, _service(ctx, "echo")), timeout)
    lb_name = verify_cloud.occm_lb_name(lab, ctx.namespace, "echo")
    if not ctx.record(
        "external IP", ok, f"Service echo: {ip}" if ok else f"Service echo got no external IP: {ip}. {_why_no_ip(ctx)}", t0
    ):
        ctx.cleanup("lb", docs)
        return
    settled(ctx, lb_name)
    ctx.findings("octavia", _octavia_findings(ctx, "echo", 80))
    http_check(
        ctx, "HTTP from the devstack VM", f"http://{ip}/", pods_of(ctx, "echo"), lambda: _octavia_findings(ctx, "echo", 80)
    )
    lb = cloud.by_name(ctx.clouds.main.load_balancer.load_balancers(name=lb_name))
    if lb is not None:
        docs = lb_docs(ctx, lb.id)
        ctx.apply(docs)
        _shared(ctx, lb, ip)
    ctx.cleanup("lb", docs, gone=lb_gone(ctx, lb_name))


def _why_no_ip(ctx: Ctx) -> str:
    failing = [f.detail for f in _octavia_findings(ctx, "echo", 80) if not f.ok]
    event = service_events(ctx.api, ctx.namespace, "echo")
    if failing:
        return "Octavia: " + "; ".join(failing) + (f"; the Service's {event}" if event else "")
    return "Octavia has an ACTIVE load balancer with a floating IP, but the cloud controller did not report it" + (
        f": the Service's {event}" if event else " (openstack-cloud-controller-manager logs)"
    )


def _shared(ctx: Ctx, lb, ip: str) -> None:
    t0 = time.monotonic()
    ok, ip2 = wait(external_ip(ctx.api, _service(ctx, "echo-shared")), ctx.settings.verify.timeout)
    if not ok:
        ctx.record("shared load balancer: second listener", False, f"Service echo-shared: {ip2}", t0)
        return
    settled(ctx, lb.name)
    lb = ctx.clouds.main.load_balancer.get_load_balancer(lb.id)
    services = [t for t in (lb.tags or []) if t.startswith("kube_service_")]
    findings = _octavia_findings(ctx, "echo-shared", 8080)
    problems = [f"{f.aspect}: {f.detail}" for f in findings if not f.ok and f.aspect in ("listener", "pool members")]
    if ip2 != ip:
        problems.append(f"echo-shared got {ip2}, not the shared address {ip}")
    if len(services) < 2:
        problems.append(f"the load balancer's tags name {len(services)} Service(s), not 2 (the shared-LB bookkeeping)")
    ctx.record(
        "shared load balancer: second listener",
        not problems,
        "; ".join(problems)
        or f"echo and echo-shared share {lb.name} ({ip}): listeners on 80 and 8080, each on its own NodePort",
        t0,
    )
    http_check(
        ctx,
        "shared load balancer: HTTP",
        f"http://{ip}:8080/",
        pods_of(ctx, "echo"),
        lambda: _octavia_findings(ctx, "echo-shared", 8080),
    )
