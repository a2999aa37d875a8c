"""The kubelet daemon's loop (upstream pkg/kubelet/kubelet.go Run and syncLoop, cmd/kubelet/app/server.go):
the config loaded, healthz served (pkg/kubelet/server healthz: kubeadm's wait-control-plane asks
it), the client certificate, the Node registered and its Lease renewed, the static pods synced,
kwok started for this node only, the pods bound to the node handed to the pod runner and the CSI
node plugin's stand-in, the HTTPS server on 10250 started; on stop, only its own parts stop."""

from __future__ import annotations

import http.server
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from tests.peers.httpserver import QuietHTTPServer
from tests.peers.k8s import kwok as kwokmod
from tests.peers.k8s.apiclient import ApiError, Client, Kubeconfig
from tests.peers.k8s.kubelet.certs import (
    CertStore,
    kubeconfig_valid,
    request_client_certificate,
    write_kubeconfig_from_bootstrapping,
)
from tests.peers.k8s.kubelet.flags import STATE, Flags, load_config, log, peers
from tests.peers.k8s.kubelet.node import LEASE_DURATION, initial_node, register, renew_lease
from tests.peers.k8s.kubelet.staticpods import STATIC_IMAGES, StaticPods
from tests.peers.k8s.runtime import Runtime

# ---- POD RUNNER HOOK ------------------------------------------------------------------------------
# Pods with a container (or init container) whose image repository is a key here are left to the
# pod runner (tests/peers/k8s/pods/, written separately), never to kwok: kwok's pod stages skip
# them (kwok.RUNNER_SELECTOR_KEY), so kwok neither marks them Running nor deletes them. The runner
# takes a pod when every one of its images is mapped (and the tag is the binary's version); a pod it
# does not take stays Pending, with its reason in kubelet.log, rather than being faked Running. The
# contract, as this kubelet calls it:
#   runner = pods.PodRunner(<node name>, <node IP>, Path(<--kubeconfig, i.e. /etc/kubernetes/kubelet.conf>),
#                           {image repository: Path of the built binary}, STATE / "pods",
#                           log_dir=Path("/var/log/pods"))
#                       once the Node is registered (the kubeconfig then holds the node's certificate);
#   runner.sync(pods)   every POD_SYNC_SECONDS with every Pod bound to this node (the API's list with
#                       fieldSelector spec.nodeName=<node>, as the Node authorizer allows), as JSON dicts,
#                       deleted ones included (metadata.deletionTimestamp set); it picks its own
#                       (runner.explain(pod) == "") and owns their status and final deletion;
#   runner.stop()       when this kubelet stops: its containers stop with it (unlike the static pods').
# Binaries not built are left out of the map (their pods then stay Pending).
# A value is a built binary's name, or ("standin", <file of this repository>): a Python stand-in the
# runner starts with pods.python_standin (kube-proxy: proxy.py; livenessprobe: livenessprobe.py, which
# cannot be built, see README.md).
RUNNER_IMAGES = {
    "registry.k8s.io/provider-os/k8s-keystone-auth": "k8s-keystone-auth",
    "registry.k8s.io/provider-os/openstack-cloud-controller-manager": "openstack-cloud-controller-manager",
    "registry.k8s.io/provider-os/cinder-csi-plugin": "cinder-csi-plugin",
    "registry.k8s.io/provider-os/octavia-ingress-controller": "octavia-ingress-controller",
    "registry.k8s.io/sig-storage/csi-provisioner": "csi-provisioner",
    "registry.k8s.io/sig-storage/csi-attacher": "csi-attacher",
    "registry.k8s.io/sig-storage/csi-resizer": "csi-resizer",
    "registry.k8s.io/e2e-test-images/busybox": "busybox",  # Debian's busybox (pods.IMAGES says how)
    "registry.k8s.io/kube-proxy": ("standin", "tests/peers/k8s/proxy.py"),
    "registry.k8s.io/sig-storage/livenessprobe": ("standin", "tests/peers/k8s/livenessprobe.py"),
}
POD_SYNC_SECONDS = 2.0
# ---------------------------------------------------------------------------------------------------


class Kubelet:
    def __init__(self, flags: Flags, state: Path = STATE):
        self.flags, self.state = flags, state
        self.dir = state / "kubelet"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.peers = peers(state)
        self.stopping = threading.Event()
        self.hostname = (flags.hostname_override or platform.node()).lower()
        self.name = self.hostname
        self.versions = {"kubernetes": self.peers["KUBERNETES_VERSION"], "etcd": self.peers["ETCD_VERSION"]}
        self.binaries = {b: self.peers[b.upper().replace("-", "_")] for b in STATIC_IMAGES.values()}
        self.runtime = Runtime(state / "runtime", python=self.peers.get("PYTHON") or sys.executable)
        self.static = StaticPods(self.runtime, self.name, self.binaries, self.versions)
        self.config: dict = {}
        self.store = CertStore(flags.cert_dir)
        self.client: Client | None = None  # as the node
        self.node: dict | None = None
        self.last_tick = 0.0
        self.kwok: subprocess.Popen | None = None
        self.kwok_next = 0.0
        self.proxy: kwokmod.NodeScopedProxy | None = None
        self.runner = None
        self.runner_note = ""
        self.csi_plugin = None
        self.server = None  # the HTTPS server on 10250 (kubeletserver.py)
        self.items: list[dict] = []  # the pods bound to this node, as last listed
        self.explained: set[str] = set()
        self.status: dict = {}

    # -- certificates
    def client_config(self) -> tuple[Kubeconfig, Kubeconfig, bool] | None:
        """(for CSRs, for everything else, rotate now?), or None while nothing is usable yet."""
        f = self.flags
        if kubeconfig_valid(f.kubeconfig):
            user = Kubeconfig.load(f.kubeconfig)
            rotate = False
            if self.store.current() is None:
                cert, key = user.client_cert_pem(), user.client_key_pem()
                self.store.update(cert, key)  # kubeadm's certificate: into the store, rotated out at once
                rotate = True
                log(f"client certificate of {f.kubeconfig} put in {self.store.current_path}; rotating it")
            return user, user, rotate
        if not f.bootstrap_kubeconfig or not os.path.exists(f.bootstrap_kubeconfig):
            return None
        boot = Kubeconfig.load(f.bootstrap_kubeconfig)
        ca_file = None
        write_kubeconfig_from_bootstrapping(boot, f.kubeconfig, str(self.store.current_path), ca_file)
        log(f"{f.kubeconfig} written from {f.bootstrap_kubeconfig}, pointing at {self.store.current_path}")
        return boot, Kubeconfig.load(f.kubeconfig), self.store.current() is None

    def ensure_credentials(self) -> bool:
        cfg = self.client_config()
        if cfg is None:
            return False
        cert_kc, user_kc, rotate = cfg
        node_kc = Kubeconfig(
            user_kc.server, user_kc.ca_pem, cert_file=str(self.store.current_path), key_file=str(self.store.current_path)
        )
        if self.store.current() is not None:  # usable now; a rotation goes on in the background
            self.client = Client(node_kc, scratch=str(self.dir))
        if rotate:
            # newClientsetFn: with a current certificate the CSR is made as the node, else with bootstrap credentials
            csr_client = Client(node_kc if self.store.current() else cert_kc, scratch=str(self.dir))
            while not self.stopping.is_set():
                try:
                    cert, key = request_client_certificate(csr_client, self.name, self.stopping)
                    path = self.store.update(cert, key)
                    log(f"client certificate issued: {path}")
                    break
                except (OSError, ApiError, RuntimeError, TimeoutError) as exc:
                    log(f"certificate request failed (retrying): {exc}")
                    self.stopping.wait(5)
            if self.stopping.is_set():
                return False
        if self.client is None:
            self.client = Client(node_kc, scratch=str(self.dir))
        return True

    # -- healthz
    def serve_healthz(self) -> None:
        host = self.config.get("healthzBindAddress") or "127.0.0.1"
        port = int(self.config.get("healthzPort", 10248))
        if port == 0:
            return
        kubelet = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                ok = (
                    self.path.split("?")[0] in ("/healthz", "/healthz/syncloop", "/healthz/ping")
                    and time.time() - kubelet.last_tick < 30
                )
                body = b"ok" if ok else b"[-]syncloop failed"
                self.send_response(200 if ok else 500)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = QuietHTTPServer((host, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
        log(f"healthz on http://{host}:{port}/healthz")

    # -- kwok
    def ensure_kwok(self) -> None:
        if self.kwok is not None and self.kwok.poll() is None:
            return
        if self.kwok is not None:
            log(f"kwok exited ({self.kwok.returncode}); see {self.dir / 'kwok.log'}")
            self.kwok = None
            self.kwok_next = time.time() + 10
        if time.time() < self.kwok_next:
            return
        if self.proxy is None:
            self.proxy = kwokmod.NodeScopedProxy(self.client, self.name, log).start()
        config, kc = self.dir / "kwok.yaml", self.dir / "kwok.kubeconfig"
        kwokmod.write_config(config, Path(self.peers["KWOK_SOURCE"]), RUNNER_IMAGES)
        kwokmod.write_kubeconfig(kc, self.proxy.url)
        home = self.dir / "kwok-home"  # so no ~/.kwok/kwok.yaml of the machine is read
        home.mkdir(exist_ok=True)
        argv = [self.peers["KWOK"], f"--manage-single-node={self.name}", f"--kubeconfig={kc}", f"--config={config}"]
        if self.flags.node_ip:
            argv.append(f"--node-ip={self.flags.node_ip}")
        out = open(self.dir / "kwok.log", "ab")
        self.kwok = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            close_fds=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)},
        )
        out.close()
        (self.dir / "kwok.pid").write_text(str(self.kwok.pid))
        log(f"kwok {self.kwok.pid}: {' '.join(argv)} (through {self.proxy.url})")

    def stop_stale_kwok(self) -> None:
        """A kwok left by a kubelet that was killed (the new one starts its own)."""
        try:
            pid = int((self.dir / "kwok.pid").read_text())
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if self.peers["KWOK"].encode() in cmd and f"--manage-single-node={self.name}".encode() in cmd:
            os.kill(pid, signal.SIGTERM)
            log(f"stopped kwok {pid} left by an earlier kubelet")

    # -- pod runner hook
    def runner_images(self) -> dict[str, Path | list[str]]:
        """{image repository: the built binary's Path, or a Python stand-in's argv}; binaries not built are left out."""
        from tests.peers.k8s.pods import python_standin

        out: dict[str, Path | list[str]] = {}
        for repo, target in RUNNER_IMAGES.items():
            if isinstance(target, tuple):
                out[repo] = python_standin(Path(self.peers["REPO"]) / target[1])
            elif self.peers.get(target.upper().replace("-", "_")):
                out[repo] = Path(self.peers[target.upper().replace("-", "_")])
        return out

    def start_runner(self) -> None:
        try:
            from tests.peers.k8s import pods as podsmod  # written separately (see POD RUNNER HOOK)
        except ImportError as exc:
            self.runner_note = f"no pod runner ({exc}): pods with its images stay Pending"
            log(self.runner_note)
            return
        try:
            self.runner = podsmod.PodRunner(
                self.name,
                self.node_ip(),
                Path(self.flags.kubeconfig),
                self.runner_images(),
                self.state / "pods",
                log_dir=Path("/var/log/pods"),
                csi=self.csi.publish,
            )
            self.runner_note = ""
            log(f"pod runner started for {', '.join(sorted(self.runner_images()))}")
        except Exception as exc:  # its failure must not stop the node
            self.runner_note = f"pod runner failed to start: {exc.__class__.__name__}: {exc}"
            log(self.runner_note)

    @property
    def csi(self):
        if self.csi_plugin is None:
            from tests.peers.k8s.csinode import NodePlugin

            store = self.peers.get("VOLUME_STORE")
            self.csi_plugin = NodePlugin(self.client, self.name, log, Path(store) if store else None)
        return self.csi_plugin

    def node_ip(self) -> str:
        """--node-ip, else the IPv4 address of the default route's interface (kubelet's fallback,
        apimachinery's ChooseHostInterface)."""
        if self.flags.node_ip:
            return self.flags.node_ip
        dev = next(
            (ln.split()[0] for ln in Path("/proc/net/route").read_text().splitlines()[1:] if ln.split()[1] == "00000000"),
            None,
        )
        if dev:
            out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", dev], capture_output=True, text=True).stdout
            for word in out.split():
                if "/" in word and word[0].isdigit():
                    return word.split("/")[0]
        return ""

    def sync_api_pods(self) -> None:
        """Every POD_SYNC_SECONDS: the pods bound to this node, for the mirror pods and the runner."""
        pods = self.client.request("GET", "/api/v1/pods", query=[("fieldSelector", f"spec.nodeName={self.name}")])
        items = self.items = pods.get("items", [])
        if self.server is None:
            try:
                from tests.peers.k8s.kubeletserver import KubeletServer

                self.server = KubeletServer(
                    self.name, self.client, self.config, Path(self.flags.cert_dir), lambda: self.items, log=log
                ).start()
            except Exception as exc:  # noqa: BLE001 (kubectl logs then fails; the node goes on)
                log(f"kubelet server: {exc.__class__.__name__}: {exc}")
                self.server = False
        node = self.client.request("GET", f"/api/v1/nodes/{self.name}", ok_missing=True)
        if node is None:  # deleted (kubectl delete node): register again, as kubelet does
            self.node = None
            return
        try:
            self.static.mirror_sync(self.client, node, items)
        except (OSError, ApiError) as exc:
            log(f"mirror pods: {exc}")
        mine = [
            p
            for p in items
            if any(
                kwokmod.image_repository(c.get("image", "")) in RUNNER_IMAGES
                for c in (p["spec"].get("containers") or []) + (p["spec"].get("initContainers") or [])
            )
        ]
        if self.runner is None and not self.runner_note:
            self.start_runner()
        if self.runner is not None:
            try:
                self.runner.sync(items)
            except Exception as exc:  # noqa: BLE001 (the runner's failure is logged, the node goes on)
                log(f"pod runner sync: {exc.__class__.__name__}: {exc}")
        csi: set[str] = set()
        try:  # the cinder-csi node plugin: registered by its stand-in (csinode.py), not run
            csi = set(self.csi.sync(items, self.node_ip()))
        except Exception as exc:  # noqa: BLE001
            log(f"csi node plugin: {exc.__class__.__name__}: {exc}")
        for p in mine:
            meta = p["metadata"]
            if meta["uid"] in csi:
                continue
            why = self.runner.explain(p) if self.runner is not None else (self.runner_note or "no pod runner")
            if not why:
                continue
            if meta.get("deletionTimestamp"):
                # nothing of it ever ran: the kubelet deletes such a pod at once (grace 0, UID precondition)
                self.client.request(
                    "DELETE",
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                    {
                        "apiVersion": "v1",
                        "kind": "DeleteOptions",
                        "gracePeriodSeconds": 0,
                        "preconditions": {"uid": meta["uid"]},
                    },
                    ok_missing=True,
                )
                log(f"pod {meta['namespace']}/{meta['name']} deleted (it never ran here)")
            elif f"{meta['uid']}:{why}" not in self.explained:
                self.explained.add(f"{meta['uid']}:{why}")
                log(
                    f"pod {meta['namespace']}/{meta['name']} stays Pending: the pod runner does not run it "
                    f"({why}) and kwok leaves it alone"
                )
        self.status["runner_pods"] = [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in mine]

    # -- main loop
    def write_status(self) -> None:
        self.status.update(
            node=self.name,
            pid=os.getpid(),
            registered=self.node is not None,
            healthz=f"http://{self.config.get('healthzBindAddress') or '127.0.0.1'}:"
            f"{self.config.get('healthzPort', 10248)}/healthz",
            api_server=self.client.kc.server if self.client else None,
            kwok_pid=self.kwok.pid if self.kwok and self.kwok.poll() is None else None,
            kwok_proxy=self.proxy.url if self.proxy else None,
            runner=self.runner_note or ("running" if self.runner else None),
            time=time.time(),
        )
        tmp = self.dir / "status.json.tmp"
        tmp.write_text(json.dumps(self.status, indent=1))
        os.replace(tmp, self.dir / "status.json")

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        log(f"starting: node {self.name}, flags {asdict(self.flags)}")
        while not self.stopping.is_set():  # kubelet exits here and systemd restarts it every 10 s
            try:
                self.config = load_config(self.flags.config, self.flags.config_dir)
                break
            except (OSError, ValueError) as exc:
                log(f"failed to load kubelet config file {self.flags.config}: {exc} (waiting, as systemd's restarts would)")
                self.stopping.wait(10)
        if self.stopping.is_set():
            return 0
        self.stop_stale_kwok()
        self.last_tick = time.time()
        self.serve_healthz()
        static_dir = self.config.get("staticPodPath") or ""
        creds = threading.Thread(target=self.ensure_credentials, name="certificates", daemon=True)
        next_register = next_lease = next_pods = 0.0
        creds_started = False
        while not self.stopping.is_set():
            now = time.time()
            self.last_tick = now
            if static_dir:
                try:
                    self.status["static_pods"] = self.static.sync(static_dir)
                except Exception as exc:  # a bad manifest must not stop the node
                    log(f"static pods: {exc.__class__.__name__}: {exc}")
            if self.client is None and not creds_started:
                creds_started = True
                creds.start()
            elif self.client is None:
                if not creds.is_alive():
                    creds = threading.Thread(target=self.ensure_credentials, name="certificates", daemon=True)
                    creds.start()
            elif self.node is None and now >= next_register:
                try:
                    node = initial_node(self.name, self.hostname, self.flags, self.config, self.versions["kubernetes"])
                    self.node = register(self.client, node)
                    log(f"node {self.name} registered (uid {self.node['metadata']['uid']})")
                except (OSError, ApiError) as exc:
                    log(f"unable to register node {self.name}: {exc}")
                    next_register = now + 2
            if self.node is not None:
                if now >= next_lease:
                    try:
                        renew_lease(self.client, self.name, self.node["metadata"]["uid"])
                        next_lease = now + LEASE_DURATION / 4
                    except (OSError, ApiError) as exc:
                        log(f"failed to renew lease kube-node-lease/{self.name}: {exc}")
                        next_lease = now + 1
                self.ensure_kwok()
                if now >= next_pods:
                    try:
                        self.sync_api_pods()
                    except (OSError, ApiError) as exc:
                        log(f"pods of {self.name}: {exc}")
                    next_pods = now + POD_SYNC_SECONDS
            self.write_status()
            self.stopping.wait(1)
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        """What the kubelet stops when it stops: its own parts. Containers stay (their runtime's)."""
        log("stopping")
        if self.kwok is not None and self.kwok.poll() is None:
            self.kwok.terminate()
            try:
                self.kwok.wait(10)
            except subprocess.TimeoutExpired:
                self.kwok.kill()
                self.kwok.wait()
            log(f"kwok {self.kwok.pid} stopped")
        (self.dir / "kwok.pid").unlink(missing_ok=True)
        if self.proxy is not None:
            self.proxy.stop()
        if self.server:
            self.server.stop()
        if self.runner is not None:
            try:
                self.runner.stop()
                log("pod runner stopped")
            except Exception as exc:  # noqa: BLE001
                log(f"pod runner stop: {exc.__class__.__name__}: {exc}")
        self.status.update(kwok_pid=None, stopped=time.time())
