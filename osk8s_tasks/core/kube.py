"""The Kubernetes API, through the kubernetes client's ApiClient: read objects, ask the server what
applying the tool's version would change (a dry-run server-side apply), and apply (field manager
`osk8s`) only where something would.

Paths come from a small table of the kinds the tool applies, so no discovery round trips are
needed; an unknown kind is a clear error, not a guess."""

from __future__ import annotations

import copy
import json
from contextlib import contextmanager

import yaml
from kubernetes import client
from kubernetes import config as kube_config
from urllib3.util.retry import Retry

from osk8s_tasks.core import lab
from osk8s_tasks.core.engine import Status, Step, StepFailed

FIELD_MANAGER = "osk8s"
# kind -> (group/version path, plural, namespaced)
KINDS = {
    "Namespace": ("api/v1", "namespaces", False),
    "ServiceAccount": ("api/v1", "serviceaccounts", True),
    "Secret": ("api/v1", "secrets", True),
    "ConfigMap": ("api/v1", "configmaps", True),
    "Pod": ("api/v1", "pods", True),
    "PersistentVolumeClaim": ("api/v1", "persistentvolumeclaims", True),
    "Service": ("api/v1", "services", True),
    "ClusterRole": ("apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "DaemonSet": ("apis/apps/v1", "daemonsets", True),
    "Deployment": ("apis/apps/v1", "deployments", True),
    "StatefulSet": ("apis/apps/v1", "statefulsets", True),
    "Ingress": ("apis/networking.k8s.io/v1", "ingresses", True),
    "CSIDriver": ("apis/storage.k8s.io/v1", "csidrivers", False),
    "StorageClass": ("apis/storage.k8s.io/v1", "storageclasses", False),
}


def path_of(obj: dict) -> str:
    kind = obj.get("kind")
    if kind not in KINDS:
        raise StepFailed(f"the tool does not apply kind {kind!r} (known: {', '.join(KINDS)})")
    prefix, plural, namespaced = KINDS[kind]
    meta = obj["metadata"]
    ns = f"namespaces/{meta.get('namespace', 'default')}/" if namespaced else ""
    return f"/{prefix}/{ns}{plural}/{meta['name']}"


IGNORED_METADATA = ("managedFields", "resourceVersion", "generation")


def changed_paths(have, would, where: str = "") -> list[str]:
    """Where the object the server would store (a dry-run apply) differs from the live one; the
    bookkeeping a write itself changes (managedFields, resourceVersion, generation) and the status
    (the controllers', never applied) aside."""
    if isinstance(have, dict) and isinstance(would, dict):
        out = []
        for k in sorted(set(have) | set(would)):
            if (where == "metadata" and k in IGNORED_METADATA) or (not where and k == "status"):
                continue
            sub = f"{where}.{k}" if where else k
            out += changed_paths(have.get(k), would.get(k), sub) if k in have and k in would else [sub]
        return out
    if isinstance(have, list) and isinstance(would, list) and len(have) == len(would):
        return [d for i, (h, w) in enumerate(zip(have, would, strict=True)) for d in changed_paths(h, w, f"{where}[{i}]")]
    return [] if have == would else [where or "/"]


class Api:
    def __init__(self, api_client):
        self.client = api_client

    def call(self, method: str, path: str, body=None, content_type: str = "application/json", query=None):
        """One API call: (HTTP status, response body bytes). Only transport failures raise."""
        try:
            m, url, headers, data, post = self.client.param_serialize(
                method,
                path,
                query_params=query or [],
                body=body,
                auth_settings=["BearerToken"],
                header_params={"Content-Type": content_type, "Accept": "application/json"},
            )
            resp = self.client.call_api(m, url, header_params=headers, body=data, post_params=post)
            resp.read()
        except OSError as exc:
            raise StepFailed(
                f"Kubernetes API unreachable ({exc}). Fix: is the control plane up? (inv cluster.status)"
            ) from None
        except Exception as exc:  # urllib3 and the client's own errors all mean: not reachable
            raise StepFailed(f"Kubernetes API {method} {path}: {exc.__class__.__name__}: {exc}") from None
        return resp.status, resp.data or b""

    def request(self, method: str, path: str, body=None, content_type: str = "application/json", query=None):
        """One API call's JSON; None for 404; other errors raise StepFailed with the API's answer."""
        status, data = self.call(method, path, body, content_type, query)
        if status == 404:
            return None
        if status >= 400:
            raise StepFailed(f"Kubernetes API {method} {path}: {status}: {data[:300]!r}")
        return json.loads(data) if data else {}

    def as_bearer(self, token: str) -> Api:
        """The same API server and CA, authenticated only by `token` (no client certificate)."""
        cfg = copy.copy(self.client.configuration)
        cfg.cert_file = cfg.key_file = None
        cfg.api_key, cfg.api_key_prefix = {"BearerToken": f"Bearer {token}"}, {}
        cfg.refresh_api_key_hook = None  # else the kubeconfig's own token comes back on every call
        return Api(client.ApiClient(cfg))

    def delete(self, obj: dict) -> bool:
        """Delete the object (dependents in the background); False when it was not there."""
        return self.request("DELETE", path_of(obj), query=[("propagationPolicy", "Background")]) is not None

    def get(self, obj: dict):
        return self.request("GET", path_of(obj))

    def apply(self, obj: dict):
        """Server-side apply; any error answer raises (a 404 too: e.g. the object's namespace is missing)."""
        status, data = self.call(
            "PATCH",
            path_of(obj),
            body=obj,
            content_type="application/apply-patch+yaml",
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        )
        if status >= 400:
            raise StepFailed(f"Kubernetes API apply {label(obj)}: {status}: {data[:300]!r}")
        return json.loads(data) if data else {}

    def apply_dry_run(self, obj: dict) -> tuple[int, dict | str]:
        """What the server would store if `obj` were applied now: (HTTP status, the object or the error text).
        Its own merge rules decide (list items matched by key, defaults, what admission adds such as the
        ServiceAccount token volume), not a guess of ours; nothing is stored."""
        status, data = self.call(
            "PATCH",
            path_of(obj),
            body=obj,
            content_type="application/apply-patch+yaml",
            query=[("fieldManager", FIELD_MANAGER), ("force", "true"), ("dryRun", "All")],
        )
        if status >= 400:
            return status, data.decode(errors="replace")[:300]
        return status, json.loads(data)

    def items(self, path: str) -> list[dict]:
        return (self.request("GET", path) or {}).get("items", [])


def label(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']} {meta.get('namespace') + '/' if meta.get('namespace') else ''}{meta['name']}"


def apply_step(api: Api, obj: dict) -> Step:
    label_ = label(obj)
    secret = obj["kind"] == "Secret"

    def check():
        for _ in range(3):  # a controller writing the object between the read and the dry run: read again
            live = api.get(obj)
            if live is None:
                return Status(False, f"{label_} does not exist", f"apply {label_}")
            code, would = api.apply_dry_run(obj)
            if code >= 400:
                return Status(
                    False, f"{label_} differs and the server refuses the change (HTTP {code}: {would})", f"apply {label_}"
                )
            diff = changed_paths(live, would)
            if not diff:
                return Status(True, f"{label_} is as wanted")
            again = api.get(obj)
            if again is not None and again["metadata"].get("resourceVersion") == live["metadata"].get("resourceVersion"):
                break
        shown = ["data (secret content not shown)"] if secret else diff[:5]
        return Status(False, f"{label_} differs", f"apply {label_}: {', '.join(shown)}")

    return Step(label_, check, lambda: api.apply(obj))


_CLUSTER_KEYS = {"server", "certificate-authority-data", "tls-server-name"}
_USER_KEYS = {"client-certificate-data", "client-key-data", "token"}


def admin_kubeconfig(text: str, source: str) -> str:
    """The control plane's admin.conf reduced to what kubeadm writes there: one cluster (server,
    CA data), one user (client certificate and key; a static token is accepted too), one context.
    Loading a kubeconfig runs its `exec` plugin and `auth-provider` on this machine, so a node that
    was taken over could run code here through them: any of those, a file reference, TLS checks
    switched off, or extra users or contexts is refused, naming what was found."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StepFailed(f"{source} is not YAML ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise StepFailed(f"{source} is not a kubeconfig")
    problems = []
    for kind in ("clusters", "users", "contexts"):
        if len(doc.get(kind) or []) != 1:
            problems.append(f"{len(doc.get(kind) or [])} {kind} (kubeadm writes 1)")
    if problems:
        raise StepFailed(
            f"{source}: {', '.join(problems)}. Refused: it is not what kubeadm writes. "
            "Fix: check the control plane, then run kubeadm init phase kubeconfig admin there"
        )
    cluster, user = doc["clusters"][0].get("cluster") or {}, doc["users"][0].get("user") or {}
    extra = sorted(set(cluster) - _CLUSTER_KEYS) + sorted(set(user) - _USER_KEYS)
    if extra:
        raise StepFailed(
            f"{source}: refused, it carries {', '.join(extra)} (kubeadm writes none of them; an exec "
            "plugin or auth-provider would run code on this machine). Fix: check the control plane, "
            "then run kubeadm init phase kubeconfig admin there"
        )
    if not cluster.get("server") or (
        cluster["server"].startswith("https:") and not cluster.get("certificate-authority-data")
    ):
        raise StepFailed(
            f"{source}: no server, or no cluster CA to check it against. Fix: check the control plane's admin.conf"
        )
    context = doc["contexts"][0]
    clean = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": doc["clusters"][0]["name"], "cluster": {k: cluster[k] for k in sorted(cluster)}}],
        "users": [{"name": doc["users"][0]["name"], "user": {k: user[k] for k in sorted(user)}}],
        "contexts": [
            {"name": context["name"], "context": {"cluster": doc["clusters"][0]["name"], "user": doc["users"][0]["name"]}}
        ],
        "current-context": context["name"],
    }
    return yaml.safe_dump(clean, sort_keys=False)


@contextmanager
def connect(settings, master_remote=None):
    """An Api for the lab's cluster. `cluster.api_server` (tests) is used as given; otherwise an
    SSH forward to the control plane's 6443 through the jump host, TLS checked against the
    cluster CA from the admin kubeconfig (127.0.0.1 is in the apiserver's certificate SANs)."""
    kubeconfig = lab.admin_conf(settings)
    if not kubeconfig.exists():
        raise StepFailed(f"no admin kubeconfig ({kubeconfig}). Fix: inv cluster.deploy")
    clean = yaml.safe_load(admin_kubeconfig(kubeconfig.read_text(), str(kubeconfig)))
    api_client = kube_config.new_client_from_config_dict(clean)
    # For token users the client re-applies the kubeconfig (server included) before every call,
    # which would undo the address set below; the token is already in place.
    api_client.configuration.refresh_api_key_hook = None
    # urllib3 retries a refused or reset connection (connect/read), but by default a TLS failure
    # too: a certificate that does not verify was retried into an EOF through the SSH forward, and
    # the error the user saw no longer named the certificate. "other" errors (SSL) are the answer.
    api_client.configuration.retries = Retry(total=3, other=0)
    if settings.cluster.api_server:
        api_client.configuration.host = settings.cluster.api_server
        yield Api(client.ApiClient(api_client.configuration))
        return
    if master_remote is None:
        raise StepFailed("no connection to the control plane to forward the API through")
    with master_remote.forward("127.0.0.1", 6443) as port:
        api_client.configuration.host = f"https://127.0.0.1:{port}"
        yield Api(client.ApiClient(api_client.configuration))
