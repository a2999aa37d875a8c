"""Probes (pkg/kubelet/prober/worker.go, prober.go; pkg/probe/tcp, http, exec): readiness starts
False, liveness and startup as upstream; tcpSocket, httpGet (http/https, TLS unchecked, 200-399,
the kube-probe User-Agent, redirects on the same host followed), exec inside the container
(nsenter into its mount namespace and root); thresholds, initialDelaySeconds, periodSeconds,
timeoutSeconds; a liveness or startup failure restarts the container."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import time
import urllib.parse

from tests.peers.k8s.pods.envvars import expand
from tests.peers.k8s.pods.errors import ConfigError
from tests.peers.k8s.pods.state import Ctr

KUBE_PROBE_UA = "kube-probe/1.37"


class Probes:
    """PodWorker's part that runs the containers' probes."""

    # -- probes ------------------------------------------------------------------------------------------
    def run_probes(self) -> None:
        now = time.monotonic()
        for c in self.ctrs:
            for p in c.probes:
                if not c.running or p.on_hold or now < p.next_at:
                    continue
                period = p.spec.get("periodSeconds", 10)
                p.next_at = now + period
                if self.pod["metadata"].get("deletionTimestamp") and p.kind in ("liveness", "startup"):
                    continue
                if time.time() - c.started_at < p.spec.get("initialDelaySeconds", 0):
                    continue
                if (p.kind == "startup") == c.started:
                    continue  # startup probes until started, the others after
                result, output = self.probe(c, p.spec)
                if result == "unknown":
                    continue
                p.run = p.run + 1 if p.last == result else 1
                p.last = result
                threshold = p.spec.get("failureThreshold", 3) if result == "failure" else p.spec.get("successThreshold", 1)
                if result == "failure":
                    self.runner.event(
                        self.pod,
                        "Unhealthy",
                        f"{p.kind.capitalize()} probe failed: {output}".strip(),
                        "Warning",
                        self._field(c),
                    )
                if p.run < threshold:
                    continue
                if p.kind == "readiness":
                    c.ready = result == "success"
                elif p.kind == "startup":
                    p.on_hold, p.run = True, 0
                    if result == "success":
                        c.started = True
                    else:
                        self.kill(c, self._grace(), " (failed startup probe), will be restarted")
                elif result == "failure":  # liveness
                    p.on_hold, p.run = True, 0
                    self.kill(c, self._grace(), " (failed liveness probe), will be restarted")
        for c in self.ctrs:
            if c.running and not any(p.kind == "readiness" for p in c.probes):
                c.ready = c.started  # no readiness probe: ready once started

    def probe(self, c: Ctr, spec: dict) -> tuple[str, str]:
        timeout = spec.get("timeoutSeconds", 1)
        ip = self.runner.node_ip
        for _ in range(3):  # runProbeWithRetries: errors are retried, results are not
            try:
                if "tcpSocket" in spec:
                    port = self._port(spec["tcpSocket"]["port"], c)
                    with socket.create_connection((spec["tcpSocket"].get("host") or ip, port), timeout=timeout):
                        return "success", ""
                if "httpGet" in spec:
                    return self._http_probe(spec["httpGet"], c, ip, timeout)
                if "exec" in spec:
                    return self._exec_probe(spec["exec"]["command"], c, timeout)
                return "unknown", "unsupported probe"
            except ConfigError as e:
                return "unknown", str(e)
            except OSError as e:
                return "failure", f"dial tcp: {e}"
        return "unknown", ""

    @staticmethod
    def _port(port, c: Ctr) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in c.spec.get("ports") or []:
            if p.get("name") == port:
                return p["containerPort"]
        raise ConfigError(f"couldn't find port: {port} in {c.name}")

    def _http_probe(self, g: dict, c: Ctr, ip: str, timeout: float) -> tuple[str, str]:
        """pkg/probe/http: 200 <= code < 400 is success; TLS is not verified; redirects followed."""
        scheme = g.get("scheme", "HTTP").lower()
        host, port, path = g.get("host") or ip, self._port(g["port"], c), g.get("path") or "/"
        headers = {"User-Agent": KUBE_PROBE_UA, "Accept": "*/*"}
        for h in g.get("httpHeaders") or []:
            headers[h["name"]] = h["value"]
        for _ in range(10):
            if scheme == "https":
                ctx = ssl.create_default_context()
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                body = resp.read(10 * 1024)
                location = resp.getheader("Location")
            finally:
                conn.close()
            if resp.status in (301, 302, 303, 307, 308) and location:
                u = urllib.parse.urlsplit(urllib.parse.urljoin(f"{scheme}://{host}:{port}{path}", location))
                if u.hostname != host:  # a redirect elsewhere counts as success (with a warning upstream)
                    return "success", f"probe redirected to {location}"
                scheme, port, path = u.scheme, u.port or port, u.path or "/"
                continue
            if 200 <= resp.status < 400:
                return "success", ""
            return "failure", f"HTTP probe failed with statuscode: {resp.status}: {body[:200].decode(errors='replace')}"
        return "failure", "too many redirects"

    def _exec_probe(self, command: list[str], c: Ctr, timeout: float) -> tuple[str, str]:
        uid, gid, _ = c.user
        argv = [
            "nsenter",
            "--target",
            str(c.proc.pid),
            "--mount",
            "--uts",
            "--root",
            "--wd",
            "--setuid",
            str(uid),
            "--setgid",
            str(gid),
            "--",
            *command,
        ]
        command = [expand(a, c.env) for a in command]  # ExpandContainerCommandOnlyStatic
        try:
            out = subprocess.run(argv, capture_output=True, timeout=timeout, env=c.env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return "failure", f"command {command} timed out"
        text = (out.stdout + out.stderr).decode(errors="replace")[:1024]
        return ("success", text) if out.returncode == 0 else ("failure", text)
