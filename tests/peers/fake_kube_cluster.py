"""The fake Kubernetes API (fake_kube_api.py) grown into what verify talks to, because no API
server, kubelet or container can run on this machine:

- workloads: a Deployment/StatefulSet gets ready pods; a Pod runs (or completes) on a node; a
  busybox `echo X > /data/probe` / `cat /data/probe` is played against a per-PVC file, so the
  logs say what a real Pod would print;
- Services get a ClusterIP and NodePorts; an apiserver with `/readyz`;
- authentication and authorization as kube-apiserver does it once verify.keystone configured it:
  only when the control plane's kube-apiserver.yaml (on the sshd master node) carries the webhook
  flags, a bearer token goes to the webhook named in the webhook kubeconfig (TLS checked against
  the CA pinned there), then RBAC (RoleBindings to users/groups), then the webhook's
  SubjectAccessReview;
- the controllers' effects in OpenStack (OCCM, cinder-csi, octavia-ingress-controller) are the
  test's callbacks (`controllers`), which act on the real loopback OpenStack in a thread, as a
  controller would, and report back an address or a volume."""

from __future__ import annotations

import base64
import re
import tempfile
import threading
import traceback
from pathlib import Path

import requests
import yaml

from tests.peers.fake_kube_api import ADMIN_TOKEN, FakeKubeApi

NAMESPACED = re.compile(r"^/(?:api/v1|apis/[^/]+/[^/]+)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?(?:/([^/]+))?$")


class FakeCluster(FakeKubeApi):
    def __init__(self, nodes, controllers, master_etc: Path, **kw):
        super().__init__(nodes, **kw)
        self.controllers, self.master_etc = controllers, master_etc
        self.files: dict[str, str] = {}  # pvc path -> content of /data/probe
        self.next_ip, self.next_port = 10, 30100
        self.errors: list[str] = []
        self.controller_lock = threading.Lock()
        self.workers: list[threading.Thread] = []

    # --- requests -------------------------------------------------------------------------------

    def handle(self, method, path, query, body, token):
        if path == "/readyz":
            return 200, "ok"
        if token != ADMIN_TOKEN:
            user = self.authenticate(token)
            if user is None:
                return 401, {"kind": "Status", "code": 401, "reason": "Unauthorized"}
            if not self.authorized(user, method, path):
                return 403, {"kind": "Status", "code": 403, "reason": "Forbidden"}
        if method == "POST":
            return (201, body) if query.get("dryRun") else (405, {"kind": "Status", "code": 405})
        if method == "GET" and path.endswith("/log"):
            with self.lock:
                pod = self.objects.get(path[: -len("/log")])
            return (200, pod["_logs"]) if pod else (404, {"kind": "Status", "code": 404})
        if method == "GET" and query.get("labelSelector"):
            with self.lock:
                found = self.get(path)
            want = dict(kv.split("=", 1) for kv in query["labelSelector"][0].split(","))
            items = [o for o in (found or {}).get("items", [])
                     if all(o["metadata"].get("labels", {}).get(k) == v for k, v in want.items())]
            return 200, {"items": items}
        return super().handle(method, path, query, body, token)

    def get(self, path):
        found = super().get(path)
        if found is not None or path.startswith("/api/v1/nodes"):
            return _public(found)
        if not _collection(path):
            return None
        prefix = path + "/"  # the objects one level below
        return {"items": [_public(o) for p, o in self.objects.items() if p.startswith(prefix) and "/" not in p[len(prefix):]]}

    # --- authentication and authorization, as configured on the control plane -------------------

    def webhook(self):
        manifest = self.master_etc / "manifests" / "kube-apiserver.yaml"
        kubeconfig = self.master_etc / "keystone-auth" / "webhook.kubeconfig"
        if not manifest.exists() or "--authentication-token-webhook-config-file=" not in manifest.read_text():
            return None
        cluster = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]
        ca = tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False)
        ca.write(base64.b64decode(cluster["certificate-authority-data"]))
        ca.close()
        return cluster["server"], ca.name

    def versions(self) -> tuple[str, str]:
        """(TokenReview version, SubjectAccessReview version) the apiserver would send: the
        --authentication-token-webhook-version flag (default v1beta1, as kube-apiserver's
        pkg/kubeapiserver/options/authentication.go) and the AuthorizationConfiguration's
        subjectAccessReviewVersion."""
        manifest = (self.master_etc / "manifests" / "kube-apiserver.yaml").read_text()
        flag = re.search(r"--authentication-token-webhook-version=(\S+)", manifest)
        authz = self.master_etc / "keystone-auth" / "authorization-config.yaml"
        hooks = [a["webhook"] for a in yaml.safe_load(authz.read_text())["authorizers"] if a["type"] == "Webhook"] \
            if authz.exists() else []
        return (flag.group(1) if flag else "v1beta1"), (hooks[0]["subjectAccessReviewVersion"] if hooks else "v1")

    def _ask(self, body: dict) -> dict:
        """The webhook's review status; a non-2xx answer is an error, as for kube-apiserver's
        webhook client (staging/src/k8s.io/apiserver/plugin/pkg/authenticator/token/webhook)."""
        hook = self.webhook()
        if hook is None:
            return {}
        url, ca = hook
        try:
            r = requests.post(url, json=body, verify=ca, timeout=15)
            if r.status_code // 100 != 2:  # 401: k8s-keystone-auth's answer to a rejected token, expected
                if r.status_code != 401:
                    self.errors.append(f"webhook answered {r.status_code} to a {body['apiVersion']} {body['kind']}: "
                                       f"{r.text[:120]}")
                return {}
            return r.json().get("status", {})
        except requests.RequestException as exc:
            self.errors.append(f"webhook: {exc}")
            return {}
        finally:
            Path(ca).unlink()

    def authenticate(self, token: str):
        version = self.versions()[0]
        st = self._ask({"apiVersion": f"authentication.k8s.io/{version}", "kind": "TokenReview", "spec": {"token": token}})
        return st.get("user") if st.get("authenticated") else None

    def authorized(self, user: dict, method: str, path: str) -> bool:
        m = NAMESPACED.match(path)
        if not m:
            return False
        ns, resource, name = m.group(1), m.group(2), m.group(3)
        verb = {"GET": "get" if name else "list", "POST": "create", "DELETE": "delete", "PATCH": "patch"}[method]
        if self.rbac_allows(user, ns, resource, verb):
            return True
        version = self.versions()[1]
        groups_key = "group" if version == "v1beta1" else "groups"  # v1beta1's SubjectAccessReviewSpec says `group`
        sar = {"apiVersion": f"authorization.k8s.io/{version}", "kind": "SubjectAccessReview", "spec": {
            "user": user["username"], "uid": user.get("uid"), groups_key: user.get("groups", []), "extra": user.get("extra", {}),
            "resourceAttributes": {"namespace": ns, "verb": verb, "resource": resource, "group": "", "version": "v1"}}}
        return bool(self._ask(sar).get("allowed"))

    def cluster_rbac_allows(self, user: str, group: str, resource: str, verb: str) -> bool:
        """A ClusterRoleBinding to `user` (a ServiceAccount's name, system:serviceaccount:NS:NAME)
        whose ClusterRole grants `verb` on `resource` of API group `group`, cluster-wide."""
        base = "/apis/rbac.authorization.k8s.io/v1"
        with self.lock:
            for p, crb in list(self.objects.items()):
                if not p.startswith(f"{base}/clusterrolebindings/") or crb["roleRef"]["kind"] != "ClusterRole":
                    continue
                if not any(s["kind"] == "ServiceAccount" and user == f"system:serviceaccount:{s['namespace']}:{s['name']}"
                           or s["kind"] == "User" and s["name"] == user for s in crb.get("subjects", [])):
                    continue
                role = self.objects.get(f"{base}/clusterroles/{crb['roleRef']['name']}", {})
                if any(group in r.get("apiGroups", []) and resource in r.get("resources", []) and not r.get("resourceNames")
                       and verb in r.get("verbs", []) for r in role.get("rules", [])):
                    return True
        return False

    def rbac_allows(self, user, ns, resource, verb) -> bool:
        with self.lock:
            base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}"
            for p, rb in list(self.objects.items()):
                if not p.startswith(f"{base}/rolebindings/"):
                    continue
                if not any((s["kind"] == "Group" and s["name"] in user.get("groups", []))
                           or (s["kind"] == "User" and s["name"] == user["username"]) for s in rb.get("subjects", [])):
                    continue
                role = self.objects.get(f"{base}/roles/{rb['roleRef']['name']}", {})
                if any(resource in r.get("resources", []) and verb in r.get("verbs", []) for r in role.get("rules", [])):
                    return True
        return False

    # --- workloads and controllers --------------------------------------------------------------

    def patch(self, path, obj):
        old = self.objects.get(path, {})
        stored = super().patch(path, obj)
        kind = obj["kind"]
        if kind == "Service":
            self._service(path, stored, old)
        elif kind in ("Deployment", "StatefulSet"):
            self._workload(path, stored)
        elif kind == "PersistentVolumeClaim":
            stored["spec"] = {**old.get("spec", {}), **stored["spec"]}
            stored["status"] = old.get("status", {"phase": "Pending"})
            if not old:
                self._later(self._bind, path)
        elif kind == "Pod":
            self._pod(path, stored)
        elif kind == "Ingress":
            stored["status"] = old.get("status", {})
            if not old:
                self._later(self._address, path, self.controllers.ingress)
        return stored

    def _later(self, fn, *args):
        """Run a controller's work in the background, one at a time (like a controller's work queue)."""
        def run():
            try:
                with self.controller_lock:
                    fn(*args)
            except Exception as exc:  # a controller failing is a test fixture bug: keep it visible
                frames = traceback.extract_tb(exc.__traceback__)
                where = [f for f in frames if f.filename.endswith("cloud_controllers.py")][-1:] or frames[-1:]
                where = where[0]
                self.errors.append(f"{fn.__name__}: {exc!r} at {Path(where.filename).name}:{where.lineno} {where.line}")
        worker = threading.Thread(target=run, daemon=True)
        self.workers.append(worker)
        worker.start()

    def settle(self, timeout: float = 300) -> None:
        """Wait for the controllers' queued work (a test's cleanup may still be deleting in OpenStack)."""
        for worker in list(self.workers):
            worker.join(timeout)
        self.workers = [w for w in self.workers if w.is_alive()]

    def _service(self, path, svc, old):
        spec = svc["spec"]
        spec["clusterIP"] = old.get("spec", {}).get("clusterIP") or self._ip()
        old_ports = {p["port"]: p.get("nodePort") for p in old.get("spec", {}).get("ports", [])}
        for p in spec.get("ports", []):
            if spec.get("type") in ("LoadBalancer", "NodePort"):
                p["nodePort"] = old_ports.get(p["port"]) or self._port()
        svc["status"] = old.get("status", {})
        if spec.get("type") == "LoadBalancer" and not old:
            self._later(self._address, path, self.controllers.service_lb)
        if svc["metadata"]["name"] == "k8s-keystone-auth-service":
            self.controllers.keystone_service(spec["clusterIP"])

    def _address(self, path, controller):
        ip = controller(self, path)
        with self.lock:
            if path in self.objects and ip:
                self.objects[path]["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]}}

    def _workload(self, path, obj):
        ns, name, replicas = obj["metadata"]["namespace"], obj["metadata"]["name"], obj["spec"].get("replicas", 1)
        template = obj["spec"]["template"]
        for i in range(replicas):
            pod = f"{name}-0" if obj["kind"] == "StatefulSet" else f"{name}-5c7d9-{'abcdefgh'[i]}x{i}"
            self.objects[f"/api/v1/namespaces/{ns}/pods/{pod}"] = {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": ns, "labels": template["metadata"]["labels"],
                                                                "ownerReferences": [{"kind": obj["kind"], "name": name}]},
                "spec": {**template["spec"], "nodeName": self.nodes[i % len(self.nodes)]}, "status": {"phase": "Running"},
                "_logs": ""}
        obj["status"] = {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
        if name == "k8s-keystone-auth":
            secret = self.objects["/api/v1/namespaces/kube-system/secrets/keystone-auth-certs"]["data"]
            policy = self.objects["/api/v1/namespaces/kube-system/configmaps/k8s-auth-policy"]["data"]["policies"]
            hook = self.controllers.keystone_auth(base64.b64decode(secret["tls.crt"]), base64.b64decode(secret["tls.key"]),
                                                  policy, self.cluster_rbac_allows)
            probed = any(c.get("readinessProbe") for c in template["spec"]["containers"])
            if hook.waiting and probed:  # kubelet: a container with a readiness probe is ready once the probe passes
                obj["status"] = {"replicas": replicas, "readyReplicas": 0, "availableReplicas": 0}
                self.errors.append(f"k8s-keystone-auth not serving: {hook.waiting}")

    def _pod(self, path, pod):
        ns, claim = pod["metadata"]["namespace"], _claim(pod)
        script = pod["spec"]["containers"][0].get("command", [""])[-1]
        pvc = f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}"
        wrote = re.search(r"echo (\S+) > /data/probe", script)
        if wrote:
            self.files[pvc] = wrote.group(1)
        logs = self.files.get(pvc, "cat: can't open '/data/probe': No such file or directory") if "cat /data/probe" in script else ""
        node = self.nodes[-1]
        pod["spec"]["nodeName"] = node
        pod["status"] = {"phase": "Running" if "sleep" in script else ("Succeeded" if pvc in self.files else "Failed")}
        pod["_logs"] = logs
        if claim and pod["status"]["phase"] == "Running":  # queued after the PVC's binding, as the attach/detach controller waits for it
            self._later(self._attach, pvc, self._server_of(node))

    def _attach(self, pvc: str, server_id: str):
        with self.lock:
            volume = self.objects.get(pvc, {}).get("spec", {}).get("volumeName")
        if volume:
            self.controllers.attach(volume, server_id)

    def _bind(self, path):
        volume = self.controllers.provision(self, path)
        with self.lock:
            if path in self.objects:
                self.objects[path]["spec"]["volumeName"] = volume
                self.objects[path]["status"] = {"phase": "Bound"}

    def delete(self, path):
        gone = super().delete(path)
        if gone is None:
            return None
        kind = gone.get("kind")
        if kind == "Namespace":
            ns = gone["metadata"]["name"]
            for p in [p for p in self.objects if f"/namespaces/{ns}/" in p]:
                self.delete(p)
        elif kind in ("Deployment", "StatefulSet"):
            for p, o in list(self.objects.items()):
                if any(r["name"] == gone["metadata"]["name"] for r in o["metadata"].get("ownerReferences", [])):
                    self.objects.pop(p)
        elif kind == "Pod":
            pvc = self.objects.get(f"/api/v1/namespaces/{gone['metadata']['namespace']}/persistentvolumeclaims/{_claim(gone)}")
            if pvc and pvc["spec"].get("volumeName") and gone["status"]["phase"] == "Running":
                self._later(self.controllers.detach, pvc["spec"]["volumeName"], self._server_of(gone["spec"]["nodeName"]))
        elif kind == "PersistentVolumeClaim" and gone["spec"].get("volumeName"):
            self._later(self.controllers.delete_volume, gone["spec"]["volumeName"])
        elif kind == "Service" and gone["spec"].get("type") == "LoadBalancer":
            self._later(self.controllers.service_deleted, gone)
        elif kind == "Ingress":
            self._later(self.controllers.ingress_deleted, gone)
        return gone

    def _server_of(self, node: str) -> str:
        """The OpenStack server id in the node's providerID (openstack:///<id>)."""
        return self.provider_ids[node].rsplit("/", 1)[-1]

    def _ip(self) -> str:
        self.next_ip += 1
        return f"127.77.0.{self.next_ip}"

    def _port(self) -> int:
        self.next_port += 1
        return self.next_port


def _collection(path: str) -> bool:
    m = NAMESPACED.match(path)
    if m:
        return m.group(3) is None
    parts = path.strip("/").split("/")
    return len(parts) == (3 if parts[0] == "api" else 4)


def _claim(pod: dict):
    """The PVC a Pod mounts, if any."""
    return next((v["persistentVolumeClaim"]["claimName"] for v in pod["spec"].get("volumes", [])
                 if "persistentVolumeClaim" in v), None)


def _public(obj):
    """Without the fake's own bookkeeping fields."""
    if isinstance(obj, dict) and "_logs" in obj:
        return {k: v for k, v in obj.items() if k != "_logs"}
    return obj
