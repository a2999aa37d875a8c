"""What the verify checks share: assertions recorded as result rows (a failed assertion does not
stop the other checks), waits that end in a reason, the test objects' lifecycle (applied with the
lab label, deleted afterwards unless --keep), HTTP from the devstack VM, and which checks a lab
without a data plane skips (data_plane_skip)."""

from __future__ import annotations

import secrets
import shlex
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import yaml

from osk8s_tasks.core import kube
from osk8s_tasks.core.engine import Result, Status, StepFailed
from osk8s_tasks.core.render import render
from osk8s_tasks.core.wait import until
from osk8s_tasks.devstack.steps import connected
from osk8s_tasks.openstack import clouds as cloud


@dataclass
class Ctx:
    """One verify run: the session, the cluster API, the clouds, and the objects to clean up."""

    s: object
    api: object
    clouds: object
    keep: bool
    nonce: str = field(default_factory=lambda: f"osk8s-{secrets.token_hex(4)}")

    @property
    def settings(self):
        return self.s.settings

    @property
    def namespace(self) -> str:
        return self.settings.verify.namespace

    def record(self, check: str, ok: bool, detail: str, started: float | None = None) -> bool:
        """One assertion of the current verify task: a row in the summary and the reports."""
        r = Result(
            self.s.task, check, "cluster", "ok" if ok else "failed", time.monotonic() - started if started else 0.0, detail
        )
        self.s.record(r)
        (self.s.log.info if ok else self.s.log.error)("verify.ok" if ok else "verify.failed", check=check, detail=detail)
        return ok

    def skip(self, check: str, reason: str) -> None:
        """A check that cannot be judged here: a skipped row with the reason, never a pass."""
        add_row(self, check, "cluster", "skipped", reason)
        self.s.log.warning("verify.skipped", check=check, reason=reason)

    def skip_data_plane(self, check: str) -> bool:
        """True, with `check` recorded as skipped, when this lab has no data plane to judge it on
        (data_plane_skip): the caller then does not attempt it."""
        reason = data_plane_skip(self.settings)
        if reason:
            self.skip(check, reason)
        return reason is not None

    def findings(self, prefix: str, findings) -> bool:
        for f in findings:
            self.record(f"{prefix}: {f.aspect}", f.ok, f.detail)
        return all(f.ok for f in findings)

    def apply(self, docs: list[dict]) -> None:
        """Converge the test objects (idempotent: an object already as wanted is left alone)."""
        self.s.converge([kube.apply_step(self.api, d) for d in docs])

    def render(self, template: str, **values) -> list[dict]:
        s = self.settings
        text = render(
            template,
            lab=s.lab.name,
            namespace=self.namespace,
            agnhost=s.versions.agnhost,
            busybox=s.versions.busybox,
            **values,
        )
        return [d for d in yaml.safe_load_all(text) if d]

    def cleanup(self, check: str, docs: list[dict], gone=None) -> None:
        """Delete the check's objects (not the namespace), newest first; then wait for `gone`
        (what the cloud provider removes in OpenStack) unless --keep."""
        if self.keep:
            self.record(f"{check}: cleanup", True, "kept (--keep): inv verify.destroy removes them")
            return
        t0 = time.monotonic()
        for d in reversed(docs):
            if d["kind"] != "Namespace":
                self.api.delete(d)
        if gone is not None:
            ok, detail = wait(gone, self.settings.verify.timeout)
            self.record(f"{check}: cleanup", ok, detail, t0)


NO_DATA_PLANE = "embedded lab has no data plane"


def data_plane_skip(settings) -> str | None:
    """Why a check that needs the data plane cannot be judged in this lab, or None when it can. An
    embedded lab (lab.kind) runs the real OpenStack and Kubernetes control planes and nothing that
    carries traffic or holds data: a floating IP answers no request, a volume keeps no bytes, a pod
    mounts nothing. Its rows that need those are skipped with this reason, never attempted (no curl,
    no wait) and never passed; what the control planes did (Octavia's objects, the volume attached,
    the Kubernetes objects, Keystone) is still judged."""
    return NO_DATA_PLANE if settings.lab.kind == "embedded" else None


def wait(check, timeout: float, interval: float = 2.0) -> tuple[bool, str]:
    """core.wait.until, its progress lines named verify.waiting (an amphora load balancer takes minutes)."""
    return until(check, timeout, interval, what="verify")


def items(api, path: str, selector: str = "") -> list[dict]:
    query = [("labelSelector", selector)] if selector else []
    return (api.request("GET", path, query=query) or {}).get("items", [])


def rollout_ready(api, ns: str, name: str, plural: str = "deployments"):
    """A Deployment's available (or a StatefulSet's ready) replicas reached spec.replicas, as a check."""
    field = "availableReplicas" if plural == "deployments" else "readyReplicas"

    def check():
        d = api.request("GET", f"/apis/apps/v1/namespaces/{ns}/{plural}/{name}") or {}
        want, have = d.get("spec", {}).get("replicas", 1), d.get("status", {}).get(field, 0)
        return Status(have >= want, f"{plural[:-1]} {name}: {have}/{want} {field[:-8]}")

    return check


ERROR_WORDS = ("forbidden", "error", "failed", "cannot", "unauthorized")


def error_lines(log: str, lines: int = 2) -> list[str]:
    """The last `lines` lines of a container log that report an error (klog E-lines, forbidden...)."""
    hits = [ln.strip() for ln in log.splitlines() if ln.startswith("E") or any(w in ln.lower() for w in ERROR_WORDS)]
    return [h[:400] for h in hits[-lines:]]


def pod_errors(api, ns: str, selector: str) -> str:
    """What the pods of `selector` last logged as errors: the cause a rollout that never becomes
    ready leaves (e.g. `configmaps is forbidden ... at the cluster scope`)."""
    out = []
    for pod in items(api, f"/api/v1/namespaces/{ns}/pods", selector):
        name = pod["metadata"]["name"]
        try:
            log = api.call("GET", f"/api/v1/namespaces/{ns}/pods/{name}/log", query=[("tailLines", "50")])
        except StepFailed as exc:
            out.append(f"pod {name}: its log could not be read ({exc})")
            continue
        status, body = log
        found = error_lines(body.decode(errors="replace") if status == 200 and body else "")
        if found:
            out.append(f"pod {name} logged: " + " | ".join(found))
    return "; ".join(out)


def service_events(api, ns: str, name: str) -> str:
    """The newest warning event of a Service (the cloud controller's SyncLoadBalancerFailed names its error)."""
    query = [("fieldSelector", f"involvedObject.kind=Service,involvedObject.name={name},type=Warning")]
    events = (api.request("GET", f"/api/v1/namespaces/{ns}/events", query=query) or {}).get("items", [])
    if not events:
        return ""
    last = max(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return f"event {last.get('reason')}: {last.get('message', '')[:500]}"


def external_ip(api, path: str):
    """A Service's or Ingress's status.loadBalancer.ingress[0].ip, as a check."""

    def check():
        obj = api.request("GET", path) or {}
        ingress = obj.get("status", {}).get("loadBalancer", {}).get("ingress") or []
        ip = ingress[0].get("ip") if ingress else None
        return Status(bool(ip), ip or "no external IP yet")

    return check


EXCLUDE_FROM_LB = "node.kubernetes.io/exclude-from-external-load-balancers"


def node_addresses(api) -> dict[str, str]:
    """node name -> InternalIP of the nodes the cloud provider makes pool members of: not those labelled
    node.kubernetes.io/exclude-from-external-load-balancers, which kubeadm puts on the control plane
    (k8s.io/cloud-provider controllers/service/controller.go nodeIncludedPredicate; kubeadm
    cmd/kubeadm/app/phases/markcontrolplane)."""
    out = {}
    for n in items(api, "/api/v1/nodes"):
        if EXCLUDE_FROM_LB in (n["metadata"].get("labels") or {}):
            continue
        addrs = {a["type"]: a["address"] for a in n.get("status", {}).get("addresses", [])}
        if "InternalIP" in addrs:
            out[n["metadata"]["name"]] = addrs["InternalIP"]
    return out


def http_from_devstack(s, url: str, timeout: int = 10) -> tuple[int, str]:
    """GET `url` from the devstack VM (it routes to the floating IPs): (HTTP status or 0, body or error)."""
    with connected(s) as r:
        res = r.run(f"curl -sS -m {timeout} -w '\\n%{{http_code}}' {shlex.quote(url)}", warn=True)
    if res.exited:
        return 0, (res.stderr or res.stdout).strip()[-200:]
    body, _, code = res.stdout.rpartition("\n")
    return int(code or 0), body.strip()


@contextmanager
def not_failing(ctx: Ctx, check: str):
    """A StepFailed inside a check becomes a failed row of that check; the other checks still run."""
    try:
        yield
    except StepFailed as exc:
        ctx.record(check, False, str(exc))


def plan_rows(ctx: Ctx, check: str, docs: list[dict], assertions: list[str], unreachable: str = "", data_plane=()) -> None:
    """--dry-run: each object as a step whose check reads the cluster for real (or, when the API
    cannot be reached, a would-change row saying so), then each assertion as a planned row; those
    in `data_plane` say they would be skipped where the lab has none (data_plane_skip)."""
    if unreachable:
        for d in docs:
            add_row(ctx, kube.label(d), "local", "would-change", f"apply {kube.label(d)} (once the cluster is reachable)")
    else:
        ctx.s.converge([kube.apply_step(ctx.api, d) for d in docs])
    no_data = data_plane_skip(ctx.settings)
    for a in assertions:
        planned = f"would skip: {no_data}" if no_data and a in data_plane else "would check"
        add_row(ctx, f"{check}: {a}", "cluster", "skipped", planned)


def add_row(ctx: Ctx, step: str, node: str, outcome: str, detail: str) -> None:
    """A row that is not an assertion's result: skipped, or planned in a dry run."""
    ctx.s.record(Result(ctx.s.task, step, node, outcome, 0.0, detail))


def pods_of(ctx: Ctx, app: str) -> set[str]:
    return {p["metadata"]["name"] for p in items(ctx.api, f"/api/v1/namespaces/{ctx.namespace}/pods", f"app={app}")}


HTTP_SETTLE = 20  # seconds a new load balancer's floating IP may take to carry traffic (flows, ARP, haproxy)


def http_check(ctx: Ctx, name: str, url: str, apps: set[str], diagnose) -> bool:
    """The reply must be one of `apps`' pod names (agnhost serve-hostname answers with its own). No
    answer at all while Octavia looks right is asked again for up to HTTP_SETTLE seconds: a floating IP
    just bound to an ACTIVE load balancer does not carry traffic in the same instant on a real cloud.
    A lab without a data plane records the row as skipped and sends nothing (False: not a pass)."""
    if ctx.skip_data_plane(name):
        return False
    t0 = time.monotonic()
    while True:
        code, body = http_from_devstack(ctx.s, url)
        if code == 200 and body in apps:
            return ctx.record(name, True, f"GET {url} -> 200 from pod {body}", t0)
        failing = [f"{f.aspect}: {f.detail}" for f in diagnose() if not f.ok]
        if code or failing or time.monotonic() - t0 > HTTP_SETTLE:
            break
        time.sleep(2)
    cause = (
        "; ".join(failing)
        if failing
        else (
            "Octavia looks right: check the echo pods, their endpoints and the "
            "nodes' kube-proxy (kubectl -n %s get endpointslices)" % ctx.namespace
        )
    )
    got = f"HTTP {code}: {body[:80]!r}" if code else f"no answer ({body})"
    return ctx.record(name, False, f"GET {url}: {got}, not an echo pod. Diagnosis: {cause}", t0)


def settled(ctx: Ctx, name: str) -> None:
    """Wait while Octavia is still changing the load balancer (PENDING_*): the controllers report an
    address before their last update is done (octavia-ingress-controller rewrites the description after
    setting the Ingress status: pkg/ingress/controller/controller.go ensureIngress), and a check made
    then would blame a state that is about to pass."""

    def check():
        lb = cloud.by_name(ctx.clouds.main.load_balancer.load_balancers(name=name))
        state = lb.provisioning_status if lb is not None else "absent"
        return Status(not state.startswith("PENDING_"), f"load balancer {name} is {state}")

    wait(check, ctx.settings.verify.timeout, 1.0)


def lb_gone(ctx: Ctx, name: str):
    def check():
        lb = cloud.by_name(ctx.clouds.main.load_balancer.load_balancers(name=name))
        return Status(
            lb is None,
            f"load balancer {name} deleted by the cloud provider"
            if lb is None
            else f"load balancer {name} still exists ({lb.provisioning_status})",
        )

    return check
