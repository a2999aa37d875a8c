"""A stand-in for k8s-keystone-auth, because it ships only as a container image and no container
can run here. It follows upstream's code, cloud-provider-openstack v1.36.0
pkg/identity/keystone/keystone.go (Handler, authenticateToken, authorizeToken, Run), not its docs:

- only `authentication.k8s.io/v1beta1` and `authorization.k8s.io/v1beta1` reviews are read;
  any other apiVersion gets HTTP 400 "unknown apiVersion";
- a rejected token gets HTTP 401 with the review, `status.authenticated: false`;
- a SubjectAccessReview's groups are read from v1beta1's `spec.group` (not v1's `groups`);
- it serves only after its ConfigMap informer synced, and that informer lists and watches
  ConfigMaps cluster-wide: `rbac_allows` (the fake API's RBAC) must let its ServiceAccount list
  and watch configmaps at cluster scope, or it never listens.

It serves TLS with the certificate and key the tool put in the Secret keystone-auth-certs and
answers from the real loopback Keystone through osk8s_tasks.keystone_auth."""

from __future__ import annotations

import json
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from osk8s_tasks.verify.keystone import model as keystone_auth
from tests.peers.fake_kube_api import LocalHTTPServer

SERVICE_ACCOUNT = "system:serviceaccount:kube-system:k8s-keystone"
V1BETA1 = ("authentication.k8s.io/v1beta1", "authorization.k8s.io/v1beta1")


class KeystoneWebhook:
    def __init__(self, keystone_url: str, address: str, cert: bytes, key: bytes, policy_json: str, port: int = 8443,
                 rbac_allows=None):
        self.keystone_url, self.policy = keystone_url, json.loads(policy_json)
        self.calls: list[str] = []
        self.tokens: list[str] = []  # every token it was shown: the test greps the tool's output for them
        self.server = None
        self.dir = tempfile.TemporaryDirectory()
        if rbac_allows is not None and not all(rbac_allows(SERVICE_ACCOUNT, "", "configmaps", v) for v in ("list", "watch")):
            # keystone.go Run: cache.WaitForCacheSync never returns, so ListenAndServeTLS is never reached
            self.waiting = "configmaps list/watch at cluster scope forbidden: the informer never syncs"
            return
        self.waiting = ""
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code: int, body: bytes, ctype="application/json"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.calls.append(f"{body.get('apiVersion')} {body.get('kind')}")
                if self.path != "/webhook":
                    self.reply(404, b"404 page not found\n", "text/plain")
                    return
                if body.get("apiVersion") not in V1BETA1:
                    self.reply(400, f"unknown apiVersion {json.dumps(body.get('apiVersion'))}\n".encode(), "text/plain")
                    return
                if body.get("kind") == "TokenReview":
                    status = hook.token_review(body)
                    code = 200 if status["authenticated"] else 401
                elif body.get("kind") == "SubjectAccessReview":
                    status, code = hook.access_review(body), 200
                    body.pop("spec", None)
                else:
                    self.reply(400, f"unknown kind/apiVersion {body.get('kind')!r}\n".encode(), "text/plain")
                    return
                self.reply(code, json.dumps({**body, "status": status}).encode())

        crt, key_path = Path(self.dir.name) / "tls.crt", Path(self.dir.name) / "tls.key"
        crt.write_bytes(cert)
        key_path.write_bytes(key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(crt, key_path)
        self.server = LocalHTTPServer((address, port), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token_review(self, body: dict) -> dict:
        self.tokens.append(body["spec"]["token"])
        review = keystone_auth.token_review(self.keystone_url, body["spec"]["token"])
        return {"authenticated": True, "user": review["user"]} if review["authenticated"] else {"authenticated": False}

    def access_review(self, body: dict) -> dict:
        spec = body["spec"]
        attrs = spec.get("resourceAttributes") or {}
        user = {"username": spec.get("user"), "uid": spec.get("uid"), "groups": spec.get("group") or [],
                "extra": spec.get("extra") or {}}
        allowed = keystone_auth.authorize(self.policy, user, attrs.get("verb", ""), attrs.get("resource", ""),
                                          attrs.get("namespace", ""), attrs.get("group", ""), attrs.get("subresource", ""))
        return {"allowed": allowed}

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        self.dir.cleanup()
