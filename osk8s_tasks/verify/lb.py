"""verify.lb and verify.ingress: traffic from outside the cluster through Octavia.

lb: an echo Deployment behind a Service of type LoadBalancer; the Octavia side checked with
openstacksdk (verify_cloud); an HTTP request to the floating IP from the devstack VM must be
answered by one of the echo pods; when it is not, the OpenStack findings name the cause. Then a
second Service shares that load balancer (the write-up's "can Services share one LB?").

ingress: octavia-ingress-controller and an Ingress routing /a and /b to two Services."""

from __future__ import annotations

import base64
import time

from osk8s_tasks.openstack import clouds as cloud
from osk8s_tasks.cluster import addons as cluster_addons
from osk8s_tasks.verify import octavia as verify_cloud
from osk8s_tasks.openstack.tasks import names
from osk8s_tasks.core.render import render
from osk8s_tasks.core.engine import Status
from osk8s_tasks.verify.harness import Ctx, external_ip, http_from_devstack, items, node_addresses, rollout_ready, wait

LB_ASSERTIONS = ["echo pods ready", "external IP", "octavia: load balancer, listener, pool members, floating IP, "
                 "NodePort rule", "HTTP from the devstack VM", "shared load balancer: second listener",
                 "cleanup: load balancer deleted"]
INGRESS_ASSERTIONS = ["controller ready", "ingress address", "octavia: L7 policies for /a and /b",
                      "HTTP /a and /b", "cleanup: load balancer deleted"]


def lb_docs(ctx: Ctx, shared_lb_id: str = "") -> list[dict]:
    return ctx.render("manifests/verify/lb.yaml.j2", shared_lb_id=shared_lb_id)


def _service(ctx: Ctx, name: str) -> str:
    return f"/api/v1/namespaces/{ctx.namespace}/services/{name}"


def _pods(ctx: Ctx, app: str) -> set[str]:
    return {p["metadata"]["name"] for p in items(ctx.api, f"/api/v1/namespaces/{ctx.namespace}/pods", f"app={app}")}


def _http_check(ctx: Ctx, name: str, url: str, apps: set[str], diagnose) -> bool:
    """The reply must be one of `apps`' pod names (agnhost serve-hostname answers with its own)."""
    t0 = time.monotonic()
    code, body = http_from_devstack(ctx.s, url)
    if code == 200 and body in apps:
        return ctx.record(name, True, f"GET {url} -> 200 from pod {body}", t0)
    failing = [f"{f.check}: {f.detail}" for f in diagnose() if not f.ok]
    cause = "; ".join(failing) if failing else ("Octavia looks right: check the echo pods, their endpoints and the "
                                                "nodes' kube-proxy (kubectl -n %s get endpointslices)" % ctx.namespace)
    got = f"HTTP {code}: {body[:80]!r}" if code else f"no answer ({body})"
    return ctx.record(name, False, f"GET {url}: {got}, not an echo pod. Diagnosis: {cause}", t0)


def _octavia_findings(ctx: Ctx, service: str, port: int):
    svc = ctx.api.request("GET", _service(ctx, service)) or {}
    node_port = next((p.get("nodePort") for p in svc.get("spec", {}).get("ports", []) if p["port"] == port), None)
    lb = verify_cloud.occm_lb_name(ctx.settings.lab.name, ctx.namespace, "echo")
    return verify_cloud.check_load_balancer(ctx.clouds.main, lb, port, node_port or 0, node_addresses(ctx.api),
                                            names(ctx.settings)["secgroup"])


def run_lb(ctx: Ctx) -> None:
    timeout, lab = ctx.settings.verify.timeout, ctx.settings.lab.name
    docs = lb_docs(ctx)
    ctx.apply(docs)
    t0 = time.monotonic()
    ctx.record("echo pods ready", *wait(rollout_ready(ctx.api, ctx.namespace, "echo"), timeout), t0)
    t0 = time.monotonic()
    ok, ip = wait(external_ip(ctx.api, _service(ctx, "echo")), timeout)
    lb_name = verify_cloud.occm_lb_name(lab, ctx.namespace, "echo")
    if not ctx.record("external IP", ok, f"Service echo: {ip}" if ok else
                      f"Service echo got no external IP: {ip}. {_why_no_ip(ctx)}", t0):
        ctx.cleanup("lb", docs)
        return
    ctx.findings("octavia", _octavia_findings(ctx, "echo", 80))
    _http_check(ctx, "HTTP from the devstack VM", f"http://{ip}/", _pods(ctx, "echo"),
                lambda: _octavia_findings(ctx, "echo", 80))
    lb = cloud.by_name(ctx.clouds.main.load_balancer.load_balancers(name=lb_name))
    if lb is not None:
        docs = lb_docs(ctx, lb.id)
        ctx.apply(docs)
        _shared(ctx, lb, ip)
    ctx.cleanup("lb", docs, gone=_lb_gone(ctx, lb_name))


def _why_no_ip(ctx: Ctx) -> str:
    failing = [f.detail for f in _octavia_findings(ctx, "echo", 80) if not f.ok]
    if failing:
        return "Octavia: " + "; ".join(failing)
    return ("Octavia has an ACTIVE load balancer with a floating IP, but the cloud controller did not report it "
            "(openstack-cloud-controller-manager logs)")


def _shared(ctx: Ctx, lb, ip: str) -> None:
    t0 = time.monotonic()
    ok, ip2 = wait(external_ip(ctx.api, _service(ctx, "echo-shared")), ctx.settings.verify.timeout)
    if not ok:
        ctx.record("shared load balancer: second listener", False, f"Service echo-shared: {ip2}", t0)
        return
    lb = ctx.clouds.main.load_balancer.get_load_balancer(lb.id)
    services = [t for t in (lb.tags or []) if t.startswith("kube_service_")]
    findings = _octavia_findings(ctx, "echo-shared", 8080)
    problems = [f"{f.check}: {f.detail}" for f in findings if not f.ok and f.check in ("listener", "pool members")]
    if ip2 != ip:
        problems.append(f"echo-shared got {ip2}, not the shared address {ip}")
    if len(services) < 2:
        problems.append(f"the load balancer's tags name {len(services)} Service(s), not 2 (the shared-LB bookkeeping)")
    ctx.record("shared load balancer: second listener", not problems, "; ".join(problems) or
               f"echo and echo-shared share {lb.name} ({ip}): listeners on 80 and 8080, each on its own NodePort", t0)
    _http_check(ctx, "shared load balancer: HTTP", f"http://{ip}:8080/", _pods(ctx, "echo"),
                lambda: _octavia_findings(ctx, "echo-shared", 8080))


def _lb_gone(ctx: Ctx, name: str):
    def check():
        lb = cloud.by_name(ctx.clouds.main.load_balancer.load_balancers(name=name))
        return Status(lb is None, f"load balancer {name} deleted by the cloud provider" if lb is None
                      else f"load balancer {name} still exists ({lb.provisioning_status})")
    return check


# --- ingress -----------------------------------------------------------------------------------

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
    return None, ("skipped: octavia-ingress-controller needs HTTP listeners, which the OVN provider does not "
                  f"support, and this cloud offers no amphora provider (providers: {', '.join(sorted(offered)) or 'none'})")


def controller_docs(ctx: Ctx, content: bool = True, provider: str | None = None) -> list[dict]:
    """octavia-ingress-controller with its config Secret (the lab's application credential)."""
    import yaml

    s = ctx.settings
    config = ""
    if content:
        values = cluster_addons.cloud_values(ctx.s, ctx.clouds)
        config = render("manifests/octavia-ingress-config.yaml.j2", lab=s.lab.name,
                        lb_provider=provider or s.cluster.lb_provider,
                        manage_security_groups=s.cluster.manage_security_groups, **values)
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": "octavia-ingress-controller-config", "namespace": "kube-system",
                           "labels": {"osk8s.io/lab": s.lab.name}},
              "data": {"config": base64.b64encode(config.encode()).decode()}}
    text = render("manifests/octavia-ingress.yaml.j2", lab=s.lab.name, cpo=s.versions.cloud_provider_openstack)
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
    ctx.record("controller ready", *wait(rollout_ready(ctx.api, "kube-system", "octavia-ingress-controller", "statefulsets"), timeout), t0)
    docs = ingress_docs(ctx)
    ctx.apply(docs)
    name = f"kube_ingress_{ctx.settings.lab.name}_{ctx.namespace}_echo"
    t0 = time.monotonic()
    ok, ip = wait(external_ip(ctx.api, f"/apis/networking.k8s.io/v1/namespaces/{ctx.namespace}/ingresses/echo"), timeout)
    if not ctx.record("ingress address", ok, f"Ingress echo: {ip}" if ok else f"Ingress echo: {ip} "
                      "(octavia-ingress-controller logs: kubectl -n kube-system logs octavia-ingress-controller-0)", t0):
        ctx.cleanup("ingress", docs)
        return
    ctx.findings("octavia", verify_cloud.check_ingress_lb(ctx.clouds.main, name, {f"/{a[-1]}" for a in APPS}))
    for app in APPS:
        _http_check(ctx, f"HTTP /{app[-1]}", f"http://{ip}/{app[-1]}", _pods(ctx, app),
                    lambda: verify_cloud.check_ingress_lb(ctx.clouds.main, name, {f"/{a[-1]}" for a in APPS}))
    ctx.cleanup("ingress", docs, gone=_lb_gone(ctx, name))
