"""What the verify checks share: assertions recorded as result rows (a failed assertion does not
stop the other checks), waits that end in a reason, the test objects' lifecycle (applied with the
lab label, deleted afterwards unless --keep), HTTP from the devstack VM, and the JUnit / JSON
reports."""

from __future__ import annotations

import json
import re
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

import yaml

from osk8s_tasks.core import kube
from osk8s_tasks.core import log
from osk8s_tasks.core.render import render
from osk8s_tasks.core.engine import Result, Status, StepFailed, _results_lock


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
        r = Result(self.s.task, check, "cluster", "ok" if ok else "failed",
                   time.monotonic() - started if started else 0.0, detail)
        with _results_lock:
            self.s.results.append(r)
        (self.s.log.info if ok else self.s.log.error)("verify.ok" if ok else "verify.failed", check=check, detail=detail)
        return ok

    def skip(self, check: str, reason: str) -> None:
        """A check that cannot be judged here: a skipped row with the reason, never a pass."""
        _row(self, check, "cluster", "skipped", reason)
        self.s.log.warning("verify.skipped", check=check, reason=reason)

    def findings(self, prefix: str, findings) -> bool:
        for f in findings:
            self.record(f"{prefix}: {f.check}", f.ok, f.detail)
        return all(f.ok for f in findings)

    def apply(self, docs: list[dict]) -> None:
        """Converge the test objects (idempotent: an object already as wanted is left alone)."""
        self.s.plan([kube.apply_step(self.api, d) for d in docs])

    def render(self, template: str, **values) -> list[dict]:
        s = self.settings
        text = render(template, lab=s.lab.name, namespace=self.namespace, agnhost=s.versions.agnhost,
                      busybox=s.versions.busybox, **values)
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


def wait(fn, timeout: float, interval: float = 2.0) -> tuple[bool, str]:
    """Poll fn() -> Status until ok or `timeout` seconds; (ok, the last reason). Says every 30 s
    what it is still waiting for (an amphora load balancer takes minutes)."""
    start = time.monotonic()
    said = start
    while True:
        st = fn()
        now = time.monotonic()
        if st.ok or now - start > timeout:
            return st.ok, st.reason if st.ok else f"{st.reason} (after {timeout:.0f} s)"
        if now - said >= 30:
            log.get().info("verify.waiting", reason=st.reason, seconds=round(now - start), timeout=timeout)
            said = now
        time.sleep(interval)


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


def external_ip(api, path: str):
    """A Service's or Ingress's status.loadBalancer.ingress[0].ip, as a check."""
    def check():
        obj = api.request("GET", path) or {}
        ingress = obj.get("status", {}).get("loadBalancer", {}).get("ingress") or []
        ip = ingress[0].get("ip") if ingress else None
        return Status(bool(ip), ip or "no external IP yet")
    return check


def node_addresses(api) -> dict[str, str]:
    """node name -> InternalIP (what the cloud provider makes pool members of)."""
    out = {}
    for n in items(api, "/api/v1/nodes"):
        addrs = {a["type"]: a["address"] for a in n.get("status", {}).get("addresses", [])}
        if "InternalIP" in addrs:
            out[n["metadata"]["name"]] = addrs["InternalIP"]
    return out


def http_from_devstack(s, url: str, timeout: int = 10) -> tuple[int, str]:
    """GET `url` from the devstack VM (it routes to the floating IPs): (HTTP status or 0, body or error)."""
    import shlex

    from osk8s_tasks.devstack.tasks import connected

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


def plan_rows(ctx: Ctx, check: str, docs: list[dict], assertions: list[str], unreachable: str = "") -> None:
    """--dry-run: each object as a step whose check reads the cluster for real (or, when the API
    cannot be reached, a would-change row saying so), then each assertion as a planned row."""
    if unreachable:
        for d in docs:
            _row(ctx, kube.label(d), "local", "would-change", f"apply {kube.label(d)} (once the cluster is reachable)")
    else:
        ctx.s.plan([kube.apply_step(ctx.api, d) for d in docs])
    for a in assertions:
        _row(ctx, f"{check}: {a}", "cluster", "skipped", "would check")


def _row(ctx: Ctx, step: str, node: str, outcome: str, detail: str) -> None:
    with _results_lock:
        ctx.s.results.append(Result(ctx.s.task, step, node, outcome, 0.0, detail))


# --- reports -----------------------------------------------------------------------------------

def report_rows(results: list[Result]) -> list[dict]:
    return [{"task": r.task, "check": r.step, "node": r.node, "outcome": r.outcome, "seconds": round(r.seconds, 3),
             "detail": log.redact(r.detail)} for r in results if r.task.startswith("verify.")]


def write_json(path: str, results: list[Result], lab: str) -> None:
    from osk8s_tasks.core.ssh import write_private

    rows = report_rows(results)
    doc = {"lab": lab, "passed": not any(r["outcome"] == "failed" for r in rows),
           "counts": {o: sum(r["outcome"] == o for r in rows) for o in ("ok", "changed", "failed", "skipped", "would-change")},
           "results": rows}
    write_private(Path(path), json.dumps(doc, indent=2) + "\n")


def write_junit(path: str, results: list[Result], lab: str) -> None:
    """One testsuite per verify task, one testcase per row (steps and assertions)."""
    from osk8s_tasks.core.ssh import write_private

    rows = report_rows(results)
    suites = ET.Element("testsuites", name=f"osk8s verify {lab}")
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        suite = ET.SubElement(suites, "testsuite", name=task, tests=str(len(mine)),
                              failures=str(sum(r["outcome"] == "failed" for r in mine)),
                              skipped=str(sum(r["outcome"] in ("skipped", "would-change") for r in mine)),
                              time=f"{sum(r['seconds'] for r in mine):.3f}")
        for r in mine:
            case = ET.SubElement(suite, "testcase", classname=task, name=r["check"], time=f"{r['seconds']:.3f}")
            if r["outcome"] == "failed":
                ET.SubElement(case, "failure", message=_xml_safe(r["detail"][:200])).text = _xml_safe(r["detail"])
            elif r["outcome"] in ("skipped", "would-change"):
                ET.SubElement(case, "skipped", message=_xml_safe(r["detail"][:200]))
            else:
                ET.SubElement(case, "system-out").text = _xml_safe(f"{r['outcome']}: {r['detail']}")
    ET.indent(suites)
    write_private(Path(path), ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n")


def _xml_safe(text: str) -> str:
    return re.sub(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd]", "?", text)
