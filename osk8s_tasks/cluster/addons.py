"""The cloud-provider add-ons on the cluster: cloud.conf Secrets (from the application credential
openstack.prepare made), openstack-cloud-controller-manager and cinder-csi-plugin; then waits
until every node has a providerID and the CSI driver is registered on it."""

from __future__ import annotations

import base64
from contextlib import ExitStack, contextmanager

import yaml

from osk8s_tasks.cluster import lint as cloudconf
from osk8s_tasks.cluster import render as cluster_render
from osk8s_tasks.cluster.nodes import connections
from osk8s_tasks.core import kube, lab, log
from osk8s_tasks.core.engine import Status, Step, StepFailed
from osk8s_tasks.core.wait import wait_step
from osk8s_tasks.openstack import clouds as cloud

CSI_DRIVER = "cinder.csi.openstack.org"


def cloud_values(s, clouds) -> dict:
    path = lab.app_credential(s.settings)
    if not path.exists():
        raise StepFailed(f"no application credential ({path}). Fix: inv openstack.prepare")
    cred = yaml.safe_load(path.read_text())
    log.secret(cred["secret"])
    net, o = clouds.main.network, s.settings.openstack
    subnet, ext = cloud.by_name(net.subnets(name=o.subnet)), cloud.by_name(net.networks(name=o.external_network))
    if subnet is None or ext is None:
        raise StepFailed(
            f"subnet {o.subnet!r} or external network {o.external_network!r} not found. Fix: openstack.* settings"
        )
    return {
        "auth_url": cred["auth_url"],
        "app_credential_id": cred["id"],
        "app_credential_secret": cred["secret"],
        "region": cred["region"],
        "subnet_id": subnet.id,
        "floating_network_id": ext.id,
    }


def secret(name: str, lab_name: str, text: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": "kube-system", "labels": {"osk8s.io/lab": lab_name}},
        "data": {"cloud.conf": base64.b64encode(text.encode()).decode()},
    }


def linted(text: str, template: str, component: str) -> str:
    """A rendered cloud.conf, refused when it holds a key its reader ignores or rejects: current
    cloud-provider-openstack skips unknown keys silently (gcfg.FatalOnly), so a 2018 key such as
    use-octavia would change nothing and no later check could name it."""
    bad = [f for f in cloudconf.lint(text, component) if f.kind != "advice"]
    if bad:
        why = [f.fix if f.fix.startswith(f.kind) else f"{f.kind}: {f.fix}" for f in bad]
        what = "; ".join(f"line {f.line} [{f.section}] {f.key or '(section)'}: {w}" for f, w in zip(bad, why, strict=True))
        raise StepFailed(f"{template} renders a cloud.conf {component} does not read as meant: {what}")
    return text


def documents(s, clouds) -> list[dict]:
    values, name = cloud_values(s, clouds), s.settings.lab.name
    occm_conf = linted(cluster_render.cloud_conf(s.settings, values), "manifests/cloud.conf.j2", "occm")
    cinder_conf = linted(cluster_render.cinder_conf(s.settings, values), "manifests/cinder-csi.conf.j2", "cinder-csi")
    docs = [
        secret("occm-cloud-config", name, occm_conf),
        secret("cinder-csi-cloud-config", name, cinder_conf),
    ]
    for text in (cluster_render.occm_manifests(s.settings), cluster_render.cinder_csi_manifests(s.settings)):
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def readiness_steps(s, api) -> list[Step]:
    names = list(lab.node_names(s.settings))
    timeout = s.settings.verify.timeout

    def provider_ids():
        nodes = {n["metadata"]["name"]: n.get("spec", {}).get("providerID", "") for n in api.items("/api/v1/nodes")}
        missing = [n for n in names if not nodes.get(n, "").startswith("openstack://")]
        if missing:
            return Status(False, f"no providerID yet: {', '.join(missing)} (OCCM initialises nodes)", "wait for OCCM")
        return Status(True, f"every node has an OpenStack providerID ({nodes[names[0]]}, ...)")

    def csi_nodes():
        have = {
            c["metadata"]["name"]: [d["name"] for d in (c.get("spec", {}).get("drivers") or [])]
            for c in api.items("/apis/storage.k8s.io/v1/csinodes")
        }
        missing = [n for n in names if CSI_DRIVER not in have.get(n, [])]
        if missing:
            return Status(False, f"{CSI_DRIVER} not registered on: {', '.join(missing)}", "wait for the CSI node plugin")
        return Status(True, f"{CSI_DRIVER} registered on all {len(names)} nodes")

    return [
        wait_step("nodes initialised by OCCM", provider_ids, timeout),
        wait_step("CSI driver registered", csi_nodes, timeout),
    ]


@contextmanager
def api_of(s):
    """The cluster API: as configured (cluster.api_server), else forwarded through the jump host."""
    if s.settings.cluster.api_server:
        with kube.connect(s.settings) as api:
            yield api
        return
    master = lab.control_plane(s.settings)
    with connections(s, only=master) as remotes, kube.connect(s.settings, remotes[master]) as api:
        yield api


def run_addons(s) -> None:
    docs = documents(s, cloud.Clouds(s.settings))
    with ExitStack() as stack:
        try:
            api = stack.enter_context(api_of(s))
        except StepFailed as exc:
            if not s.dry_run:
                raise
            # a dry run before the cluster exists: each object would be applied after the changes above
            s.converge([Step(kube.label(d), _raise(exc)) for d in docs])
            return
        s.converge([kube.apply_step(api, d) for d in docs] + readiness_steps(s, api))


def _raise(exc):
    def check():
        raise exc

    return check


def status_text(s, api) -> str:
    lines = ["NODE                      PROVIDER ID                                         READY"]
    for n in api.items("/api/v1/nodes"):
        ready = next((c["status"] for c in n.get("status", {}).get("conditions", []) if c["type"] == "Ready"), "?")
        lines.append(f"{n['metadata']['name']:<25} {n.get('spec', {}).get('providerID', '-'):<51} {ready}")
    pods = api.items("/api/v1/namespaces/kube-system/pods")
    lines.append("")
    lines.append("ADD-ON PODS (kube-system)")
    for p in pods:
        labels = p["metadata"].get("labels", {})
        if "osk8s.io/lab" in labels or labels.get("k8s-app") in ("kube-dns", "calico-node"):
            lines.append(f"  {p['metadata']['name']:<50} {p.get('status', {}).get('phase', '?')}")
    return "\n".join(lines)
