"""A stand-in for k8s-keystone-auth, because it ships only as a container image and no container
can run here. It serves the webhook API the apiserver calls (POST /webhook with a TokenReview or a
SubjectAccessReview) over TLS with the certificate and key the tool put in the Secret
keystone-auth-certs, and answers from the real loopback Keystone the way k8s-keystone-auth does
(osk8s_tasks.keystone_auth mirrors its token validation and its version-1 policy)."""

from __future__ import annotations

import json
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from osk8s_tasks import keystone_auth
from tests.peers.fake_kube_api import LocalHTTPServer


class KeystoneWebhook:
    def __init__(self, keystone_url: str, address: str, cert: bytes, key: bytes, policy_json: str, port: int = 8443):
        self.keystone_url, self.policy = keystone_url, json.loads(policy_json)
        self.calls: list[str] = []
        self.tokens: list[str] = []  # every token it was shown: the test greps the tool's output for them
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.calls.append(body["kind"])
                if self.path != "/webhook":
                    self.send_error(404)
                    return
                status = hook.token_review(body) if body["kind"] == "TokenReview" else hook.access_review(body)
                data = json.dumps({**body, "status": status}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.dir = tempfile.TemporaryDirectory()
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
        user = {"username": spec.get("user"), "uid": spec.get("uid"), "groups": spec.get("groups", []),
                "extra": spec.get("extra", {})}
        allowed = keystone_auth.authorize(self.policy, user, attrs.get("verb", ""), attrs.get("resource", ""),
                                          attrs.get("namespace", ""), attrs.get("group", ""), attrs.get("subresource", ""))
        return {"allowed": allowed} if allowed else {"allowed": False, "reason": "no keystone policy matches"}

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.dir.cleanup()
