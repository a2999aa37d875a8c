"""lab.status: one read-only row per part of the lab, each read the way its own namespace's status
reads it; a part that cannot be reached says why instead of stopping the table."""

from __future__ import annotations

from osk8s_tasks.cluster.addons import api_of
from osk8s_tasks.core.engine import StepFailed
from osk8s_tasks.devstack.stack import stack_state
from osk8s_tasks.devstack.steps import connected
from osk8s_tasks.embedded.steps import up_steps
from osk8s_tasks.host.vagrant import Lab
from osk8s_tasks.openstack import clouds as cloud
from osk8s_tasks.openstack.teardown import inventory
from osk8s_tasks.verify.leftovers import cloud_objects, objects
from osk8s_tasks.verify.run import cluster_access


def _host(s) -> str:
    if s.settings.devstack.ssh_target:
        return f"not managed here: devstack.ssh_target {s.settings.devstack.ssh_target}"
    f = Lab(s.settings).facts()
    if f is None:
        return "no VM (inv host.up)"
    return f"{f.name}: {f.state}, {f.memory_mib} MiB, {f.vcpus} vCPU"


def _embedded(s) -> str:
    """embedded.up's checks, read-only: the programs, the loopback OpenStack, the simulated nodes."""
    return "; ".join(f"{st.reason}" if st.ok else f"NOT READY: {st.reason}" for st in (x.check() for x in up_steps(s)))


def _devstack(s) -> str:
    with connected(s) as r:
        st = stack_state(s, r)
    return {
        "completed": f"stack.sh completed in {st.seconds} s",
        "running": f"stack.sh running, phase {st.phase!r}",
        "failed": f"stack.sh FAILED in phase {st.phase!r} (exit {st.rc})",
        "never": "not stacked",
    }[st.state]


def _openstack(s) -> str:
    inv = inventory(s, cloud.Clouds(s.settings))
    counts = [f"{len(v)} {k}" for k, v in inv.items() if v]
    return f"{sum(len(v) for v in inv.values())} objects of the lab" + (f": {', '.join(counts)}" if counts else "")


def _cluster(s) -> str:
    with api_of(s) as api:
        nodes = api.items("/api/v1/nodes")
    ready = [
        n
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
    ]
    with_id = [n for n in nodes if n.get("spec", {}).get("providerID", "").startswith("openstack:///")]
    return f"{len(nodes)} nodes, {len(ready)} Ready, {len(with_id)} with an OpenStack providerID"


def _verify(s) -> str:
    with cluster_access(s, False) as (api, _):
        left = objects(s, api) + cloud_objects(s, cloud.Clouds(s.settings))
    return f"{len(left)} test objects left" + (" (inv verify.destroy)" if left else "")


PARTS = (("host", _host), ("devstack", _devstack), ("openstack", _openstack), ("cluster", _cluster), ("verify", _verify))
EMBEDDED_PARTS = (("embedded", _embedded), *PARTS[2:])


def rows(s) -> list[tuple[str, str]]:
    out = []
    for name, read in EMBEDDED_PARTS if s.settings.lab.kind == "embedded" else PARTS:
        try:
            out.append((name, read(s)))
        except StepFailed as exc:
            out.append((name, f"unreachable: {exc}"))
    return out


def table(rows_: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows_)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows_)
