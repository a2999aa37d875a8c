"""The pod runner (tests/peers/k8s/pods/) and the kube-proxy stand-in against a real control plane.

A network namespace of this test's own holds etcd, kube-apiserver, kube-controller-manager and
kube-scheduler, built from their Go modules (osk8s_tasks/embedded/build.py), with the certificates,
kubeconfigs and static pod manifests `kubeadm init phase ...` writes from the kubeadm config osk8s
renders (cluster_render.init_config): each static pod's command is run as written, the binary in
place of the image (a minimal harness: the kubelet stand-in runs static pods for real nodes). A Node
object is registered with the node's own credentials (the kubelet.conf of `kubeadm init phase
kubeconfig kubelet`), its Lease renewed as a kubelet does. Then the pod runner, with those node
credentials, runs what the scheduler binds to the node: kubeadm's kube-proxy DaemonSet (the stand-in)
and k8s-keystone-auth exactly as keystone_deploy.manifests() renders it. No OpenStack is needed: the
webhook's Keystone is a dummy HTTP server on this machine's loopback, reached from the namespace
through osk8s_tasks/embedded/netfwd.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import yaml

from osk8s_tasks.cluster import render as cluster_render
from osk8s_tasks.core import config
from osk8s_tasks.embedded import build, netfwd
from osk8s_tasks.verify.keystone import deploy as keystone_deploy
from osk8s_tasks.verify.keystone import pki
from tests.conftest import require_root_tools
from tests.peers.httpserver import QuietHTTPServer
from tests.peers.k8s import proxy
from tests.peers.k8s.pods import ApiError, KubeClient, PodRunner

pytestmark = pytest.mark.k8s

NS = "o8r0"  # this test's network namespaces: o8r*
NODE = "o8r-node"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
CRASHER = "osk8s.test/crasher"
WRITER, READER = "osk8s.test/writer", "osk8s.test/reader"
PROBED = "osk8s.test/probed"
PROBED_PROGRAM = """
import http.server, os, sys, threading, time
open("/tmp/alive", "w").close()
server = http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print("serving", flush=True)
if not os.path.exists("/data/died"):  # the first run stops being alive after 4 s; the second lives on
    open("/data/died", "w").close()
    time.sleep(4)
    os.unlink("/tmp/alive")
time.sleep(3600)
"""


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def free_net() -> str:
    used = set(sh("ip", "-o", "route", "show", "table", "main").stdout.split())
    return next(f"198.18.{n}" for n in range(255, 0, -1) if f"198.18.{n}.0/24" not in used)


def wait(what: str, fn, timeout: float = 60, every: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
            last = value
        except (ApiError, OSError, KeyError, IndexError) as e:
            last = e
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler in network namespace NS."""

    def __init__(self, workdir: Path):
        self.workdir, self.procs = workdir, {}
        self.etc = workdir / "etc-kubernetes"  # bind-mounted over /etc/kubernetes for kubeadm and the components

    def start(self) -> ControlPlane:
        require_root_tools("ip", "unshare", "nsenter", "curl")
        self.bins = build.ensure(
            ["kubeadm", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "k8s-keystone-auth"]
        )
        sh("ip", "netns", "del", NS, check=False)
        sh("ip", "link", "del", f"{NS}h", check=False)
        net = free_net()
        self.ip = f"{net}.2"
        sh("ip", "netns", "add", NS)
        sh("ip", "link", "add", f"{NS}h", "type", "veth", "peer", "name", f"{NS}n")
        sh("ip", "link", "set", f"{NS}n", "netns", NS)
        sh("ip", "addr", "add", f"{net}.1/24", "dev", f"{NS}h")
        sh("ip", "link", "set", f"{NS}h", "up")
        for cmd in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", f"{self.ip}/24", "dev", f"{NS}n"],
            ["ip", "link", "set", f"{NS}n", "up"],
            ["ip", "route", "add", "default", "via", f"{net}.1"],
        ):
            sh("ip", "netns", "exec", NS, *cmd)
        self.etc.mkdir(parents=True, exist_ok=True)
        # the kubeadm config osk8s renders, etcd's data directory moved into the work directory
        docs = list(
            yaml.safe_load_all(cluster_render.init_config(config.validate({"lab": {"name": "o8r"}}), self.ip, NODE, None))
        )
        next(d for d in docs if d["kind"] == "ClusterConfiguration")["etcd"] = {
            "local": {"dataDir": str(self.workdir / "etcd")}
        }
        self.kubeadm_config = self.workdir / "kubeadm.yaml"
        self.kubeadm_config.write_text(yaml.safe_dump_all(docs))
        for phase in (["certs", "all"], ["kubeconfig", "all"], ["control-plane", "all"], ["etcd", "local"]):
            self.kubeadm("init", "phase", *phase, "--config", str(self.kubeadm_config))
        for name in CONTROL_PLANE:
            manifest = yaml.safe_load((self.etc / "manifests" / f"{name}.yaml").read_text())
            command = manifest["spec"]["containers"][0]["command"]
            self.run(name, [str(self.bins[name]), *command[1:]])
        self.admin = KubeClient.from_kubeconfig(self.etc / "admin.conf", self.workdir / "admin-pki")
        wait("kube-apiserver /readyz", lambda: self.admin.request("GET", "/readyz") is not None, timeout=120)
        # what kubeadm init does once the API answers (EnsureAdminClusterRoleBinding), as system:masters
        root = KubeClient.from_kubeconfig(self.etc / "super-admin.conf", self.workdir / "super-admin-pki")
        wait(
            "kubeadm:cluster-admins",
            lambda: root.request(
                "POST",
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                {
                    "metadata": {"name": "kubeadm:cluster-admins"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                    "subjects": [
                        {"kind": "Group", "name": "kubeadm:cluster-admins", "apiGroup": "rbac.authorization.k8s.io"}
                    ],
                },
            ),
        )
        wait("the kubernetes Service", lambda: self.admin.get("/api/v1/namespaces/default/services/kubernetes"))
        self.kubeadm("init", "phase", "addon", "kube-proxy", "--config", str(self.kubeadm_config))
        wait(
            "the controller-manager's default ServiceAccount",  # pods are refused before it exists
            lambda: self.admin.get("/api/v1/namespaces/default/serviceaccounts/default"),
            timeout=60,
        )
        return self

    def in_etc(self, argv: list[str]) -> list[str]:
        """argv in a private mount namespace where /etc/kubernetes is this control plane's directory."""
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f'mount --bind "{self.etc}" /etc/kubernetes && exec "$@"',
            "sh",
            *argv,
        ]

    def kubeadm(self, *args: str) -> None:
        proc = subprocess.run(self.in_etc([str(self.bins["kubeadm"]), *args]), capture_output=True, text=True)
        assert proc.returncode == 0, f"kubeadm {' '.join(args)}: {proc.stdout}{proc.stderr}"

    def run(self, name: str, argv: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(
            ["ip", "netns", "exec", NS, *self.in_etc(argv)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        for name in reversed(CONTROL_PLANE):  # each by its PID (session leader: ip netns exec, unshare, sh exec)
            p = self.procs.get(name)
            if p and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=15)  # kube-apiserver shuts down gracefully for a while
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        sh("ip", "netns", "del", NS, check=False)
        sh("ip", "link", "del", f"{NS}h", check=False)


class Node:
    """The Node object and its heartbeat (the Lease), with the node's own credentials, as kubelet does."""

    def __init__(self, cp: ControlPlane):
        self.cp = cp
        self.api = KubeClient.from_kubeconfig(cp.etc / "kubelet.conf", cp.workdir / "node-pki")
        self.stop_ = threading.Event()

    def register(self) -> Node:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE,
                "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
            },
        }
        self.api.request("POST", "/api/v1/nodes", node)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {
            "status": {
                "addresses": [{"type": "InternalIP", "address": self.cp.ip}, {"type": "Hostname", "address": NODE}],
                "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"},
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "o8r test node",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
                "nodeInfo": {"kubeletVersion": "v1.37.2", "operatingSystem": "linux", "architecture": "amd64"},
            }
        }
        self.api.request("PATCH", f"/api/v1/nodes/{NODE}/status", status, content_type="application/merge-patch+json")
        threading.Thread(target=self.heartbeat, daemon=True).start()
        return self

    def heartbeat(self) -> None:
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        while not self.stop_.is_set():
            now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
            try:
                lease = self.api.get(f"{path}/{NODE}")
                lease["spec"]["renewTime"] = now
                self.api.request("PUT", f"{path}/{NODE}", lease)
            except ApiError as e:
                if e.status == 404:
                    self.api.request(
                        "POST",
                        path,
                        {
                            "metadata": {"name": NODE, "namespace": "kube-node-lease"},
                            "spec": {"holderIdentity": NODE, "leaseDurationSeconds": 40, "renewTime": now},
                        },
                    )
            except OSError:
                pass
            self.stop_.wait(10)

    def pods(self) -> list[dict]:
        return self.api.get("/api/v1/pods", fieldSelector=f"spec.nodeName={NODE}")["items"]


class Keystone(BaseHTTPRequestHandler):
    """A dummy Keystone: version discovery, and 404 for any token (Keystone's answer to a garbage one)."""

    requests: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        Keystone.requests.append(self.path)
        if self.path.rstrip("/") in ("", "/v3"):
            body = json.dumps(
                {
                    "version": {
                        "id": "v3.14",
                        "status": "stable",
                        "links": [{"rel": "self", "href": f"http://127.0.0.1:{self.server.server_port}/v3/"}],
                    }
                }
            )
            code = 200
        else:
            code, body = 404, json.dumps({"error": {"code": 404, "message": "Could not find token", "title": "Not Found"}})
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("o8r")
    cp = ControlPlane(workdir)  # stopped in the finally below even when start() fails half-way
    keystone = QuietHTTPServer(("127.0.0.1", free_port()), Keystone)
    threading.Thread(target=keystone.serve_forever, daemon=True).start()
    fwd = netfwd.Forwarder()
    runner = None
    stop = threading.Event()
    try:
        cp.start()
        node = Node(cp).register()
        fwd.start(NS, [keystone.server_port])
        images = {
            "registry.k8s.io/provider-os/k8s-keystone-auth": cp.bins["k8s-keystone-auth"],
            "registry.k8s.io/kube-proxy": proxy.ARGV,
            CRASHER: [sys.executable, "-I", "-c", "import sys; print('crasher: exiting 3', flush=True); sys.exit(3)"],
            PROBED: [sys.executable, "-I", "-c", PROBED_PROGRAM],
            WRITER: [
                sys.executable,
                "-I",
                "-c",
                "import sys, time; open(sys.argv[1], 'w').write(sys.argv[2]); time.sleep(1)",
            ],
            READER: [
                sys.executable,
                "-I",
                "-c",
                "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.1)\n"
                "print(open(sys.argv[1]).read(), *sys.argv[2:], os.getuid(),"
                " oct(os.stat(os.path.dirname(sys.argv[1])).st_mode & 0o7777), flush=True)",
            ],
        }
        runner = PodRunner(NODE, cp.ip, cp.etc / "kubelet.conf", images, workdir / "pods-state", workdir / "pod-logs")
        seen: dict[str, float] = {}

        def kubelet_loop():  # the kubelet stand-in's part: pods bound to the node, handed to the runner
            netfwd.join(NS)  # as on a node: the runner's threads and containers live in the node's netns
            while not stop.is_set():
                try:
                    pods = node.pods()
                    for p in pods:
                        seen.setdefault(p["metadata"]["uid"], time.monotonic())
                    runner.sync(pods)
                except Exception as e:  # noqa: BLE001 (the loop goes on, as kubelet's does)
                    print(f"kubelet loop: {e!r}")
                stop.wait(1)

        threading.Thread(target=kubelet_loop, daemon=True).start()
        yield {
            "cp": cp,
            "node": node,
            "runner": runner,
            "workdir": workdir,
            "keystone": keystone,
            "fwd": fwd,
            "seen": seen,
            "images": images,
        }
    finally:  # each part stopped even when another fails to
        stop.set()
        for part in ([runner.stop] if runner else []) + [fwd.stop, keystone.shutdown, cp.stop]:
            try:
                part()
            except Exception as e:  # noqa: BLE001
                print(f"teardown: {part}: {e!r}")


def get_pod(lab, ns: str, selector: str) -> dict:
    pods = lab["cp"].admin.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=selector)["items"]
    return pods[0] if len(pods) == 1 else {}


def apply(api: KubeClient, doc: dict) -> None:
    """Create or replace (the admin's kubectl apply, enough for these objects)."""
    kind, md = doc["kind"], doc["metadata"]
    group = doc["apiVersion"]
    base = f"/api/{group}" if "/" not in group else f"/apis/{group}"
    plural = {
        "ServiceAccount": "serviceaccounts",
        "ClusterRole": "clusterroles",
        "ClusterRoleBinding": "clusterrolebindings",
        "Role": "roles",
        "RoleBinding": "rolebindings",
        "ConfigMap": "configmaps",
        "Service": "services",
        "Deployment": "deployments",
        "Secret": "secrets",
        "Pod": "pods",
    }[kind]
    coll = f"{base}/namespaces/{md['namespace']}/{plural}" if md.get("namespace") else f"{base}/{plural}"
    try:
        have = api.get(f"{coll}/{md['name']}")
        doc = {**doc, "metadata": {**md, "resourceVersion": have["metadata"]["resourceVersion"]}}
        if kind == "Service":
            doc["spec"] = {**doc["spec"], "clusterIP": have["spec"]["clusterIP"]}
        api.request("PUT", f"{coll}/{md['name']}", doc)
    except ApiError as e:
        if e.status != 404:
            raise
        api.request("POST", coll, doc)


def delete(api: KubeClient, doc: dict) -> None:
    group, md = doc["apiVersion"], doc["metadata"]
    base = f"/api/{group}" if "/" not in group else f"/apis/{group}"
    plural = {
        "Role": "roles",
        "RoleBinding": "rolebindings",
        "ClusterRole": "clusterroles",
        "ClusterRoleBinding": "clusterrolebindings",
    }[doc["kind"]]
    coll = f"{base}/namespaces/{md['namespace']}/{plural}" if md.get("namespace") else f"{base}/{plural}"
    api.request("DELETE", f"{coll}/{md['name']}")


def in_ns(*cmd: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", NS, *cmd], capture_output=True, text=True, timeout=timeout)


def container_pid(lab, pod: dict, name: str) -> int:
    worker = lab["runner"].workers[pod["metadata"]["uid"]]
    ctr = next(c for c in worker.ctrs if c.name == name)
    assert ctr.proc is not None, f"{name} is not running"
    return ctr.proc.pid


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_latency(lab, pod: dict) -> dict:
    """From the runner's first sight of the pod to its first container's process started."""
    worker = lab["runner"].workers[pod["metadata"]["uid"]]
    first = min(c.started_at for c in worker.ctrs)
    return {f"{pod['spec']['containers'][0]['name']}: pod seen -> process started (s)": round(first - worker.first_seen, 2)}


def status_of(pod: dict, name: str) -> dict:
    return next((s for s in pod.get("status", {}).get("containerStatuses") or [] if s["name"] == name), {})


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions") or [])


def test_kube_proxy_daemonset_runs_the_stand_in(lab):
    """kubeadm's kube-proxy DaemonSet, its command line and ConfigMap as kubeadm wrote them, runs the stand-in
    under the kube-proxy ServiceAccount; the kubernetes Service's ClusterIP then answers in the namespace."""
    pod = wait(
        "kube-proxy Running and Ready",
        lambda: (p := get_pod(lab, "kube-system", "k8s-app=kube-proxy")) and ready(p) and p,
        timeout=120,
    )
    spec = pod["spec"]["containers"][0]
    assert spec["command"][:2] == ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf"]
    assert pod["status"]["podIP"] == lab["cp"].ip and pod["status"]["hostIP"] == lab["cp"].ip
    svc = lab["cp"].admin.get("/api/v1/namespaces/default/services/kubernetes")["spec"]["clusterIP"]
    ca = lab["cp"].etc / "pki" / "ca.crt"
    out = wait(
        "the kubernetes ClusterIP answering",
        lambda: (r := in_ns("curl", "-sS", "--cacert", str(ca), f"https://{svc}:443/livez")).returncode == 0 and r,
        timeout=60,
    )
    assert out.stdout.strip() == "ok"
    log = (lab["workdir"] / "pod-logs").glob(f"kube-system_{pod['metadata']['name']}_*/kube-proxy/0.log")
    text = next(log).read_text()
    assert " stderr F " in text and f"{svc}:443 -> {lab['cp'].ip}:6443" in text


def keystone_docs(lab, role_instead_of_clusterrole: bool) -> tuple[list[dict], Path]:
    """keystone_deploy.manifests() as verify.keystone applies them, with a serving certificate for the
    Service's ClusterIP from a lab CA (osk8s_tasks/pki.py), and the Secret Setup.docs() builds."""
    settings = config.validate({"lab": {"name": "o8r"}})
    url = f"http://127.0.0.1:{lab['keystone'].server_port}/v3"
    api = lab["cp"].admin
    apply(api, keystone_deploy.service_doc(settings))
    cluster_ip = api.get("/api/v1/namespaces/kube-system/services/k8s-keystone-auth-service")["spec"]["clusterIP"]
    d = lab["workdir"] / "keystone-pki"
    d.mkdir(exist_ok=True)
    crt, key = d / "tls.crt", d / "tls.key"
    if not crt.exists():
        ca, ca_key = pki.ensure_ca(d, "o8r")
        pki.issue_serving_cert(crt, key, ca, ca_key, keystone_deploy.cert_names(cluster_ip))
    docs = keystone_deploy.manifests(settings, url, hashlib.sha256(crt.read_bytes()).hexdigest()[:16])
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": "keystone-auth-certs", "namespace": "kube-system", "labels": {"osk8s.io/lab": "o8r"}},
        "data": {
            "tls.crt": base64.b64encode(crt.read_bytes()).decode(),
            "tls.key": base64.b64encode(key.read_bytes()).decode(),
        },
    }
    docs = [secret] + [x for x in docs if x["kind"] != "Service"]
    if role_instead_of_clusterrole:  # the old manifest: a namespaced Role for the ConfigMaps
        old = []
        for x in docs:
            if x["kind"] == "ClusterRole":
                x = {**x, "kind": "Role", "metadata": {**x["metadata"], "namespace": "kube-system"}}
            elif x["kind"] == "ClusterRoleBinding":
                x = {
                    **x,
                    "kind": "RoleBinding",
                    "metadata": {**x["metadata"], "namespace": "kube-system"},
                    "roleRef": {**x["roleRef"], "kind": "Role"},
                }
            old.append(x)
        docs = old
    return docs, d / "ca.crt"


def webhook_review(url: str, ca: Path, token: str = "garbage-token") -> tuple[int, dict]:
    body = json.dumps(
        {"apiVersion": "authentication.k8s.io/v1beta1", "kind": "TokenReview", "spec": {"token": token}}
    ).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False  # the pod's own IP is not in the certificate (the Service's names and ClusterIP are)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_keystone_auth_under_real_rbac(lab):
    """The old manifest's namespaced Role: the real k8s-keystone-auth, acting with its pod's token, is
    forbidden to list ConfigMaps cluster-wide and never serves (not Ready, port closed, the reason in its
    CRI log). The ClusterRole osk8s renders: the same container becomes Ready once 8443 answers, and it
    answers a garbage token with 401 (after asking Keystone)."""
    api, ip = lab["cp"].admin, lab["cp"].ip
    wait("kube-proxy Ready", lambda: ready(get_pod(lab, "kube-system", "k8s-app=kube-proxy")), timeout=120)
    docs, ca = keystone_docs(lab, role_instead_of_clusterrole=True)
    t0 = time.monotonic()
    for doc in docs:
        apply(api, doc)
    pod = wait(
        "k8s-keystone-auth running",
        lambda: (
            (p := get_pod(lab, "kube-system", "app=k8s-keystone-auth"))
            and "running" in status_of(p, "k8s-keystone-auth").get("state", {})
            and p
        ),
        timeout=90,
    )
    started = time.monotonic()
    logdir = lab["workdir"] / "pod-logs" / f"kube-system_{pod['metadata']['name']}_{pod['metadata']['uid']}"
    log = logdir / "k8s-keystone-auth" / "0.log"
    text = wait("the forbidden list in the log", lambda: "forbidden" in (t := log.read_text()) and t, timeout=60)
    # klog quotes the error: User \"...\" cannot list resource \"configmaps\"
    assert r"User \"system:serviceaccount:kube-system:k8s-keystone\" cannot list resource \"configmaps\"" in text
    assert "at the cluster scope" in text
    assert "stderr F " in text and "Running command:" in text  # go-runner's own lines
    time.sleep(12)  # two readiness periods (5 s): still not serving
    pod = get_pod(lab, "kube-system", "app=k8s-keystone-auth")
    assert not ready(pod) and status_of(pod, "k8s-keystone-auth")["ready"] is False
    assert pod["status"]["phase"] == "Running" and status_of(pod, "k8s-keystone-auth")["restartCount"] == 0
    with pytest.raises(OSError):
        socket.create_connection((ip, 8443), timeout=2).close()

    # the ClusterRole of manifests/keystone-auth.yaml.j2: the same container syncs its cache and serves
    for doc in docs:
        if doc["kind"] in ("Role", "RoleBinding"):
            delete(api, doc)
    new, _ = keystone_docs(lab, role_instead_of_clusterrole=False)
    for doc in new:
        if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            apply(api, doc)
    fixed = time.monotonic()
    pod = wait(
        "k8s-keystone-auth Ready",
        lambda: ready(p := get_pod(lab, "kube-system", "app=k8s-keystone-auth")) and p,
        timeout=120,
    )
    ready_after = time.monotonic() - fixed
    socket.create_connection((ip, 8443), timeout=2).close()  # Ready means serving
    assert status_of(pod, "k8s-keystone-auth")["restartCount"] == 0
    assert "ConfigMaps synced and ready" in log.read_text()
    conds = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conds == {
        "PodScheduled": "True",
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    assert pod["status"]["podIPs"] == [{"ip": ip}] and pod["status"]["hostIPs"] == [{"ip": ip}]

    lab["keystone"].RequestHandlerClass.requests.clear()
    code, review = webhook_review(f"https://{ip}:8443/webhook", ca)
    assert code == 401 and review["status"].get("authenticated") in (False, None), (code, review)
    assert any("/auth/tokens" in r for r in Keystone.requests), Keystone.requests  # it asked Keystone
    assert lab["fwd"].status()["connections"] >= 1

    # the Service's ClusterIP, through the kube-proxy stand-in, from inside the namespace
    svc = api.get("/api/v1/namespaces/kube-system/services/k8s-keystone-auth-service")["spec"]["clusterIP"]
    out = wait(
        "the webhook at its ClusterIP",
        lambda: (
            (
                r := in_ns(
                    "curl",
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--cacert",
                    str(ca),
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    '{"apiVersion":"authentication.k8s.io/v1beta1","kind":"TokenReview","spec":{"token":"x"}}',
                    f"https://{svc}:8443/webhook",
                )
            ).stdout
            == "401"
            and r
        ),
        timeout=60,
    )
    assert out.returncode == 0

    pid = container_pid(lab, pod, "k8s-keystone-auth")
    lab["measured"] = {
        "Deployment applied -> container running, seen by the API (s)": round(started - t0, 1),
        "ClusterRole applied -> pod Ready, seen by the API (s)": round(ready_after, 1),
        "k8s-keystone-auth RSS (MiB)": round(rss_mib(pid), 1),
        **start_latency(lab, pod),
    }


def test_volumes_token_and_environment(lab):
    """What the container sees: the Secret's files with their mode, the projected ServiceAccount token (a
    bound token: the API server authenticates it as the pod's ServiceAccount, bound to this pod), its CA and
    namespace, and the in-cluster environment pointing at the kubernetes Service."""
    api = lab["cp"].admin
    pod = wait(
        "k8s-keystone-auth Ready",
        lambda: ready(p := get_pod(lab, "kube-system", "app=k8s-keystone-auth")) and p,
        timeout=120,
    )
    pid = container_pid(lab, pod, "k8s-keystone-auth")
    root = Path(f"/proc/{pid}/root")
    crt = (lab["workdir"] / "keystone-pki" / "tls.crt").read_bytes()
    assert (root / "etc/pki/tls.crt").read_bytes() == crt
    assert (root / "etc/pki/tls.key").stat().st_mode & 0o777 == 0o644  # defaultMode 420
    assert os.readlink(root / "etc/pki/tls.crt") == "..data/tls.crt"  # AtomicWriter's layout
    sa = root / "var/run/secrets/kubernetes.io/serviceaccount"
    assert (sa / "namespace").read_text() == "kube-system"
    assert (sa / "ca.crt").read_bytes() == (lab["cp"].etc / "pki" / "ca.crt").read_bytes()
    token = (sa / "token").read_text()
    review = api.request(
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
    )
    st = review["status"]
    assert st["authenticated"] is True and st["user"]["username"] == "system:serviceaccount:kube-system:k8s-keystone"
    assert st["user"]["extra"]["authentication.kubernetes.io/pod-name"] == [pod["metadata"]["name"]]
    assert st["user"]["extra"]["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]
    assert st["user"]["extra"]["authentication.kubernetes.io/node-name"] == [NODE]
    env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in kv)
    kubernetes = api.get("/api/v1/namespaces/default/services/kubernetes")["spec"]["clusterIP"]
    assert env["KUBERNETES_SERVICE_HOST"] == kubernetes and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["K8S_KEYSTONE_AUTH_SERVICE_SERVICE_PORT_HTTPS"] == "8443"  # service links of its namespace
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"./bin/k8s-keystone-auth"
    pod_root = str(lab["workdir"] / "pods-state" / "pods" / pod["metadata"]["uid"] / "root")
    assert os.readlink(f"/proc/{pid}/root") == pod_root and os.readlink(f"/proc/{pid}/cwd") == pod_root  # workingDir /
    status = Path(f"/proc/{pid}/status").read_text()
    cap_eff = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("CapEff:")), 16)
    assert cap_eff == 0xA80425FB  # containerd's default set, not root's full one
    # the node's credentials reach no other Secret (Node authorizer): the runner could not leak one
    node_api = lab["node"].api
    with pytest.raises(ApiError) as e:
        node_api.get("/api/v1/namespaces/kube-system/secrets/bootstrap-signer-token")
    assert e.value.status == 403


def test_crashing_container_restarts_with_backoff(lab):
    """A container that exits: restarted at once, then CrashLoopBackOff with the last exit code and kubelet's
    message, 10 s then 20 s apart; one CRI log file per attempt."""
    api = lab["cp"].admin
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "crasher", "namespace": "default", "labels": {"app": "crasher"}},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "crasher", "image": f"{CRASHER}:v1", "command": ["/crasher"]}],
        },
    }
    apply(api, pod)
    p = wait(
        "CrashLoopBackOff",
        lambda: (
            (p := get_pod(lab, "default", "app=crasher"))
            and status_of(p, "crasher").get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
            and p
        ),
        timeout=60,
        every=0.2,
    )
    st = status_of(p, "crasher")
    assert st["restartCount"] == 1
    assert st["lastState"]["terminated"]["exitCode"] == 3 and st["lastState"]["terminated"]["reason"] == "Error"
    uid = p["metadata"]["uid"]
    assert (
        st["state"]["waiting"]["message"] == f"back-off 10s restarting failed container=crasher pod=crasher_default({uid})"
    )
    assert p["status"]["phase"] == "Running" and not ready(p)
    t1 = time.monotonic()
    p = wait(
        "the second restart",
        lambda: (p := get_pod(lab, "default", "app=crasher")) and status_of(p, "crasher").get("restartCount") == 2 and p,
        timeout=30,
        every=0.2,
    )
    assert 8 <= time.monotonic() - t1 <= 14
    p = wait(
        "back-off 20s",
        lambda: (
            (p := get_pod(lab, "default", "app=crasher"))
            and "back-off 20s" in status_of(p, "crasher").get("state", {}).get("waiting", {}).get("message", "")
            and p
        ),
        timeout=30,
        every=0.2,
    )
    logs = lab["workdir"] / "pod-logs" / f"default_crasher_{uid}" / "crasher"
    assert {f.name for f in logs.iterdir()} >= {"0.log", "1.log", "2.log"}
    line = (logs / "0.log").read_text().splitlines()[0]
    stamp, stream, tag, content = line.split(" ", 3)
    assert stream == "stdout" and tag == "F" and content == "crasher: exiting 3" and stamp.endswith("Z")
    events = api.get("/api/v1/namespaces/default/events", fieldSelector=f"involvedObject.uid={uid}")["items"]
    assert {"Started", "BackOff"} <= {e["reason"] for e in events}


def test_emptydir_shared_env_expansion_and_a_pod_that_completes(lab):
    """Two containers share an emptyDir (as cinder-csi's controller shares its socket directory with the
    sidecars); env from fieldRef, $(VAR) expanded in args, runAsUser; restartPolicy Never: Succeeded."""
    api = lab["cp"].admin
    mount = [{"name": "shared", "mountPath": "/shared"}]
    env = [
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "GREETING", "value": "node=$(NODE)"},
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "shared", "namespace": "default", "labels": {"app": "shared"}},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 4242},
            "volumes": [{"name": "shared", "emptyDir": {}}],
            "containers": [
                {
                    "name": "writer",
                    "image": f"{WRITER}:v1",
                    "command": ["/w", "/shared/note", "from the writer"],
                    "volumeMounts": mount,
                },
                {
                    "name": "reader",
                    "image": f"{READER}:v1",
                    "command": ["/r", "/shared/note", "$(GREETING)", "$$(NODE)"],
                    "env": env,
                    "volumeMounts": mount,
                },
            ],
        },
    }
    apply(api, pod)
    p = wait(
        "the pod Succeeded",
        lambda: (p := get_pod(lab, "default", "app=shared")) and p.get("status", {}).get("phase") == "Succeeded" and p,
        timeout=60,
    )
    for name in ("writer", "reader"):
        term = status_of(p, name)["state"]["terminated"]
        assert term["exitCode"] == 0 and term["reason"] == "Completed", term
    conds = {c["type"]: (c["status"], c.get("reason")) for c in p["status"]["conditions"]}
    assert conds["Ready"] == ("False", "PodCompleted") and conds["ContainersReady"] == ("False", "PodCompleted")
    log = lab["workdir"] / "pod-logs" / f"default_shared_{p['metadata']['uid']}" / "reader" / "0.log"
    assert log.read_text().split(" stdout F ", 1)[1].strip() == f"from the writer node={NODE} $(NODE) 4242 0o777"
    api.request("DELETE", "/api/v1/namespaces/default/pods/shared")
    wait("the completed pod deleted", lambda: not get_pod(lab, "default", "app=shared"), timeout=30)


def test_probes_http_readiness_and_exec_liveness(lab):
    """httpGet readiness makes the pod Ready; an exec liveness probe (run inside the container's root)
    that starts failing gets the container killed and restarted, with Unhealthy events."""
    api = lab["cp"].admin
    port = free_port()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probed", "namespace": "default", "labels": {"app": "probed"}},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [
                {
                    "name": "probed",
                    "image": f"{PROBED}:v1",
                    "command": ["/probed", str(port)],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1},
                    "livenessProbe": {
                        "exec": {"command": ["/bin/sh", "-c", "test -e /tmp/alive"]},
                        "periodSeconds": 1,
                        "failureThreshold": 2,
                    },
                }
            ],
        },
    }
    apply(api, pod)
    p = wait("Ready through the httpGet probe", lambda: ready(p := get_pod(lab, "default", "app=probed")) and p, timeout=60)
    assert status_of(p, "probed")["restartCount"] == 0
    p = wait(
        "restarted by the liveness probe",
        lambda: (p := get_pod(lab, "default", "app=probed")) and status_of(p, "probed").get("restartCount") == 1 and p,
        timeout=60,
    )
    last = status_of(p, "probed")["lastState"]["terminated"]
    assert last["reason"] == "Error" and last["exitCode"] == 143  # SIGTERM
    uid = p["metadata"]["uid"]
    events = api.get("/api/v1/namespaces/default/events", fieldSelector=f"involvedObject.uid={uid}")["items"]
    assert any(e["reason"] == "Unhealthy" and e["message"].startswith("Liveness probe failed") for e in events)
    assert any(e["reason"] == "Killing" and "failed liveness probe" in e["message"] for e in events)
    wait("Ready again", lambda: ready(get_pod(lab, "default", "app=probed")), timeout=60)
    api.request("DELETE", "/api/v1/namespaces/default/pods/probed")
    wait("the pod deleted", lambda: not get_pod(lab, "default", "app=probed"), timeout=30)


def test_deleted_pod_stopped_then_removed_and_stop_leaves_nothing(lab):
    """A deleted pod's containers are stopped and the runner deletes it for good (grace 0, UID precondition);
    runner.stop() ends every container and leaves no process, no mount and no pod directory behind."""
    api, runner = lab["cp"].admin, lab["runner"]
    pod = get_pod(lab, "default", "app=crasher")
    if pod:
        api.request("DELETE", f"/api/v1/namespaces/default/pods/{pod['metadata']['name']}")
        wait("the crasher gone from the API", lambda: not get_pod(lab, "default", "app=crasher"), timeout=30)
    keystone = wait("k8s-keystone-auth", lambda: get_pod(lab, "kube-system", "app=k8s-keystone-auth"))
    pids = [c.proc.pid for w in list(runner.workers.values()) for c in w.ctrs if c.proc]
    assert pids, "nothing running to stop"
    measured = lab.get("measured", {})
    proxy_pod = get_pod(lab, "kube-system", "k8s-app=kube-proxy")
    measured["kube-proxy stand-in RSS (MiB)"] = round(rss_mib(container_pid(lab, proxy_pod, "kube-proxy")), 1)
    measured.update(start_latency(lab, proxy_pod))
    state = lab["workdir"] / "pods-state"
    assert any((state / "pods").iterdir())
    t0 = time.monotonic()
    runner.stop()
    measured["stop() (s)"] = round(time.monotonic() - t0, 1)
    print(f"\npod runner measurements: {measured}")
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"container process {pid} survived stop()"
    leftovers = []
    for mi in Path("/proc").glob("[0-9]*/mountinfo"):
        try:
            if str(state) in mi.read_text():
                leftovers.append(mi.parent.name)
        except OSError:
            pass
    assert not leftovers, f"processes with mounts under {state}: {leftovers}"
    assert not list((state / "pods").iterdir())
    strays = set(sh("ip", "netns", "pids", NS).stdout.split()) - {str(p.pid) for p in lab["cp"].procs.values()}
    assert not strays, f"processes left in {NS}: {strays}"
    assert "10.96." not in in_ns("ip", "-o", "addr", "show", "dev", "lo").stdout  # the proxy's ClusterIPs removed"
    assert keystone  # was running before stop()


def test_netfwd_reaches_the_root_loopback_from_a_namespace(tmp_path):
    """netfwd: a throwaway HTTP server on 127.0.0.1 here answers inside a test namespace at the same URL;
    a namespace name that is this process's own namespace is refused."""
    ns = "o8r1"
    sh("ip", "netns", "del", ns, check=False)
    sh("ip", "netns", "add", ns)
    (tmp_path / "hello").write_text("from the root namespace")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    fwd = netfwd.Forwarder()
    try:
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        wait("the server", lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True)
        before = subprocess.run(
            ["ip", "netns", "exec", ns, "curl", "-sS", f"http://127.0.0.1:{port}/hello"], capture_output=True, text=True
        )
        assert before.returncode != 0  # nothing there without the forwarder
        fwd.start(ns, [port])
        out = subprocess.run(
            ["ip", "netns", "exec", ns, "curl", "-sS", f"http://127.0.0.1:{port}/hello"], capture_output=True, text=True
        )
        assert out.stdout == "from the root namespace", out.stderr
        assert fwd.status() == {"netns": ns, "ports": [port], "connections": 1, "errors": [], "running": True}
        # the listener is in the namespace only: here, the port is the server's own
        with pytest.raises(OSError):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            finally:
                s.close()
        fwd.stop()
        assert not fwd.status()["running"]
        assert (
            subprocess.run(
                ["ip", "netns", "exec", ns, "curl", "-sS", f"http://127.0.0.1:{port}/hello"], capture_output=True
            ).returncode
            != 0
        )
        from osk8s_tasks.embedded.openstack.services import PORTS

        assert sorted(netfwd.OPENSTACK_PORTS) == sorted(PORTS.values())
        with pytest.raises(FileNotFoundError):
            netfwd.listen_in("o8r-no-such-namespace", port)
        with pytest.raises(ValueError):
            netfwd.listen_in("../../proc/self/ns/net", port)
        own = Path("/run/netns/o8r-self")
        own.touch()
        try:
            sh("mount", "--bind", "/proc/self/ns/net", str(own))
            with pytest.raises(ValueError, match="this process's own"):
                netfwd.listen_in("o8r-self", port)
        finally:
            sh("umount", str(own), check=False)
            own.unlink()
    finally:
        fwd.stop()
        server.terminate()
        server.wait()
        sh("ip", "netns", "del", ns, check=False)


# pure parts of the runner, against upstream's own test tables (no cluster needed)

EXPANSION = [  # third_party/forked/golang/expansion/expand_test.go TestMapping (k8s.io/kubernetes v1.37.2)
    ("$(VAR_A)", "A"),
    ("$(VAR_A)-$(VAR_A)", "A-A"),
    ("$(VAR_A)-1", "A-1"),
    ("___$(VAR_B)___", "___B___"),
    ("___$(VAR_C)", "___C"),
    ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
    ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
    ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
    ("f000-$$VAR_A", "f000-$VAR_A"),
    ("foo\\$(VAR_C)bar", "foo\\Cbar"),
    ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
    ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
    ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
    ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
    ("$(VAR_REF)", "$(VAR_A)"),
    ("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"),
    ("foo$(VAR_EMPTY)bar", "foobar"),
    ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
    ("f00__(VAR_A)__", "f00__(VAR_A)__"),
    ("$?_boo_$!", "$?_boo_$!"),
    ("$VAR_A", "$VAR_A"),
    ("$(VAR_DNE)", "$(VAR_DNE)"),
    ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
    ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
    ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
    ("$$$$$$$(VAR_A)", "$$$A"),
    ("$VAR_A)", "$VAR_A)"),
    ("${VAR_A}", "${VAR_A}"),
    ("$(VAR_B)_______$(A", "B_______$(A"),
    ("$(VAR_C)_______$(", "C_______$("),
    ("$", "$"),
    ("$)", "$)"),
]


@pytest.mark.parametrize("text,want", EXPANSION)
def test_expansion_as_upstream(text, want):
    from tests.peers.k8s.pods import expand

    env = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}
    assert expand(text, env) == want
    assert expand(text, {"VAR_A": "A", "VAR_EMPTY": ""}, {"VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)"}) == want


def test_backoff_as_kubelet_configures_flowcontrol():
    """10 s, doubling to 300 s; a container that ran 10 minutes since the last restart starts over."""
    from tests.peers.k8s.pods import Backoff

    b, key, now = Backoff(), "p_ns_uid_c", 1000.0
    assert not b.in_backoff_since(key, now, now)  # first exit: restarted at once
    b.next(key, now, now)
    seq = []
    for _ in range(7):
        finished = now + 1
        assert b.in_backoff_since(key, finished, finished + 0.5)
        seq.append(b.get(key))
        now = finished + b.get(key)
        assert not b.in_backoff_since(key, finished, now)
        b.next(key, finished, now)
    assert seq == [10, 20, 40, 80, 160, 300, 300]
    assert not b.in_backoff_since(key, now + 601, now + 601)  # stable for 10 minutes: reset
    b.next(key, now + 601, now + 601)
    assert b.get(key) == 10


@pytest.mark.parametrize(
    "ref,want",
    [
        (
            "registry.k8s.io/provider-os/k8s-keystone-auth:v1.36.0",
            ("registry.k8s.io/provider-os/k8s-keystone-auth", "v1.36.0"),
        ),
        ("registry.k8s.io/kube-proxy:v1.37.2@sha256:ab", ("registry.k8s.io/kube-proxy", "v1.37.2")),
        ("localhost:5000/x/y", ("localhost:5000/x/y", None)),
        ("busybox", ("busybox", None)),
    ],
)
def test_split_image(ref, want):
    from tests.peers.k8s.pods import split_image

    assert split_image(ref) == want


def test_service_links_as_envvars_go():
    from tests.peers.k8s.pods import service_env

    env = service_env(
        [
            {
                "metadata": {"name": "k8s-keystone-auth-service"},
                "spec": {"clusterIP": "10.96.0.50", "ports": [{"name": "https", "port": 8443, "protocol": "TCP"}]},
            },
            {"metadata": {"name": "headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}},
        ]
    )
    assert env == {
        "K8S_KEYSTONE_AUTH_SERVICE_SERVICE_HOST": "10.96.0.50",
        "K8S_KEYSTONE_AUTH_SERVICE_SERVICE_PORT": "8443",
        "K8S_KEYSTONE_AUTH_SERVICE_SERVICE_PORT_HTTPS": "8443",
        "K8S_KEYSTONE_AUTH_SERVICE_PORT": "tcp://10.96.0.50:8443",
        "K8S_KEYSTONE_AUTH_SERVICE_PORT_8443_TCP": "tcp://10.96.0.50:8443",
        "K8S_KEYSTONE_AUTH_SERVICE_PORT_8443_TCP_PROTO": "tcp",
        "K8S_KEYSTONE_AUTH_SERVICE_PORT_8443_TCP_PORT": "8443",
        "K8S_KEYSTONE_AUTH_SERVICE_PORT_8443_TCP_ADDR": "10.96.0.50",
    }
