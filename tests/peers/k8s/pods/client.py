"""A small Kubernetes API client (standard library only: the Python stand-ins the runner starts in
their containers use it too).

Follows client-go: tools/clientcmd (the kubeconfig's current context; relative file paths are
relative to the kubeconfig; exec plugins and auth-providers refused here), transport (a bearer
token file re-read, so a refreshed ServiceAccount token is picked up), rest (errors as
metav1.Status), and the watch stream of apimachinery pkg/watch (one JSON event per line).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import threading
import time
import urllib.parse
from pathlib import Path


class ApiError(Exception):
    def __init__(self, status: int, body: dict | str, method: str, path: str):
        self.status = status
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        self.reason = self.body.get("reason", "")
        super().__init__(f"{method} {path}: HTTP {status} {self.reason}: {self.body.get('message', '')}".strip())


class KubeClient:
    """HTTPS to the API server with a client certificate or a bearer token (tokenFile re-read on each
    request, as client-go re-reads it, so a refreshed ServiceAccount token is picked up)."""

    def __init__(
        self,
        server: str,
        *,
        ca_data: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        token: str | None = None,
        token_file: str | None = None,
        user_agent: str = "osk8s-pods",
    ):
        u = urllib.parse.urlsplit(server)
        if u.scheme != "https":
            raise ValueError(f"refusing a non-https API server {server!r}")
        self.host, self.port, self.prefix = u.hostname, u.port or 443, u.path.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=ca_file, cadata=ca_data)
        if cert_file:
            self.ctx.load_cert_chain(cert_file, key_file)
        self.token, self.token_file, self.user_agent = token, token_file, user_agent
        self._local = threading.local()

    @classmethod
    def from_kubeconfig(cls, path: Path, private_dir: Path | None = None, user_agent: str = "osk8s-pods") -> KubeClient:
        """The current context of a kubeconfig. Embedded client keys are written to private_dir (0600)
        since ssl loads them from files; exec plugins and auth-providers are refused."""
        import yaml

        path = Path(path)
        cfg = yaml.safe_load(path.read_text())
        ctx_name = cfg.get("current-context") or cfg["contexts"][0]["name"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next((u["user"] for u in cfg.get("users") or [] if u["name"] == ctx.get("user")), {}) or {}
        if "exec" in user or "auth-provider" in user:
            raise ValueError(f"{path}: exec plugins and auth-providers are not supported")

        def rel(p):
            return str(p if Path(p).is_absolute() else path.parent / p)

        kw: dict = {"user_agent": user_agent}
        if "certificate-authority-data" in cluster:
            kw["ca_data"] = base64.b64decode(cluster["certificate-authority-data"]).decode()
        elif "certificate-authority" in cluster:
            kw["ca_file"] = rel(cluster["certificate-authority"])
        if "client-certificate-data" in user:
            if private_dir is None:
                raise ValueError("an embedded client key needs a private directory to be loaded from")
            private_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            pem = private_dir / "client.pem"
            fd = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(
                    base64.b64decode(user["client-certificate-data"]) + b"\n" + base64.b64decode(user["client-key-data"])
                )
            kw["cert_file"] = str(pem)
        elif "client-certificate" in user:
            kw["cert_file"], kw["key_file"] = rel(user["client-certificate"]), rel(user["client-key"])
        if "token" in user:
            kw["token"] = user["token"]
        elif "tokenFile" in user:
            kw["token_file"] = rel(user["tokenFile"])
        return cls(cluster["server"], **kw)

    def _connection(self, timeout: float) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _headers(self, content_type: str | None) -> dict:
        h = {"Accept": "application/json", "User-Agent": self.user_agent}
        token = self.token
        if self.token_file:
            token = Path(self.token_file).read_text().strip()
        if token:
            h["Authorization"] = f"Bearer {token}"
        if content_type:
            h["Content-Type"] = content_type
        return h

    def request(
        self,
        method: str,
        path: str,
        body=None,
        *,
        query: dict | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> dict:
        url = self.prefix + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (0, 1):
            conn = self._connection(timeout)
            try:
                conn.request(method, url, body=data, headers=self._headers(content_type if data is not None else None))
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        try:
            obj = json.loads(raw) if raw else {}
        except ValueError:
            obj = {"message": raw.decode(errors="replace")[:500]}
        if resp.status >= 400:
            raise ApiError(resp.status, obj, method, path)
        return obj

    def get(self, path: str, **query) -> dict:
        return self.request("GET", path, query=query or None)

    def watch(self, path: str, **query):
        """Yields (type, object) of a watch; returns when the server ends it (timeoutSeconds)."""
        query = {**query, "watch": "1"}
        conn = http.client.HTTPSConnection(
            self.host, self.port, context=self.ctx, timeout=float(query.get("timeoutSeconds", 300)) + 30
        )
        try:
            conn.request("GET", self.prefix + path + "?" + urllib.parse.urlencode(query), headers=self._headers(None))
            resp = conn.getresponse()
            if resp.status >= 400:
                raise ApiError(resp.status, json.loads(resp.read() or b"{}"), "WATCH", path)
            while line := resp.readline():
                if line.strip():
                    ev = json.loads(line)
                    yield ev["type"], ev["object"]
        finally:
            conn.close()


def rfc3339(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def parse_time(s: str) -> float:
    import calendar

    return calendar.timegm(time.strptime(s.replace(".000000", "")[:19], "%Y-%m-%dT%H:%M:%S"))


# ---------------------------------------------------------------------------------------------------
