"""verify in a lab without a data plane (lab.kind embedded): the rows that need one (HTTP through a
floating IP, a pod's mount, the data on a volume) are skipped with the one reason and never
attempted; everything the control planes did is still judged; a full lab runs as before. The checks
run whole against the cluster and the cloud as data (Cluster below, test_verify_diagnosis.Cloud)
and the one function that sends HTTP from the devstack VM replaced by a recorder."""

import copy
from types import SimpleNamespace as NS

import pytest
import yaml

from osk8s_tasks.cluster.addons import CSI_DRIVER
from osk8s_tasks.core import config, kube
from osk8s_tasks.core.engine import Session
from osk8s_tasks.verify import harness, run
from osk8s_tasks.verify import ingress as verify_ingress
from osk8s_tasks.verify import lb as verify_lb
from osk8s_tasks.verify import pv as verify_pv
from osk8s_tasks.verify.octavia import occm_lb_name
from tests.unit import test_verify_diagnosis as diagnosis
from tests.unit.test_verify_diagnosis import EGRESS, NODES, VIP, rule

REASON = "embedded lab has no data plane"
NS_ = "osk8s-verify"  # verify.namespace's default
LB_IP, INGRESS_IP, VOLUME, NONCE = "172.24.4.20", "172.24.4.21", "pvc-0a1b", "osk8s-n0nce"
NODE_PORTS = {80: 31320, 8080: 31321}
WORKER = next(iter(NODES))


def pod(name: str, labels: dict, phase: str = "Running") -> dict:
    meta = {"name": name, "namespace": NS_, "labels": labels}
    return {"kind": "Pod", "metadata": meta, "spec": {"nodeName": WORKER}, "status": {"phase": phase}}


class Cluster:
    """The Kubernetes API as verify uses it (core.kube.Api's methods), as data. What is applied comes up
    as its controllers would make it: a Deployment or StatefulSet ready with its pods, a LoadBalancer
    Service with NodePorts and LB_IP, the Ingress with INGRESS_IP, the PVC bound to VOLUME, the writer
    running and the reader done on WORKER (the writer's first `unscheduled` looks without a node yet).
    Deletes are immediate; pods' logs print NONCE; `calls` keeps every request."""

    LISTS = ("nodes", "pods", "storageclasses")

    def __init__(self, unscheduled: int = 0):
        self.calls, self.objects, self.unscheduled = [], {}, unscheduled
        for i, (name, address) in enumerate(NODES.items()):
            self.objects[f"/api/v1/nodes/{name}"] = {
                "metadata": {"name": name},
                "spec": {"providerID": f"openstack:///srv-{i + 1}"},
                "status": {"addresses": [{"type": "InternalIP", "address": address}]},
            }
        self.objects["/apis/storage.k8s.io/v1/storageclasses/csi-cinder-sc-delete"] = {
            "metadata": {"name": "csi-cinder-sc-delete", "annotations": {verify_pv.DEFAULT: "true"}},
            "provisioner": CSI_DRIVER,
        }

    def request(self, method, path, body=None, content_type=None, query=None):
        self.calls.append((method, path))
        if path.rsplit("/", 1)[-1] not in self.LISTS:
            obj = copy.deepcopy(self.objects.get(path))
            if obj and path.endswith("/pods/writer") and self.unscheduled:
                self.unscheduled -= 1
                del obj["spec"]["nodeName"]
            return obj
        selector = dict(q[1].split("=") for q in query or [] if q[0] == "labelSelector")
        found = [
            o
            for p, o in self.objects.items()
            if p.rsplit("/", 1)[0] == path and selector.items() <= o["metadata"].get("labels", {}).items()
        ]
        return {"items": copy.deepcopy(found)}

    def call(self, method, path, body=None, content_type=None, query=None):
        self.calls.append((method, path))
        there = path.endswith("/log") and path[: -len("/log")] in self.objects
        return (200, NONCE.encode()) if there else (404, b"")

    def get(self, obj):  # the apply's own reads: as stored
        self.calls.append(("GET", kube.path_of(obj)))
        return copy.deepcopy(self.objects.get(kube.path_of(obj)))

    def apply_dry_run(self, obj):
        return 200, self.get(obj)  # as wanted once applied

    def apply(self, obj):
        self.calls.append(("PATCH", kube.path_of(obj)))
        obj, kind = copy.deepcopy(obj), obj["kind"]
        if kind in ("Deployment", "StatefulSet"):
            replicas = obj["spec"].get("replicas", 1)
            obj["status"] = {"availableReplicas": replicas, "readyReplicas": replicas}
            labels = obj["spec"]["template"]["metadata"]["labels"]
            for name in (f"{obj['metadata']['name']}-{i}" for i in range(replicas)):
                self.objects[f"/api/v1/namespaces/{NS_}/pods/{name}"] = pod(name, labels)
        elif kind == "Service" and obj["spec"].get("type") == "LoadBalancer":
            for port in obj["spec"]["ports"]:
                port["nodePort"] = NODE_PORTS[port["port"]]
            obj["status"] = {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}
        elif kind == "Ingress":
            obj["status"] = {"loadBalancer": {"ingress": [{"ip": INGRESS_IP}]}}
        elif kind == "PersistentVolumeClaim":
            obj["spec"]["volumeName"], obj["status"] = VOLUME, {"phase": "Bound"}
        elif kind == "Pod":
            obj["spec"]["nodeName"] = WORKER
            obj["status"] = {"phase": "Running" if obj["metadata"]["name"] == "writer" else "Succeeded"}
        self.objects[kube.path_of(obj)] = obj

    def delete(self, obj):
        self.calls.append(("DELETE", kube.path_of(obj)))
        return self.objects.pop(kube.path_of(obj), None) is not None

    def applied(self, kind: str) -> list[str]:
        return [p.rsplit("/", 1)[-1] for m, p in self.calls if m == "PATCH" and f"/{kind}/" in p]


class Cloud(diagnosis.Cloud):
    """The cloud after the cloud provider built what verify asks for: the Service's load balancer with
    listeners on 80 and 8080 (shared), the Ingress's with L7 policies for /a and /b, the PVC's volume
    in-use on the writer's node; each while its Kubernetes object exists."""

    def __init__(self, cluster: Cluster):
        service, ingress = occm_lb_name("lab", NS_, "echo"), f"kube_ingress_lab_{NS_}_echo"
        nodes = list(NODES.values())
        super().__init__(
            lbs=[
                NS(id="lb-1", name=service, provisioning_status="ACTIVE", vip_address=VIP, vip_port_id="vip-1"),
                NS(id="lb-2", name=ingress, provisioning_status="ACTIVE", vip_address="10.0.0.51", vip_port_id="vip-2"),
            ],
            listeners=[
                NS(id="l-80", load_balancer_id="lb-1", protocol="TCP", protocol_port=80, default_pool_id="pool-80"),
                NS(id="l-8080", load_balancer_id="lb-1", protocol="TCP", protocol_port=8080, default_pool_id="pool-8080"),
                NS(id="l-http", load_balancer_id="lb-2", protocol="HTTP", protocol_port=80, default_pool_id=None),
            ],
            members={
                **{f"pool-{p}": [NS(address=a, protocol_port=n) for a in nodes] for p, n in NODE_PORTS.items()},
                "pool-a": [NS(address=nodes[0])],
                "pool-b": [NS(address=nodes[0])],
            },
            fips=[
                NS(floating_ip_address=LB_IP, port_id="vip-1"),
                NS(floating_ip_address=INGRESS_IP, port_id="vip-2"),
            ],
            ports=[NS(address=a, security_group_ids=["sg-k8s"]) for a in nodes],
            rules={"sg-k8s": EGRESS + [rule(remote_ip_prefix="10.0.0.0/24")]},
            groups={"sg-k8s": "lab-k8s"},
            policies=[NS(id=f"p-{x}", listener_id="l-http", redirect_pool_id=f"pool-{x}") for x in "ab"],
            l7_rules={f"p-{x}": [NS(type="PATH", compare_type="STARTS_WITH", rule_value=f"/{x}")] for x in "ab"},
        )
        self.cluster = cluster
        self.built = {  # each load balancer with the object it is built for
            f"/api/v1/namespaces/{NS_}/services/echo": next(super().load_balancers()),
            f"/apis/networking.k8s.io/v1/namespaces/{NS_}/ingresses/echo": list(super().load_balancers())[1],
        }
        self.built[f"/api/v1/namespaces/{NS_}/services/echo"].tags = [
            f"kube_service_lab_{NS_}_echo",
            f"kube_service_lab_{NS_}_echo-shared",
        ]

    def load_balancers(self, name=None):
        return iter([x for p, x in self.built.items() if p in self.cluster.objects and name in (None, x.name)])

    def get_load_balancer(self, id_):
        return next(x for x in self.load_balancers() if x.id == id_)

    def providers(self):
        return iter([NS(name="amphora")])

    def subnets(self, name):
        return iter([NS(id="subnet-1", name=name)])

    def networks(self, name):
        return iter([NS(id="public-1", name=name)])

    def volumes(self, details=False):
        pvc = f"/api/v1/namespaces/{NS_}/persistentvolumeclaims/data"
        vol = NS(id="v-1", name=VOLUME, status="in-use", attachments=[{"server_id": "srv-1"}])
        return iter([vol] if pvc in self.cluster.objects else [])


@pytest.fixture(params=["full", "embedded"])
def lab(request, tmp_path, monkeypatch):
    """(a Ctx of lab `lab` of that kind, its Cluster, the URLs sent HTTP from the devstack VM)."""
    settings = config.validate(
        {"lab": {"name": "lab", "kind": request.param, "state_dir": str(tmp_path)}, "verify": {"timeout": 1}}
    )
    settings.lab_dir.mkdir(parents=True)
    cred = {"auth_url": "http://192.168.121.10/identity", "id": "ac-1", "secret": "s3cret", "region": "RegionOne"}
    (settings.lab_dir / "app-credential.yaml").write_text(yaml.safe_dump(cred))
    cluster, sent = Cluster(), []

    def http_from_devstack(s, url, timeout=10):
        sent.append(url)
        apps = {f"http://{LB_IP}/": "echo", f"http://{LB_IP}:8080/": "echo"}
        return 200, f"{apps.get(url) or 'echo-' + url[-1]}-0"  # the pod of the app the request reaches

    monkeypatch.setattr(harness, "http_from_devstack", http_from_devstack)
    s = Session("verify.test", False, settings)
    ctx = harness.Ctx(s, cluster, NS(main=Cloud(cluster)), keep=False, nonce=NONCE)
    return ctx, cluster, sent


def rows(ctx) -> dict[str, tuple[str, str]]:
    return {r.step: (r.outcome, r.detail) for r in ctx.s.results if r.node == "cluster"}


def skipped(ctx) -> list[str]:
    return [r.step for r in ctx.s.results if r.outcome == "skipped"]


def test_the_decision_is_the_lab_kind_alone():
    for kind, reason in (("full", None), ("embedded", REASON)):
        assert harness.data_plane_skip(config.validate({"lab": {"kind": kind}})) == reason
    assert harness.NO_DATA_PLANE == REASON


def test_lb_judges_octavia_either_way_and_sends_http_only_with_a_data_plane(lab):
    ctx, _, sent = lab
    verify_lb.run_lb(ctx)
    got = rows(ctx)
    judged = ["echo pods ready", "external IP", "shared load balancer: second listener", "lb: cleanup"]
    judged += [f"octavia: {a}" for a in ("load balancer", "listener", "pool members", "floating IP", "NodePort rule")]
    assert {k: got[k][0] for k in judged} == dict.fromkeys(judged, "ok"), got
    if ctx.settings.lab.kind == "embedded":
        assert sent == [] and skipped(ctx) == verify_lb.DATA_PLANE
        assert {got[k] for k in verify_lb.DATA_PLANE} == {("skipped", REASON)}
    else:
        assert sent == [f"http://{LB_IP}/", f"http://{LB_IP}:8080/"] and skipped(ctx) == []
        assert got["HTTP from the devstack VM"] == ("ok", f"GET http://{LB_IP}/ -> 200 from pod echo-0")
        assert got["shared load balancer: HTTP"][0] == "ok"


def test_ingress_judges_octavia_either_way_and_sends_http_only_with_a_data_plane(lab):
    ctx, _, sent = lab
    verify_ingress.run_ingress(ctx)
    got = rows(ctx)
    judged = ["controller ready", "ingress address", "ingress: cleanup"]
    judged += [f"octavia: {a}" for a in ("load balancer", "L7 policies", "floating IP")]
    assert {k: got[k][0] for k in judged} == dict.fromkeys(judged, "ok"), got
    if ctx.settings.lab.kind == "embedded":
        assert sent == [] and skipped(ctx) == ["HTTP /a", "HTTP /b"]
        assert got["HTTP /a"] == got["HTTP /b"] == ("skipped", REASON)
    else:
        assert sent == [f"http://{INGRESS_IP}/a", f"http://{INGRESS_IP}/b"] and skipped(ctx) == []
        assert got["HTTP /b"] == ("ok", f"GET http://{INGRESS_IP}/b -> 200 from pod echo-b-0")


def test_pv_judges_the_volume_up_to_the_attach_either_way_and_the_data_only_with_a_data_plane(lab):
    ctx, cluster, _ = lab
    verify_pv.run_pv(ctx)
    got = rows(ctx)
    judged = ["default StorageClass is cinder CSI", "PVC bound", "cinder: volume in-use on the pod's node", "pv: cleanup"]
    assert {k: got[k][0] for k in judged} == dict.fromkeys(judged, "ok"), got
    assert got["cinder: volume in-use on the pod's node"][1] == f"{VOLUME} in-use on srv-1 (node {WORKER})"
    assert got["pv: cleanup"][1] == f"Cinder volume {VOLUME} deleted (reclaimPolicy Delete)"
    logs = [p for _, p in cluster.calls if p.endswith("/log")]
    assert f"/api/v1/namespaces/{NS_}/pods/writer" not in cluster.objects  # the writer is cleaned up either way
    if ctx.settings.lab.kind == "embedded":
        assert skipped(ctx) == verify_pv.DATA_PLANE and {got[k] for k in verify_pv.DATA_PLANE} == {("skipped", REASON)}
        assert logs == [] and cluster.applied("pods") == ["writer"]  # no data read, no reader started
    else:
        assert skipped(ctx) == [] and {got[k][0] for k in verify_pv.DATA_PLANE} == {"ok"}
        assert logs and cluster.applied("pods") == ["writer", "reader"]


def test_the_attach_is_judged_on_the_node_the_scheduler_names(lab):
    """With WaitForFirstConsumer the PVC binds before the pod has its node, and a lab without a data
    plane does not wait for the pod to run: the node is read again until there is one."""
    ctx, cluster, _ = lab
    cluster.unscheduled = 1
    verify_pv.run_pv(ctx)
    assert cluster.unscheduled == 0
    assert rows(ctx)["cinder: volume in-use on the pod's node"] == ("ok", f"{VOLUME} in-use on srv-1 (node {WORKER})")


@pytest.mark.parametrize("check", ["lb", "pv", "ingress"])
def test_a_dry_run_says_which_assertions_a_lab_without_a_data_plane_skips(lab, check):
    ctx, _, _ = lab
    docs, assertions = run.objects_and_assertions(ctx, check)
    assert set(run.DATA_PLANE[check]) <= set(assertions)
    harness.plan_rows(ctx, check, docs, assertions, "the cluster is down", run.DATA_PLANE[check])
    planned = {r.step: r.detail for r in ctx.s.results if r.node == "cluster"}
    would_skip = {f"{check}: {a}" for a in run.DATA_PLANE[check]} if ctx.settings.lab.kind == "embedded" else set()
    assert {k for k, v in planned.items() if v == f"would skip: {REASON}"} == would_skip
    assert {k for k, v in planned.items() if v == "would check"} == {f"{check}: {a}" for a in assertions} - would_skip
