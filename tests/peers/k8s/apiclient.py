"""A minimal Kubernetes API client for the node stand-ins: a kubeconfig's server, CA and
credentials (client certificate or bearer token), JSON in and out. Standard library only, so the
kubelet stand-in starts fast and depends on nothing the node would not have.

Reads kubeconfigs as client-go's clientcmd does for the fields kubeadm and the kubelet write:
certificate-authority(-data), client-certificate(-data), client-key(-data), token; relative file
paths are relative to the kubeconfig's directory (clientcmd's ResolvePaths). The upstream code it
follows: k8s.io/client-go tools/clientcmd (loader.go, client_config.go)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path


class ApiError(Exception):
    def __init__(self, status: int, body: bytes, method: str, path: str):
        self.status, self.body = status, body
        super().__init__(f"{method} {path}: {status}: {body[:300]!r}")


@dataclass
class Kubeconfig:
    server: str
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    cert_file: str | None = None  # kept as paths: the kubelet's rotated certificate is re-read from them
    key_file: str | None = None
    token: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike) -> Kubeconfig:
        import yaml

        path = Path(path)
        doc = yaml.safe_load(path.read_text()) or {}
        ctx_name = doc.get("current-context")
        contexts = {c["name"]: c.get("context") or {} for c in doc.get("contexts") or []}
        ctx = contexts.get(ctx_name) or (next(iter(contexts.values())) if contexts else {})
        clusters = {c["name"]: c.get("cluster") or {} for c in doc.get("clusters") or []}
        users = {u["name"]: u.get("user") or {} for u in doc.get("users") or []}
        cluster, user = clusters.get(ctx.get("cluster"), {}), users.get(ctx.get("user"), {})
        if not cluster.get("server"):
            raise ValueError(f"{path}: no server in the current context")

        def resolve(p):
            return str(p if os.path.isabs(p) else path.parent / p) if p else None

        def data(key):
            if user.get(f"{key}-data"):
                return base64.b64decode(user[f"{key}-data"])
            return None

        ca = (
            base64.b64decode(cluster["certificate-authority-data"])
            if cluster.get("certificate-authority-data")
            else (
                Path(resolve(cluster["certificate-authority"])).read_bytes()
                if cluster.get("certificate-authority")
                else None
            )
        )
        return cls(
            cluster["server"],
            ca,
            data("client-certificate"),
            data("client-key"),
            resolve(user.get("client-certificate")),
            resolve(user.get("client-key")),
            user.get("token"),
        )

    def client_cert_pem(self) -> bytes | None:
        """The client certificate chain (PEM), from data or file (a combined cert+key PEM is fine)."""
        if self.cert_pem:
            return self.cert_pem
        if self.cert_file and os.path.exists(self.cert_file):
            return Path(self.cert_file).read_bytes()
        return None

    def client_key_pem(self) -> bytes | None:
        if self.key_pem:
            return self.key_pem
        if self.key_file and os.path.exists(self.key_file):
            return Path(self.key_file).read_bytes()
        return None


def ssl_context(
    ca_pem: bytes | None, cert_pem: bytes | None = None, key_pem: bytes | None = None, scratch: str | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem.decode() if ca_pem else None)
    if cert_pem and key_pem:
        # the ssl module loads a client key only from a file: a private one that is gone at once
        with tempfile.NamedTemporaryFile("wb", dir=scratch, prefix=".client-", suffix=".pem") as f:
            os.chmod(f.name, 0o600)
            # the kubelet's pair file holds both already (client-go's certificate store writes it so)
            f.write(cert_pem if b"PRIVATE KEY" in cert_pem else cert_pem.rstrip(b"\n") + b"\n" + key_pem)
            f.flush()
            ctx.load_cert_chain(f.name)
    return ctx


class Client:
    """One API server, one identity. A new connection per request (the stand-ins make few)."""

    def __init__(self, kubeconfig: Kubeconfig, scratch: str | None = None, timeout: float = 15):
        self.kc, self.scratch, self.timeout = kubeconfig, scratch, timeout
        u = urllib.parse.urlsplit(kubeconfig.server)
        self.host, self.port = u.hostname, u.port or 443
        self.prefix = u.path.rstrip("/")
        self._ctx: ssl.SSLContext | None = None
        self._ctx_cert: bytes | None = None

    def context(self) -> ssl.SSLContext:
        cert, key = self.kc.client_cert_pem(), self.kc.client_key_pem()
        if self._ctx is None or cert != self._ctx_cert:  # re-read: the kubelet's certificate rotates
            self._ctx, self._ctx_cert = ssl_context(self.kc.ca_pem, cert, key, self.scratch), cert
        return self._ctx

    def connection(self, timeout: float | None = None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, context=self.context(), timeout=self.timeout if timeout is None else timeout
        )

    def headers(self) -> dict:
        h = {"Accept": "application/json", "User-Agent": "osk8s-kubelet-standin"}
        if self.kc.token:
            h["Authorization"] = f"Bearer {self.kc.token}"
        return h

    def raw(self, method: str, path: str, body=None, content_type: str = "application/json", query=None):
        """(status, body bytes); transport errors raise OSError."""
        url = self.prefix + path + (("?" + urllib.parse.urlencode(query)) if query else "")
        headers = self.headers()
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        conn = self.connection()
        try:
            conn.request(method, url, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (http.client.HTTPException, ssl.SSLError) as exc:
            raise OSError(f"{method} {path}: {exc.__class__.__name__}: {exc}") from None
        finally:
            conn.close()

    def request(
        self, method: str, path: str, body=None, content_type: str = "application/json", query=None, ok_missing: bool = False
    ):
        """The JSON answer; None for 404 when ok_missing; ApiError for any other status >= 400."""
        status, data = self.raw(method, path, body, content_type, query)
        if status == 404 and ok_missing:
            return None
        if status >= 400:
            raise ApiError(status, data, method, path)
        return json.loads(data) if data else {}
