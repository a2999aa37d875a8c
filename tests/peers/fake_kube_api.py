"""A fake Kubernetes API server, because no real one can run on this machine (no nested
virtualization, no container runtime images). It sits exactly at the API boundary the tool uses:
GET an object or a list, PATCH with application/apply-patch+yaml (server-side apply), and it
plays the cloud provider's part: once the OCCM DaemonSet exists every node gets an
openstack:/// providerID, once the cinder-csi node DaemonSet exists every node's CSINode lists
cinder.csi.openstack.org. It records every request so tests can count writes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeKubeApi:
    def __init__(self, nodes: list[str]):
        self.nodes = nodes
        self.objects: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path = self.path.split("?")[0]
                with api.lock:
                    api.requests.append(("GET", path))
                    body = api.get(path)
                self._send(200, body) if body is not None else self._send(404, {"kind": "Status", "code": 404})

            def do_DELETE(self):
                path = self.path.split("?")[0]
                with api.lock:
                    api.requests.append(("DELETE", path))
                    gone = api.objects.pop(path, None)
                self._send(200, {"kind": "Status", "status": "Success"}) if gone else self._send(404, {"kind": "Status", "code": 404})

            def do_PATCH(self):
                path = self.path.split("?")[0]
                obj = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with api.lock:
                    api.requests.append(("PATCH", path))
                    stored = {**obj, "metadata": {**obj["metadata"], "uid": f"uid-{len(api.objects)}",
                                                  "managedFields": [{"manager": "osk8s"}]}}
                    api.objects[path] = stored
                self._send(200, stored)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def has(self, kind_path_part: str) -> bool:
        return any(kind_path_part in p for p in self.objects)

    def get(self, path: str):
        if path == "/api/v1/nodes":
            occm = self.has("/daemonsets/openstack-cloud-controller-manager")
            return {"items": [{"metadata": {"name": n}, "spec": {"providerID": f"openstack:///{i:08x}-fake"} if occm else {},
                               "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
                              for i, n in enumerate(self.nodes)]}
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
                           "users": [{"name": "admin", "user": {"token": "fake-admin-token"}}],
                           "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "admin"}}]})

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
