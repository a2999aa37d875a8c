"""A fake Kubernetes API server, because no real one can run on this machine (no nested
virtualization, no container runtime images). It sits exactly at the API boundary the tool uses:
GET an object or a list, PATCH with application/apply-patch+yaml (server-side apply), DELETE, and
it plays the cloud provider's part: once the OCCM DaemonSet exists every node gets an
openstack:/// providerID, once the cinder-csi node DaemonSet exists every node's CSINode lists
cinder.csi.openstack.org. It records every request so tests can count writes.

tests/peers/fake_kube_cluster.py adds workloads, authentication and authorization for verify."""

from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ADMIN_TOKEN = "fake-admin-token"


class LocalHTTPServer(ThreadingHTTPServer):
    """HTTPServer.server_bind asks DNS for the bound address's name (socket.getfqdn): a query
    that must never leave a test namespace. Tests' servers skip it."""

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class FakeKubeApi:
    def __init__(self, nodes: list[str], provider_ids: dict[str, str] | None = None,
                 addresses: dict[str, str] | None = None):
        self.nodes = nodes
        self.provider_ids = provider_ids or {n: f"openstack:///{i:08x}-fake" for i, n in enumerate(nodes)}
        self.addresses = addresses or {}
        self.objects: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
                with api.lock:
                    api.requests.append((self.command, url.path))
                code, out = api.handle(self.command, url.path, parse_qs(url.query), body, token)
                data = out.encode() if isinstance(out, str) else json.dumps(out).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if isinstance(out, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_DELETE = do_POST = _serve

        self.server = LocalHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- the dispatch point ---------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, body, token: str):
        if method == "GET":
            with self.lock:
                found = self.get(path)
            return (200, found) if found is not None else (404, {"kind": "Status", "code": 404})
        if method == "DELETE":
            with self.lock:
                gone = self.delete(path)
            return (200, {"kind": "Status", "status": "Success"}) if gone else (404, {"kind": "Status", "code": 404})
        if method == "PATCH":
            with self.lock:
                return 200, self.patch(path, body)
        return 405, {"kind": "Status", "code": 405}

    def patch(self, path: str, obj: dict) -> dict:
        stored = {**obj, "metadata": {**obj["metadata"], "uid": f"uid-{len(self.objects)}",
                                      "managedFields": [{"manager": "osk8s"}]}}
        self.objects[path] = stored
        return stored

    def delete(self, path: str):
        return self.objects.pop(path, None)

    def has(self, kind_path_part: str) -> bool:
        return any(kind_path_part in p for p in self.objects)

    def node(self, i: int, n: str) -> dict:
        occm = self.has("/daemonsets/openstack-cloud-controller-manager")
        addresses = [{"type": "InternalIP", "address": self.addresses[n]}] if n in self.addresses else []
        return {"metadata": {"name": n}, "spec": {"providerID": self.provider_ids[n]} if occm else {},
                "status": {"conditions": [{"type": "Ready", "status": "True"}], "addresses": addresses}}

    def get(self, path: str):
        if path == "/api/v1/nodes":
            return {"items": [self.node(i, n) for i, n in enumerate(self.nodes)]}
        if path.startswith("/api/v1/nodes/") and path.rsplit("/", 1)[-1] in self.nodes:
            name = path.rsplit("/", 1)[-1]
            return self.node(self.nodes.index(name), name)
        if path == "/apis/storage.k8s.io/v1/csinodes":
            csi = self.has("/daemonsets/csi-cinder-nodeplugin")
            return {"items": [{"metadata": {"name": n},
                               "spec": {"drivers": [{"name": "cinder.csi.openstack.org"}] if csi else []}} for n in self.nodes]}
        if path == "/api/v1/namespaces/kube-system/pods":
            return {"items": []}
        if path == "/api/v1/services":
            return {"items": [o for p, o in self.objects.items() if "/services/" in p]}
        return self.objects.get(path)

    def writes(self) -> int:
        return sum(1 for m, _ in self.requests if m != "GET")

    def kubeconfig(self) -> str:
        return json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                           "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                           "users": [{"name": "admin", "user": {"token": ADMIN_TOKEN}}],
                           "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "admin"}}]})

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
