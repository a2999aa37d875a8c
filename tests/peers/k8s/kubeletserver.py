"""The kubelet's HTTPS server (port 10250), as much of it as the API server needs for `pods/log`: part
of the kubelet stand-in (tests/peers/k8s/kubelet/), serving the CRI logs the pod runner and the
runtime stand-in write under /var/log/pods.

Followed (upstream k8s.io/kubernetes v1.37.2):
- cmd/kubelet/app/server.go InitializeTLS: without tlsCertFile (kubeadm sets none) and without
  serverTLSBootstrap, a self-signed serving certificate <certDir>/kubelet.crt and kubelet.key for the
  host name, made once; the API server does not check it (kubeadm gives it no --kubelet-certificate-authority).
- pkg/kubelet/server/auth.go with the KubeletConfiguration kubeadm writes: authentication.x509.clientCAFile
  (a client certificate chaining to it: user = CN, groups = O), authentication.webhook (a bearer token:
  a TokenReview), anonymous disabled (401 otherwise); authorization.mode Webhook: a SubjectAccessReview
  for verb get on nodes/<subresource> of this node, the subresource "proxy" for /containerLogs
  (GetRequestAttributes: "log" is /logs only), 403 "Forbidden (user=..., verb=get, resource=nodes,
  subresource(s)=[proxy])" when denied. The reviews are made with the node's own credentials (system:node
  may create them).
- pkg/kubelet/server/server.go getContainerLogs: /containerLogs/{namespace}/{pod}/{container}, query as
  PodLogOptions (previous, timestamps, tailLines, limitBytes, sinceSeconds); a pod not on this node 404,
  a container not in the pod 404; the log lines of the CRI file (pkg/kubelet/kuberuntime/logs/logs.go
  ReadLogs: P(artial) records joined, the message only, or "<time> <message>" with timestamps).

Not done: follow (a 400 says so), exec/attach/portForward, /stats, /metrics, /pods, /logs.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
import urllib.parse
from pathlib import Path

from tests.peers.httpserver import QuietHTTPServer


def self_signed(cert_dir: Path, host: str) -> tuple[Path, Path]:
    """<certDir>/kubelet.crt and kubelet.key, made once (certutil.GenerateSelfSignedCertKey's names)."""
    crt, key = cert_dir / "kubelet.crt", cert_dir / "kubelet.key"
    if crt.exists() and key.exists():
        return crt, key
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{host}@{int(time.time())}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(k, hashes.SHA256())
    )
    cert_dir.mkdir(parents=True, exist_ok=True)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key.touch(mode=0o600)
    key.write_bytes(
        k.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return crt, key


def cri_lines(text: str) -> list[tuple[str, str, str]]:
    """(time, stream, message) of each whole log line; P(artial) records joined to the next F."""
    out, pending = [], {}
    for raw in text.splitlines():
        parts = raw.split(" ", 3)
        if len(parts) < 3:
            continue
        ts, stream, tag = parts[:3]
        msg = parts[3] if len(parts) == 4 else ""
        if tag == "P":
            pending[stream] = pending.get(stream, "") + msg
            continue
        out.append((ts, stream, pending.pop(stream, "") + msg))
    return out


def render_logs(text: str, query: dict[str, str], now: float | None = None) -> bytes:
    """The body of /containerLogs for a CRI log file and PodLogOptions."""
    import calendar

    lines = cri_lines(text)
    if query.get("sinceSeconds"):
        since = (now or time.time()) - int(query["sinceSeconds"])
        lines = [x for x in lines if calendar.timegm(time.strptime(x[0][:19], "%Y-%m-%dT%H:%M:%S")) >= since]
    if query.get("tailLines") not in (None, ""):
        n = int(query["tailLines"])
        lines = lines[-n:] if n else []
    timestamps = query.get("timestamps") in ("true", "1")
    body = "".join(f"{ts} {msg}\n" if timestamps else f"{msg}\n" for ts, _, msg in lines).encode()
    if query.get("limitBytes"):
        body = body[: int(query["limitBytes"])]
    return body


class KubeletServer:
    def __init__(
        self, node: str, client, config: dict, cert_dir: Path, pods, log_dir: Path = Path("/var/log/pods"), log=print
    ):
        """pods() -> the API's pods bound to this node (the kubelet's latest list)."""
        self.node, self.client, self.pods, self.log_dir, self.log = node, client, pods, log_dir, log
        authn = config.get("authentication") or {}
        self.client_ca = ((authn.get("x509") or {}).get("clientCAFile")) or ""
        self.anonymous = bool((authn.get("anonymous") or {}).get("enabled", False))
        self.webhook_authn = bool((authn.get("webhook") or {}).get("enabled", True))
        self.authz_mode = (config.get("authorization") or {}).get("mode", "Webhook")
        self.port = int(config.get("port") or 10250)
        self.address = config.get("address") or "0.0.0.0"
        crt, key = (
            (Path(config["tlsCertFile"]), Path(config["tlsPrivateKeyFile"]))
            if config.get("tlsCertFile")
            else self_signed(cert_dir, node)
        )
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(crt), str(key))
        if self.client_ca:
            self.ctx.load_verify_locations(self.client_ca)
            self.ctx.verify_mode = ssl.CERT_OPTIONAL
        self.server = None

    # -- authentication and authorization ----------------------------------------------------------
    def user_of(self, peer_cert: dict | None, headers) -> dict | None:
        if peer_cert:  # verified against clientCAFile by the TLS handshake
            subject = [kv for rdn in peer_cert.get("subject", ()) for kv in rdn]
            cn = next((v for k, v in subject if k == "commonName"), "")
            return {"username": cn, "groups": [v for k, v in subject if k == "organizationName"] + ["system:authenticated"]}
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer ") and self.webhook_authn:
            review = self.client.request(
                "POST",
                "/apis/authentication.k8s.io/v1/tokenreviews",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": auth[7:].strip()}},
            )
            st = review.get("status") or {}
            if st.get("authenticated"):
                return st["user"]
            return None
        if self.anonymous:
            return {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
        return None

    def allowed(self, user: dict, verb: str, subresource: str) -> bool:
        if self.authz_mode == "AlwaysAllow":
            return True
        review = self.client.request(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": user.get("username"),
                    "groups": user.get("groups") or [],
                    "uid": user.get("uid", ""),
                    "extra": user.get("extra") or {},
                    "resourceAttributes": {
                        "verb": verb,
                        "version": "v1",
                        "resource": "nodes",
                        "subresource": subresource,
                        "name": self.node,
                    },
                },
            },
        )
        return bool((review.get("status") or {}).get("allowed"))

    # -- handlers ------------------------------------------------------------------------------------
    def container_logs(self, ns: str, pod_name: str, container: str, query: dict) -> tuple[int, bytes]:
        pod = next((p for p in self.pods() if p["metadata"]["namespace"] == ns and p["metadata"]["name"] == pod_name), None)
        if pod is None:
            return 404, f"pod {ns}/{pod_name} not found".encode()
        names = [c["name"] for c in (pod["spec"].get("initContainers") or []) + pod["spec"].get("containers", [])]
        if container not in names:
            return 404, f"container {container} is not valid for pod {pod_name}".encode()
        if query.get("follow") in ("true", "1"):
            return 400, b"osk8s kubelet stand-in: follow is not supported"
        d = self.log_dir / f"{ns}_{pod_name}_{pod['metadata']['uid']}" / container
        files = sorted(d.glob("*.log"), key=lambda f: int(f.stem)) if d.is_dir() else []
        if query.get("previous") in ("true", "1"):
            files = files[:-1]
            if not files:
                return 400, f'previous terminated container "{container}" in pod "{pod_name}" not found'.encode()
        if not files:
            return 400, f'container "{container}" in pod "{pod_name}" is waiting to start: ContainerCreating'.encode()
        return 200, render_logs(files[-1].read_text(errors="replace"), query)

    def start(self) -> KubeletServer:
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                try:
                    user = srv.user_of(self.connection.getpeercert(), self.headers)
                    if user is None:
                        return self.reply(401, b"Unauthorized")
                    sub = "healthz" if u.path.rstrip("/") == "/healthz" else "proxy"
                    if sub != "healthz" and not srv.allowed(user, "get", sub):
                        return self.reply(
                            403,
                            f"Forbidden (user={user.get('username')}, verb=get, resource=nodes, "
                            f"subresource(s)=[{sub}])".encode(),
                        )
                    parts = u.path.strip("/").split("/")
                    if sub == "healthz":
                        return self.reply(200, b"ok")
                    if parts[0] == "containerLogs" and len(parts) == 4:
                        code, body = srv.container_logs(parts[1], parts[2], parts[3], dict(urllib.parse.parse_qsl(u.query)))
                        return self.reply(code, body)
                    return self.reply(404, b"404 page not found")
                except Exception as exc:  # noqa: BLE001 (the API server shows it to the user)
                    return self.reply(500, f"osk8s kubelet stand-in: {exc.__class__.__name__}: {exc}".encode())

        class Server(QuietHTTPServer):
            daemon_threads = True
            address_family = socket.AF_INET

            def get_request(self):
                sock, addr = super().get_request()
                sock.settimeout(60)  # the handshake happens in the handler's thread, on its first read
                return srv.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

        self.server = Server((self.address, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, name="kubelet-server", daemon=True).start()
        self.log(
            f"kubelet server on https://{self.address}:{self.port} (client CA {self.client_ca or 'none'}, "
            f"authorization {self.authz_mode})"
        )
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
