"""kube-proxy stand-in: ClusterIP Services answered by a userspace TCP proxy (there is no iptables, nftables
or IPVS data plane to program here).

It runs as the pod of kubeadm's kube-proxy DaemonSet (the pod runner maps registry.k8s.io/kube-proxy to
ARGV below), so it takes kube-proxy's own command line, `--config=/var/lib/kube-proxy/config.conf
--hostname-override=$(NODE_NAME)`, reads the KubeProxyConfiguration kubeadm wrote into the kube-proxy
ConfigMap, and the kubeconfig that names (tokenFile = the pod's ServiceAccount token): the RBAC kubeadm
gives kube-proxy (system:node-proxier) is what it gets.

What it follows (k8s.io/kubernetes v1.37.2, pkg/proxy and cmd/kube-proxy/app):
- informers as cmd/kube-proxy/app/server.go makes them: Services with `!service.kubernetes.io/service-proxy-name`
  and `spec.clusterIP!=None`, EndpointSlices with `!service.kubernetes.io/headless`; its own Node read first.
- endpoints as pkg/proxy/endpointslicecache.go reads them: the first address, ready when `conditions.ready` is
  unset or true, the slice port matched by the Service port's name; internalTrafficPolicy Local keeps the
  endpoints of this node only.
- a Service port without a ready endpoint rejects connections (the iptables proxier's REJECT): nothing
  listens on it.
- ClusterIPs on a local interface, as the IPVS proxier puts them on its dummy kube-ipvs0 (pkg/proxy/ipvs):
  here on `lo` of the node's network namespace, with a listener on ClusterIP:port that forwards each
  connection to an endpoint (round robin; the next one when a connection fails, as the old userspace
  proxier did).
Not done: UDP/SCTP, NodePort, externalIPs and LoadBalancer IPs, session affinity, topology hints, the
healthz/metrics servers. On SIGTERM it removes the addresses it added (kube-proxy leaves its rules).
"""

from __future__ import annotations

import ipaddress
import itertools
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file (the pod runner's argv prefix): the repository on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.peers.k8s.pods import ApiError, KubeClient, python_standin  # noqa: E402

ARGV = python_standin(Path(__file__))
SERVICE_SELECTOR = "!service.kubernetes.io/service-proxy-name"
SLICE_SELECTOR = "!service.kubernetes.io/headless"


def log(msg: str) -> None:
    t = time.time()
    print(
        f"I{time.strftime('%m%d %H:%M:%S', time.localtime(t))}.{int(t % 1 * 1e6):06d} proxy.py] {msg}",
        file=sys.stderr,
        flush=True,
    )


def parse_args(argv: list[str]) -> dict:
    """kube-proxy's flags this stand-in understands; any other is an error, as pflag makes it."""
    out = {"config": None, "hostname-override": None}
    for a in argv:
        name, _, value = a.lstrip("-").partition("=")
        if not a.startswith("--") or name not in (*out, "v"):
            raise SystemExit(f"Error: unknown flag: {a} (osk8s kube-proxy stand-in: --config, --hostname-override, --v)")
        out[name] = value
    return out


def load_config(path: str) -> dict:
    import yaml

    cfg = yaml.safe_load(Path(path).read_text())
    if cfg.get("apiVersion") != "kubeproxy.config.k8s.io/v1alpha1" or cfg.get("kind") != "KubeProxyConfiguration":
        raise SystemExit(
            f"failed to load kube-proxy config {path}: not a kubeproxy.config.k8s.io/v1alpha1 "
            f"KubeProxyConfiguration ({cfg.get('apiVersion')}/{cfg.get('kind')})"
        )
    return cfg


class Proxier:
    def __init__(self, client: KubeClient, node: str):
        self.client, self.node = client, node
        self.services: dict[str, dict] = {}
        self.slices: dict[str, dict] = {}
        self.listeners: dict[tuple[str, int], Listener] = {}
        self.addresses: set[str] = set()
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self.stop = threading.Event()

    # -- informers --------------------------------------------------------------------------------
    def informer(self, path: str, store: dict, **query) -> None:
        while not self.stop.is_set():
            try:
                listing = self.client.get(path, **query)
                with self.lock:
                    store.clear()
                    for o in listing["items"]:
                        store[f"{o['metadata']['namespace']}/{o['metadata']['name']}"] = o
                self.changed.set()
                rv = listing["metadata"]["resourceVersion"]
                while not self.stop.is_set():
                    for kind, o in self.client.watch(
                        path, resourceVersion=rv, timeoutSeconds=300, allowWatchBookmarks="true", **query
                    ):
                        if kind == "ERROR":
                            raise ApiError(o.get("code", 500), o, "WATCH", path)
                        rv = o["metadata"]["resourceVersion"]
                        if kind == "BOOKMARK":
                            continue
                        key = f"{o['metadata']['namespace']}/{o['metadata']['name']}"
                        with self.lock:
                            if kind == "DELETED":
                                store.pop(key, None)
                            else:
                                store[key] = o
                        self.changed.set()
            except (ApiError, OSError, ValueError) as e:
                log(f"{path}: {e}; listing again")
                self.stop.wait(2)

    # -- rules ------------------------------------------------------------------------------------
    def desired(self) -> dict[tuple[str, int], list[tuple[str, int]]]:
        with self.lock:
            services, slices = list(self.services.values()), list(self.slices.values())
        by_service: dict[str, list[dict]] = {}
        for s in slices:
            name = (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
            if name and s.get("addressType") in ("IPv4", "IPv6"):
                by_service.setdefault(f"{s['metadata']['namespace']}/{name}", []).append(s)
        out = {}
        for svc in services:
            spec = svc["spec"]
            if spec.get("type") == "ExternalName":
                continue
            key = f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
            local_only = spec.get("internalTrafficPolicy") == "Local"
            for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
                if not ip or ip == "None":
                    continue
                for port in spec.get("ports") or []:
                    if port.get("protocol", "TCP") != "TCP":
                        continue
                    eps = []
                    for sl in by_service.get(key, []):
                        num = next(
                            (
                                p.get("port")
                                for p in sl.get("ports") or []
                                if (p.get("name") or "") == (port.get("name") or "") and p.get("protocol", "TCP") == "TCP"
                            ),
                            None,
                        )
                        if num is None:
                            continue
                        for ep in sl.get("endpoints") or []:
                            if not ep.get("addresses"):
                                continue
                            if (ep.get("conditions") or {}).get("ready") is False:
                                continue
                            if local_only and ep.get("nodeName") != self.node:
                                continue
                            eps.append((ep["addresses"][0], int(num)))
                    if eps:
                        out[(ip, int(port["port"]))] = sorted(set(eps))
        return out

    def sync(self) -> None:
        want = self.desired()
        ips = {ip for ip, _ in want}
        for ip in sorted(ips - self.addresses):
            self.ip("add", ip)
            self.addresses.add(ip)
        for key in list(self.listeners):
            if key not in want:
                self.listeners.pop(key).close()
                log(f"{key[0]}:{key[1]}: no ready endpoint; closed")
        for key, eps in want.items():
            if key in self.listeners:
                self.listeners[key].endpoints = eps
                continue
            try:
                self.listeners[key] = Listener(key, eps)
                log(f"{key[0]}:{key[1]} -> {', '.join(f'{a}:{p}' for a, p in eps)}")
            except OSError as e:
                log(f"{key[0]}:{key[1]}: cannot listen: {e}")
        for ip in sorted(self.addresses - ips):
            self.ip("del", ip)
            self.addresses.discard(ip)

    @staticmethod
    def ip(action: str, address: str) -> None:
        bits = 32 if ipaddress.ip_address(address).version == 4 else 128
        proc = subprocess.run(["ip", "addr", action, f"{address}/{bits}", "dev", "lo"], capture_output=True, text=True)
        if proc.returncode and "File exists" not in proc.stderr and "Cannot assign" not in proc.stderr:
            log(f"ip addr {action} {address}: {proc.stderr.strip()}")

    def run(self) -> None:
        for path, store, query in (
            (
                "/api/v1/services",
                self.services,
                {"labelSelector": SERVICE_SELECTOR, "fieldSelector": "spec.clusterIP!=None"},
            ),
            ("/apis/discovery.k8s.io/v1/endpointslices", self.slices, {"labelSelector": SLICE_SELECTOR}),
        ):
            threading.Thread(target=self.informer, args=(path, store), kwargs=query, daemon=True).start()
        while not self.stop.is_set():
            if self.changed.wait(timeout=1):
                self.changed.clear()
                self.sync()

    def shutdown(self) -> None:
        self.stop.set()
        for lst in self.listeners.values():
            lst.close()
        for ip in self.addresses:
            self.ip("del", ip)


class Listener:
    def __init__(self, key: tuple[str, int], endpoints: list[tuple[str, int]]):
        self.key, self.endpoints = key, endpoints
        family = socket.AF_INET6 if ":" in key[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(key)
        self.sock.listen(128)
        self.rr = itertools.count()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.relay, args=(client,), daemon=True).start()

    def relay(self, client: socket.socket) -> None:
        eps = list(self.endpoints)
        start = next(self.rr)
        for i in range(len(eps)):
            addr = eps[(start + i) % len(eps)]
            try:
                upstream = socket.create_connection(addr, timeout=5)
                upstream.settimeout(None)
                break
            except OSError as e:
                log(f"{self.key[0]}:{self.key[1]}: endpoint {addr[0]}:{addr[1]}: {e}")
        else:
            client.close()
            return
        t = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        t.start()
        pipe(client, upstream)
        t.join()
        client.close()
        upstream.close()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not args["config"]:
        raise SystemExit("osk8s kube-proxy stand-in: --config is required (kubeadm's DaemonSet passes it)")
    cfg = load_config(args["config"])
    kubeconfig = (cfg.get("clientConnection") or {}).get("kubeconfig")
    if not kubeconfig:
        raise SystemExit("osk8s kube-proxy stand-in: clientConnection.kubeconfig is required (no in-cluster fallback)")
    client = KubeClient.from_kubeconfig(Path(kubeconfig), user_agent="kube-proxy/osk8s-stand-in")
    node = args["hostname-override"] or cfg.get("hostnameOverride") or socket.gethostname()
    while True:  # kube-proxy waits for its Node (pkg/proxy: node IPs and topology come from it)
        try:
            client.get(f"/api/v1/nodes/{node}")
            break
        except (ApiError, OSError) as e:
            log(f"waiting for node {node}: {e}")
            time.sleep(2)
    proxier = Proxier(client, node)

    def term(signum, frame):
        log(f"signal {signum}: removing the ClusterIPs this proxy added")
        proxier.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, term)
    signal.signal(signal.SIGINT, term)
    log(f"osk8s kube-proxy stand-in on node {node} (mode {cfg.get('mode') or 'default'}: userspace here)")
    proxier.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
