"""The data plane behind the floating IPs: a stand-in for what carries a request from a floating IP to a
pod on a real cloud (Neutron's floating-IP NAT, the amphora's haproxy, the node's security groups,
kube-proxy's NodePort, the pod), because none of it runs here: Octavia's amphora driver is noop (no
amphora VM), Neutron has no agents, the pods are kwok's (no process answers on their IPs). The
upstream code it follows: octavia/common/jinja/haproxy (listener, L7 policy and pool choice),
kubernetes pkg/proxy/iptables (the NodePort, its REJECT without endpoints), agnhost serve-hostname
(the answer).

It follows the REAL objects, read each time a request comes in, and answers only when the real path
would carry the request:
- a listener exists for each ACTIVE load balancer in Octavia (PENDING_UPDATE too: the amphora serves on
  while Octavia updates it) with a floating IP on its VIP port: the
  floating IP is put on `lo` of the namespace this runs in (the gateway's: where verify's curl runs,
  as on the DevStack VM), with a socket on <floating IP>:<listener port> per listener; an address the
  cloud no longer has is taken away (the test keeps the rest of the floating range unreachable);
- the listener's pool (HTTP listeners: the first L7 policy by position whose rules all match the request,
  octavia/common/jinja/haproxy; else the default pool; none: haproxy's 503);
- each pool member is a usable backend when its address is a node's InternalIP (the Kubernetes API),
  a Service has that NodePort (member protocol_port), and the security groups of the node's Neutron
  port let TCP to that port in from the load balancer's VIP (osk8s_tasks.verify.octavia.rule_allows, the
  same rule reading the tool's diagnosis uses); the member's admin_state_up counts;
- with a health monitor on the pool, haproxy sends only to members whose checks pass (the usable ones);
  without one, round robin over all members, and a request given to an unusable member fails;
- a usable backend answers as agnhost serve-hostname does (test/images/agnhost/serve-hostname: HTTP 200,
  the pod's name, no newline): a pod behind the Service's ready endpoints (EndpointSlices, round robin);
  no ready endpoint: kube-proxy rejects the connection.
A failed request is what a client sees from haproxy: for a TCP listener the connection closes with no
answer; for an HTTP listener, 503 with haproxy's page.

    python -m tests.peers.dataplane --kubeconfig ADMIN_CONF [--cloud admin] [--interval 1]
      (run inside the gateway's network namespace; OS_CLIENT_CONFIG_FILE names the clouds.yaml)
    DataPlane(netns, kubeconfig, clouds_yaml).start() / .status() / .stop()   # the launcher
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# an amphora serves once its load balancer is ACTIVE, and goes on serving while Octavia updates it
SERVING = ("ACTIVE", "PENDING_UPDATE")
HAPROXY_503 = (
    b"<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n"
)


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} dataplane] {msg}", flush=True)


# ---- the decisions (pure) --------------------------------------------------------------------------


@dataclass
class Backend:
    """A pool member as the data path sees it."""

    address: str
    port: int
    usable: bool
    why: str = ""
    service: str = ""  # namespace/name of the Service owning the NodePort


def rule_matches(rule: dict, path: str, host: str) -> bool:
    """One L7 rule (PATH/HOST_NAME; STARTS_WITH, EQUAL_TO, REGEX, ENDS_WITH, CONTAINS; invert)."""
    import re

    subject = {"PATH": path, "HOST_NAME": host}.get(rule["type"])
    if subject is None:
        return False  # header/cookie/file-type rules: not read here
    value, compare = rule["value"], rule["compare_type"]
    hit = {
        "STARTS_WITH": subject.startswith(value),
        "EQUAL_TO": subject == value,
        "ENDS_WITH": subject.endswith(value),
        "CONTAINS": value in subject,
    }.get(compare)
    if compare == "REGEX":
        hit = re.search(value, subject) is not None
    return bool(hit) != bool(rule.get("invert"))


def pick_pool(listener: dict, policies: list[dict], path: str, host: str) -> str | None:
    """The pool an HTTP request goes to: L7 policies by position (REDIRECT_TO_POOL whose rules all match),
    else the listener's default pool. A REJECT policy that matches: no pool."""
    for policy in sorted(policies, key=lambda p: p["position"]):
        if policy.get("admin_state_up") is False or not policy["rules"]:
            continue
        if all(rule_matches(r, path, host) for r in policy["rules"]):
            if policy["action"] == "REDIRECT_TO_POOL":
                return policy["redirect_pool_id"]
            if policy["action"] == "REJECT":
                return None
    return listener.get("default_pool_id")


def backend(member: dict, vip: str, nodes: dict[str, str], node_ports: dict[int, str], rules_of, allows) -> Backend:
    """nodes: InternalIP -> node name; node_ports: NodePort -> "ns/name"; rules_of(address) -> the
    security-group rules of the node's port; allows(rule, port, source) -> bool."""
    a, p = member["address"], member["protocol_port"]
    if member.get("admin_state_up") is False:
        return Backend(a, p, False, "member disabled")
    if a not in nodes:
        return Backend(a, p, False, f"{a} is no node's InternalIP")
    if p not in node_ports:
        return Backend(a, p, False, f"no Service has NodePort {p}")
    if not any(allows(r, p, vip) for r in rules_of(a)):
        return Backend(a, p, False, f"the security groups of {nodes[a]} drop tcp {p} from {vip}")
    return Backend(a, p, True, service=node_ports[p])


# ---- the process -----------------------------------------------------------------------------------


@dataclass
class Listening:
    sock: socket.socket
    lb_id: str
    listener_id: str
    protocol: str


class Plane:
    def __init__(self, conn, kube, interval: float = 1.0):
        self.conn, self.kube, self.interval = conn, kube, interval
        self.listening: dict[tuple[str, int], Listening] = {}
        self.addresses: set[str] = set()
        self.stop = threading.Event()
        self.rr: dict[str, itertools.count] = {}
        self.lock = threading.Lock()

    # -- what should listen
    def wanted(self) -> dict[tuple[str, int], tuple[str, str, str]]:
        lb_api, net = self.conn.load_balancer, self.conn.network
        fips = {f.port_id: f.floating_ip_address for f in net.ips() if f.port_id}
        out = {}
        for lb in lb_api.load_balancers():
            if lb.provisioning_status not in SERVING or lb.vip_port_id not in fips:
                continue
            for listener in lb_api.listeners(load_balancer_id=lb.id):
                out[(fips[lb.vip_port_id], listener.protocol_port)] = (lb.id, listener.id, listener.protocol)
        return out

    def reconcile(self) -> None:
        want = self.wanted()
        for key in [k for k in self.listening if k not in want or self.listening[k].listener_id != want[k][1]]:
            self.listening.pop(key).sock.close()
            log(f"closed {key[0]}:{key[1]}")
        addresses = {ip for ip, _ in want}
        for ip in addresses - self.addresses:
            subprocess.run(["ip", "addr", "replace", f"{ip}/32", "dev", "lo"], check=True)
        for ip in self.addresses - addresses:
            subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", "lo"], check=False)
        self.addresses = addresses
        for key, (lb_id, listener_id, protocol) in want.items():
            if key in self.listening:
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(key)
            sock.listen(64)
            self.listening[key] = Listening(sock, lb_id, listener_id, protocol)
            threading.Thread(target=self.accept, args=(key, self.listening[key]), daemon=True).start()
            log(f"listening on {key[0]}:{key[1]} ({protocol}, load balancer {lb_id})")

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.reconcile()
            except Exception as exc:  # noqa: BLE001 (a cloud that hiccups: try again)
                log(f"reconcile: {exc.__class__.__name__}: {exc}")
            self.stop.wait(self.interval)
        for lst in self.listening.values():
            lst.sock.close()
        for ip in self.addresses:
            subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", "lo"], check=False)

    def accept(self, key, lst: Listening) -> None:
        while not self.stop.is_set():
            try:
                client, _ = lst.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(client, key, lst), daemon=True).start()

    # -- one request
    def handle(self, client: socket.socket, key, lst: Listening) -> None:
        client.settimeout(10)
        try:
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = client.recv(4096)
                if not chunk:
                    return
                data += chunk
            head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
            method, path = (head[0].split(" ") + ["", ""])[:2]
            host = next((h.split(":", 1)[1].strip() for h in head[1:] if h.lower().startswith("host:")), "")
            try:
                answer, why = self.decide(lst, path or "/", host)
            except Exception as exc:  # noqa: BLE001 (a cloud or API hiccup: the request fails, visibly in the log)
                answer, why = None, f"stand-in error: {exc.__class__.__name__}: {exc}"
            status = answer.split(b"\r\n", 1)[0].decode() if answer else "closed unanswered"
            log(f"{key[0]}:{key[1]} {method} {path} -> {status} ({why})")
            if answer is None:
                return  # haproxy found no backend to connect to: the connection closes unanswered
            client.sendall(answer)
        except OSError:
            pass
        finally:
            client.close()

    def decide(self, lst: Listening, path: str, host: str):
        from osk8s_tasks.verify.octavia import rule_allows

        lb_api, net = self.conn.load_balancer, self.conn.network
        lb = lb_api.get_load_balancer(lst.lb_id)
        listener = lb_api.get_listener(lst.listener_id)
        http = lst.protocol in ("HTTP", "TERMINATED_HTTPS")
        if lb.provisioning_status not in SERVING:
            return None, f"load balancer {lb.provisioning_status}"
        pool_id = listener.default_pool_id
        if http:
            policies = [
                {
                    "position": p.position,
                    "action": p.action,
                    "redirect_pool_id": p.redirect_pool_id,
                    "admin_state_up": p.is_admin_state_up,
                    "rules": [
                        {"type": r.type, "compare_type": r.compare_type, "value": r.rule_value, "invert": r.invert}
                        for r in lb_api.l7_rules(p)
                    ],
                }
                for p in lb_api.l7_policies(listener_id=listener.id)
            ]
            pool_id = pick_pool({"default_pool_id": listener.default_pool_id}, policies, path.split("?")[0], host)
        if not pool_id:
            return (self.http(503, HAPROXY_503, "text/html") if http else None), "no pool for the request"
        pool = lb_api.get_pool(pool_id)
        members = [
            {"address": m.address, "protocol_port": m.protocol_port, "admin_state_up": m.is_admin_state_up}
            for m in lb_api.members(pool_id)
        ]
        nodes, node_ports = self.kube_view()
        rules_cache: dict[str, list] = {}

        def rules_of(address):
            if address not in rules_cache:
                port = next(iter(net.ports(fixed_ips=f"ip_address={address}")), None)
                rules_cache[address] = [
                    r
                    for g in (port.security_group_ids if port else []) or []
                    for r in net.security_group_rules(security_group_id=g)
                ]
            return rules_cache[address]

        backends = [backend(m, lb.vip_address, nodes, node_ports, rules_of, rule_allows) for m in members]
        candidates = [b for b in backends if b.usable] if pool.health_monitor_id else backends
        if not candidates:
            why = "; ".join(b.why for b in backends) or "no members"
            return (self.http(503, HAPROXY_503, "text/html") if http else None), why
        with self.lock:
            rr = self.rr.setdefault(pool_id, itertools.count())
            chosen = candidates[next(rr) % len(candidates)]
        if not chosen.usable:
            return (self.http(503, HAPROXY_503, "text/html") if http else None), chosen.why
        pod = self.endpoint(chosen.service)
        if pod is None:
            return (self.http(503, HAPROXY_503, "text/html") if http else None), f"{chosen.service} has no ready endpoint"
        return self.http(
            200, pod.encode(), "text/plain; charset=utf-8"
        ), f"{chosen.address}:{chosen.port} -> {chosen.service}"

    @staticmethod
    def http(code: int, body: bytes, ctype: str) -> bytes:
        reason = {200: "OK", 503: "Service Unavailable"}[code]
        return (
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body

    def kube_view(self) -> tuple[dict[str, str], dict[int, str]]:
        nodes = {}
        for n in self.kube.get("/api/v1/nodes")["items"]:
            for a in n.get("status", {}).get("addresses") or []:
                if a["type"] == "InternalIP":
                    nodes[a["address"]] = n["metadata"]["name"]
        ports = {}
        for s in self.kube.get("/api/v1/services")["items"]:
            if s["spec"].get("type") in ("NodePort", "LoadBalancer"):
                for p in s["spec"].get("ports") or []:
                    if p.get("nodePort") and p.get("protocol", "TCP") == "TCP":
                        ports[p["nodePort"]] = f"{s['metadata']['namespace']}/{s['metadata']['name']}"
        return nodes, ports

    def endpoint(self, service: str) -> str | None:
        ns, name = service.split("/", 1)
        slices = self.kube.get(
            f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices", labelSelector=f"kubernetes.io/service-name={name}"
        )["items"]
        pods = sorted(
            {
                e["targetRef"]["name"]
                for s in slices
                for e in s.get("endpoints") or []
                if (e.get("conditions") or {}).get("ready", True) and (e.get("targetRef") or {}).get("kind") == "Pod"
            }
        )
        if not pods:
            return None
        with self.lock:
            rr = self.rr.setdefault(f"svc:{service}", itertools.count())
            return pods[next(rr) % len(pods)]


def main(argv=None) -> int:
    import openstack

    from tests.peers.k8s.pods import KubeClient

    p = argparse.ArgumentParser(prog="python -m tests.peers.dataplane")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--cloud", default="admin")
    p.add_argument("--interval", type=float, default=1.0)
    args = p.parse_args(argv)
    conn = openstack.connect(cloud=args.cloud)
    state = Path(args.kubeconfig).parent / ".dataplane"
    kube = KubeClient.from_kubeconfig(Path(args.kubeconfig), state, user_agent="osk8s-dataplane")
    plane = Plane(conn, kube, args.interval)
    signal.signal(signal.SIGTERM, lambda *_: plane.stop.set())
    signal.signal(signal.SIGINT, lambda *_: plane.stop.set())
    log(f"started (cloud {args.cloud}, kubeconfig {args.kubeconfig})")
    plane.run()
    log("stopped")
    return 0


class DataPlane:
    """The launcher: the stand-in as a process inside `netns` (it must reach the loopback OpenStack at
    127.0.0.1 there, e.g. through osk8s_tasks/embedded/netfwd.py, and the API server named in the kubeconfig)."""

    def __init__(self, netns: str, kubeconfig: Path, clouds_yaml: Path, log_file: Path, cloud: str = "admin"):
        self.netns, self.kubeconfig, self.clouds_yaml, self.log_file, self.cloud = (
            netns,
            kubeconfig,
            clouds_yaml,
            log_file,
            cloud,
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> DataPlane:
        out = open(self.log_file, "ab")
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(self.clouds_yaml), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                sys.executable,
                "-m",
                "tests.peers.dataplane",
                "--kubeconfig",
                str(self.kubeconfig),
                "--cloud",
                self.cloud,
            ],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
        )
        out.close()
        return self

    def status(self) -> dict:
        return {
            "pid": self.proc.pid if self.proc else None,
            "running": bool(self.proc and self.proc.poll() is None),
            "log": str(self.log_file),
        }

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # `ip netns exec` execs: this is the stand-in itself
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


if __name__ == "__main__":
    sys.exit(main())
