"""Pod runner: the part of the kubelet that runs containers, for the images this machine has binaries for.

A stand-in for kubelet + a container runtime (there is no image, registry or CRI runtime here). The
kubelet stand-in (kubelet.py) registers the Node and hands every pod bound to it to `PodRunner.sync`;
the pods whose every container image is in `images` run here as real processes (the controllers osk8s
deploys: OCCM, cinder-csi, octavia-ingress-controller, k8s-keystone-auth; kube-proxy's stand-in), the
others stay with kwok.

    runner = PodRunner("node-1", "198.18.0.2", Path("/etc/kubernetes/kubelet.conf"),
                       {"registry.k8s.io/provider-os/k8s-keystone-auth": Path(".../k8s-keystone-auth"),
                        "registry.k8s.io/kube-proxy": proxy.ARGV}, Path("/var/lib/osk8s-pods"))
    runner.handles(pod)        # every container's image repository mapped, tag = the binary's version
    runner.sync(pods)          # start new pods, stop gone/deleted ones, restart with backoff, patch status
    runner.stop()              # every container stopped; no process and no mount left

What it follows, file by file (k8s.io/kubernetes v1.37.2 unless named otherwise; read, not guessed):
- credentials: it acts as the node (its kubelet.conf: system:node:<name>), so the Node authorizer and
  NodeRestriction decide what it may read. Secrets and ConfigMaps are read per pod; the projected
  `kube-api-access-*` token comes from the TokenRequest API bound to the pod (audience: the API
  server's default), refreshed at 80% of its TTL or after 24 h (pkg/kubelet/token/token_manager.go).
  The container then talks to the API with THAT token, so the real RBAC of our manifests applies.
- volumes (pkg/volume/secret/secret.go MakePayload, pkg/volume/projected/projected.go collectData,
  pkg/volume/configmap, pkg/volume/downwardapi, pkg/volume/hostpath, pkg/volume/emptydir): files
  written the AtomicWriter way (pkg/volume/util/atomic_writer.go: `..<timestamp>` dir, `..data`
  symlink swapped by rename, user-visible symlinks), items/defaultMode/optional honoured, the token
  file 0600 and owned by the pod's single runAsUser (FsUserFrom), re-read every minute (syncFrequency).
- environment (pkg/kubelet/kubelet_pods.go makeEnvironmentVariables, pkg/kubelet/envvars/envvars.go,
  third_party/forked/golang/expansion): envFrom, then env in order with `$(VAR)` expansion, fieldRef /
  resourceFieldRef / configMapKeyRef / secretKeyRef, then the service links (the `kubernetes` Service
  always: KUBERNETES_SERVICE_HOST/PORT); command/args expanded with the result
  (pkg/kubelet/container/helpers.go ExpandContainerCommandAndArgs).
- argv: containerd's CRI merge of command/args with the image's ENTRYPOINT/CMD (WithProcessArgs), with
  the image configs of the upstream Dockerfiles (IMAGES below). The CPO images run under go-runner
  (registry.k8s.io/build-image/go-runner; same program as k8s.io/component-base logs/kube-log-runner):
  its flags, its "Running command" lines, stderr folded into stdout, any failure of the child exit 1.
  The binary sits at the path the image has it; an argv[0] naming another path fails as it would.
- isolation: each container in its own mount and UTS namespace (`unshare --mount --uts`), chrooted into
  a tmpfs mounted (inside that namespace only) on state_dir/pods/<uid>/root, holding the binary, the
  volumes at their mountPaths (propagation None/HostToContainer/Bidirectional), /etc/{hosts,resolv.conf,
  passwd,group,ssl/certs}, /dev basics, /proc, /sys (ro), /tmp; runAsUser/runAsGroup/fsGroup/
  supplementalGroups, runAsNonRoot (kubelet's verifyRunAsNonRoot), containerd's default capability set
  unless privileged (plus capabilities add/drop), no_new_privs when allowPrivilegeEscalation is false,
  readOnlyRootFilesystem. /etc/hosts as kubelet writes it (managedHostsFileContent /
  nodeHostsFileContent); /etc/resolv.conf the node's (dnsPolicy ClusterFirst falls back to Default when
  the kubelet has no clusterDNS, pkg/kubelet/network/dns/dns.go: there is no cluster DNS here).
- restarts (pkg/kubelet/kuberuntime/kuberuntime_manager.go doBackOff, client-go util/flowcontrol
  backoff.go, pkg/kubelet/kubelet.go): first restart at once, then 10 s doubling to 300 s, reset after
  10 minutes of running; waiting reason CrashLoopBackOff with kubelet's message; restartPolicy honoured.
- status (pkg/kubelet/status/generate.go, kubelet_pods.go getPhase/convertToAPIContainerStatuses,
  pkg/kubelet/status/status_manager.go): phase, PodReadyToStartContainers/Initialized/ContainersReady/
  Ready (PodScheduled and foreign conditions kept), observedGeneration, containerStatuses (state,
  lastState, ready, started, restartCount, image, imageID, containerID, volumeMounts, user), podIP(s),
  hostIP(s), startTime; patched with the node's credentials, resourceVersion as precondition. A pod
  being deleted is stopped within its grace period, then deleted with grace 0 and a UID precondition.
- probes (pkg/kubelet/prober/worker.go, prober.go, pkg/probe/{tcp,http,exec}): readiness starts False,
  liveness and startup as upstream; tcpSocket, httpGet (http/https, TLS unchecked, 200-399, kube-probe
  User-Agent), exec inside the container (nsenter into its mount namespace and root); thresholds,
  initialDelaySeconds, periodSeconds, timeoutSeconds; liveness failure restarts the container.
- logs: CRI format (`<RFC3339Nano> <stream> <F|P> <line>`) in log_dir/<ns>_<pod>_<uid>/<container>/
  <restartCount>.log (pkg/kubelet/kuberuntime/helpers.go BuildContainerLogsDirectory, the CRI spec).

What it does not do (there is nothing here to do it with): no image or rootfs beyond the binary and the
files above; no cgroups (resources are not enforced), seccomp or AppArmor; no PID namespace (the
container sees the node's processes in /proc); no pod network: every pod shares the node's network
namespace (the kubelet stand-in runs inside it) and its podIP is the node IP, as with hostNetwork: there
is no CNI data plane here. No kubectl exec/attach/port-forward, no log rotation, no lifecycle hooks
(preStop/postStart are refused, not skipped), emptyDir medium Memory is a directory, only the volume
types above (others fail the mount, visibly). On start a runner kills the containers a previous runner
of the same state_dir left (by recorded PID and start time): kubelet would adopt them instead.

Python stand-ins (an argv prefix in `images`) run with the host's /usr and the repository mounted read-only
(their "image"): `python_standin(path)` builds such a prefix.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import http.client
import json
import logging
import os
import re
import secrets as _random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("osk8s.pods")
ROOT = Path(__file__).resolve().parents[3]  # the repository: Python stand-ins run from it

# ---------------------------------------------------------------------------------------------------
# Images: what the upstream image has, from its Dockerfile. The map given to PodRunner says which
# binary plays which image; this says where the image has it and how it starts.


@dataclass(frozen=True)
class ImageConfig:
    binary: str | None = None  # where the image has its program (None: wherever argv[0] says)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    workdir: str = "/"
    user: int = 0
    applets: bool = False  # a multi-call binary (busybox): a link per applet beside it, argv[0] found on PATH
    libs: tuple[str, ...] = ()  # host library directories the (dynamically linked) binary needs, read-only
    version_argv: tuple[str, ...] = ("--version",)  # how the binary tells its version
    release: str = "exact"  # "exact": the tag is the binary's version; "major": the same major version
    env: tuple[tuple[str, str], ...] = (
        ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),  # distroless static
    )


GO_RUNNER = "/go-runner"


def _cpo(name: str) -> ImageConfig:
    # cloud-provider-openstack v1.36.0 Dockerfile: FROM go-runner (ENTRYPOINT ["/go-runner"]), the binary
    # at /bin/<name>, CMD ["/bin/<name>"]
    return ImageConfig(f"/bin/{name}", (GO_RUNNER,), (f"/bin/{name}",))


IMAGES = {
    **{f"registry.k8s.io/provider-os/{n}": _cpo(n) for n in (
        "openstack-cloud-controller-manager", "cinder-csi-plugin", "k8s-keystone-auth", "octavia-ingress-controller")},
    # csi-release-tools Dockerfile: FROM distroless/static, COPY csi-x /csi-x, ENTRYPOINT ["/csi-x"]
    **{f"registry.k8s.io/sig-storage/{n}": ImageConfig(f"/{n}", (f"/{n}",)) for n in (
        "csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter", "livenessprobe", "csi-node-driver-registrar")},
    # kubernetes build/server-image/Dockerfile: /usr/local/bin/<binary>, ENTRYPOINT ["/go-runner"]
    "registry.k8s.io/kube-proxy": ImageConfig("/usr/local/bin/kube-proxy", (GO_RUNNER,)),
    # kubernetes test/images/busybox (FROM busybox): /bin/busybox and its applet links, CMD ["sh"]. Played by
    # Debian's busybox (1.35; no 1.36 can be had here), dynamically linked: glibc read-only beside it. verify.pv
    # uses sh, echo, cat, sync and sleep of it; the release check is on the major version (BusyBox v1).
    "registry.k8s.io/e2e-test-images/busybox": ImageConfig(
        "/bin/busybox", cmd=("sh",), applets=True, libs=("/usr/lib/x86_64-linux-gnu", "/usr/lib64"),
        version_argv=(), release="major"),
}

# containerd's default capability set (pkg/oci/spec.go, defaultUnixCaps), kept by unprivileged containers
CAPS = {n: i for i, n in enumerate((
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE"))}
DEFAULT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
                "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")

# kubelet's constants
INITIAL_BACKOFF, MAX_BACKOFF, BACKOFF_RESET = 10.0, 300.0, 600.0  # kubelet.go, flowcontrol HasExpiredFunc
SYNC_FREQUENCY = 60.0  # volumes re-read (kubelet syncFrequency)
STATUS_RESYNC = 10.0  # status manager syncBatch period
TOKEN_MAX_TTL = 24 * 3600.0
DEFAULT_GRACE = 30
KUBE_PROBE_UA = "kube-probe/1.37"
PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" \
         "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"  # distroless /etc/passwd
GROUP = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\ntty:x:5:\n"


def split_image(ref: str) -> tuple[str, str | None]:
    """'registry/repo:tag@sha256:..' -> (repository, tag or None)."""
    ref = ref.split("@", 1)[0]
    head, _, last = ref.rpartition("/")
    if ":" in last:
        last, tag = last.split(":", 1)
        return (f"{head}/{last}" if head else last), tag
    return ref, None


_versions: dict[tuple, str | None] = {}
_digests: dict[tuple, str] = {}


def binary_version(path: Path, argv: tuple[str, ...] = ("--version",)) -> str | None:
    """The version a binary reports with --version (the first vX.Y.Z-like word), cached per file."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size, argv)
    if key not in _versions:
        try:
            out = subprocess.run([str(path), *argv], capture_output=True, text=True, timeout=20,
                                 stdin=subprocess.DEVNULL)
            m = re.search(r"(?:^|\s)(v?\d+\.\d+\.\d+[^\s]*)", out.stdout + "\n" + out.stderr)
            _versions[key] = m.group(1) if m else None
        except (subprocess.TimeoutExpired, OSError):
            _versions[key] = None
    return _versions[key]


def _digest(target: Path | list[str]) -> str:
    if isinstance(target, list):
        return hashlib.sha256("\0".join(target).encode()).hexdigest()
    st = target.stat()
    key = (str(target), st.st_mtime_ns, st.st_size)
    if key not in _digests:
        h = hashlib.sha256()
        with open(target, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _digests[key] = h.hexdigest()
    return _digests[key]


_applets: dict[str, list[str]] = {}


def applets(binary: Path) -> list[str]:
    """The applets of a multi-call busybox (`busybox --list`)."""
    if str(binary) not in _applets:
        out = subprocess.run([str(binary), "--list"], capture_output=True, text=True, timeout=20, check=True)
        _applets[str(binary)] = [a for a in out.stdout.split() if a and "/" not in a and a != os.path.basename(binary)]
    return _applets[str(binary)]


def python_standin(script: Path) -> list[str]:
    """The argv prefix that runs a Python stand-in of this repository (kept as a file path: the
    container's workingDir is the manifest's, not the repository)."""
    return [sys.executable, "-I", str(Path(script).resolve())]


# ---------------------------------------------------------------------------------------------------
# A small Kubernetes API client (stdlib only: the container helper below imports this module too).


class ApiError(Exception):
    def __init__(self, status: int, body: dict | str, method: str, path: str):
        self.status = status
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        self.reason = self.body.get("reason", "")
        super().__init__(f"{method} {path}: HTTP {status} {self.reason}: {self.body.get('message', '')}".strip())


class KubeClient:
    """HTTPS to the API server with a client certificate or a bearer token (tokenFile re-read on each
    request, as client-go re-reads it, so a refreshed ServiceAccount token is picked up)."""

    def __init__(self, server: str, *, ca_data: str | None = None, ca_file: str | None = None,
                 cert_file: str | None = None, key_file: str | None = None, token: str | None = None,
                 token_file: str | None = None, user_agent: str = "osk8s-pods"):
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
                f.write(base64.b64decode(user["client-certificate-data"]) + b"\n" + base64.b64decode(user["client-key-data"]))
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

    def request(self, method: str, path: str, body=None, *, query: dict | None = None,
                content_type: str = "application/json", timeout: float = 30) -> dict:
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
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                           timeout=float(query.get("timeoutSeconds", 300)) + 30)
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


def _nano(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


def parse_time(s: str) -> float:
    import calendar

    return calendar.timegm(time.strptime(s.replace(".000000", "")[:19], "%Y-%m-%dT%H:%M:%S"))


# ---------------------------------------------------------------------------------------------------
# $(VAR) expansion, exactly third_party/forked/golang/expansion/expand.go


def expand(text: str, *maps: dict[str, str]) -> str:
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close == -1:
                    out.append("$(")
                    i += 2
                    continue
                name = text[i + 2:close]
                out.append(next((m[name] for m in maps if name in m), f"$({name})"))
                i = close + 1
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def service_env(services: list[dict]) -> dict[str, str]:
    """pkg/kubelet/envvars/envvars.go FromServices."""
    env: dict[str, str] = {}
    for svc in services:
        ip = svc["spec"].get("clusterIP")
        if not ip or ip == "None" or not svc["spec"].get("ports"):
            continue
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        ports = svc["spec"]["ports"]
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for p in ports:
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
        for i, p in enumerate(ports):
            proto = p.get("protocol", "TCP")
            hostport = f"[{ip}]:{p['port']}" if ":" in ip else f"{ip}:{p['port']}"
            if i == 0:
                env[f"{prefix}_PORT"] = f"{proto.lower()}://{hostport}"
            pp = f"{prefix}_PORT_{p['port']}_{proto.upper()}"
            env[pp] = f"{proto.lower()}://{hostport}"
            env[pp + "_PROTO"] = proto.lower()
            env[pp + "_PORT"] = str(p["port"])
            env[pp + "_ADDR"] = ip
    return env


_QUANTITY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "n": 1e-9, "u": 1e-6,
             "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def quantity(q) -> float:
    m = re.fullmatch(r"([0-9.]+)(e[0-9]+|[A-Za-z]*)", str(q))
    if not m:
        raise ValueError(f"bad quantity {q!r}")
    num, suffix = float(m.group(1)), m.group(2)
    return num * 10 ** int(suffix[1:]) if suffix.startswith("e") else num * _QUANTITY[suffix]


class ConfigError(Exception):
    """CreateContainerConfigError: the container cannot be created (kubelet retries)."""


class MountError(Exception):
    """FailedMount: a volume cannot be set up (kubelet retries)."""


# ---------------------------------------------------------------------------------------------------
# Volumes: AtomicWriter (pkg/volume/util/atomic_writer.go)


def atomic_write(target: Path, payload: dict[str, tuple[bytes, int, int | None]], fs_group: int | None = None) -> bool:
    """payload: {relative path: (data, mode, owner uid or None)}. Returns True when it wrote."""
    target.mkdir(parents=True, exist_ok=True)
    for p in payload:
        if p.startswith("/") or ".." in Path(p).parts or not p:
            raise MountError(f"invalid path {p!r}")
    data_link = target / "..data"
    old = os.readlink(data_link) if data_link.is_symlink() else ""
    if old:
        have = {}
        for dirpath, _, files in os.walk(target / old):
            for f in files:
                full = Path(dirpath) / f
                st = full.stat()
                have[str(full.relative_to(target / old))] = (full.read_bytes(), st.st_mode & 0o7777, st.st_uid)
        want = {p: (d, m | (0o440 if fs_group is not None else 0), 0 if u is None else u) for p, (d, m, u) in payload.items()}
        if have == want:
            _visible(target, payload)
            return False
    ts = Path(_mkdtemp(target, time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())))
    os.chmod(ts, 0o755)
    for p, (data, mode, uid) in payload.items():
        full = ts / p
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)
        os.chmod(full, mode)
        if uid is not None:
            os.lchown(full, uid, -1)
        if fs_group is not None:  # volume.SetVolumeOwnership (read-only volume): group fsGroup, mode | 0440
            os.chown(full, -1, fs_group)
            os.chmod(full, mode | 0o440)
    if fs_group is not None:
        os.chown(ts, -1, fs_group)
    tmp_link = target / "..data_tmp"
    os.symlink(ts.name, tmp_link)
    os.rename(tmp_link, data_link)
    _visible(target, payload)
    want_top = {p.split("/", 1)[0] for p in payload}
    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.name not in want_top:
            entry.unlink()
    if old:
        shutil.rmtree(target / old, ignore_errors=True)
    return True


def _mkdtemp(parent: Path, prefix: str) -> str:
    import tempfile

    return tempfile.mkdtemp(prefix=prefix, dir=parent)


def _visible(target: Path, payload: dict) -> None:
    for p, (_, _, uid) in payload.items():
        top = p.split("/", 1)[0]
        link = target / top
        if not link.is_symlink():
            os.symlink(f"..data/{top}", link)
            if uid is not None:
                os.lchown(link, uid, -1)


def key_payload(data: dict[str, bytes], items: list[dict] | None, default_mode: int, optional: bool,
                what: str, user: int | None = None) -> dict[str, tuple[bytes, int, int | None]]:
    """pkg/volume/secret/secret.go and configmap.go MakePayload."""
    if not items:
        return {k: (v, default_mode, user) for k, v in data.items()}
    out = {}
    for it in items:
        if it["key"] not in data:
            if optional:
                continue
            raise MountError(f"{what}: references non-existent {'config' if what.startswith('configmap') else 'secret'} "
                             f"key: {it['key']}")
        out[it["path"]] = (data[it["key"]], it.get("mode", default_mode), user)
    return out


# ---------------------------------------------------------------------------------------------------
# CRI log files


class CriLog:
    """containerd's CRI log format: one `<RFC3339Nano> <stream> <F|P> <content>` line per output line;
    lines longer than 16 KiB are split into P(artial) records."""

    MAX_LINE = 16 * 1024

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.f = open(path, "ab", buffering=0)
        self.lock = threading.Lock()

    def record(self, stream: str, content: bytes, full: bool = True) -> None:
        with self.lock:
            self.f.write(f"{_nano(time.time())} {stream} {'F' if full else 'P'} ".encode() + content + b"\n")

    def pump(self, fd: int, stream: str) -> threading.Thread:
        def run():
            buf = b""
            try:
                while chunk := os.read(fd, 65536):
                    buf += chunk
                    while True:
                        nl = buf.find(b"\n")
                        if nl == -1:
                            if len(buf) >= self.MAX_LINE:
                                self.record(stream, buf[:self.MAX_LINE], full=False)
                                buf = buf[self.MAX_LINE:]
                                continue
                            break
                        line, buf = buf[:nl], buf[nl + 1:]
                        while len(line) > self.MAX_LINE:
                            self.record(stream, line[:self.MAX_LINE], full=False)
                            line = line[self.MAX_LINE:]
                        self.record(stream, line)
            except OSError:
                pass
            finally:
                if buf:
                    self.record(stream, buf)
                os.close(fd)

        t = threading.Thread(target=run, daemon=True, name=f"log-{self.path.parent.name}-{stream}")
        t.start()
        return t

    def close(self) -> None:
        self.f.close()


# ---------------------------------------------------------------------------------------------------
# Per-container runtime record


@dataclass
class Backoff:
    """client-go util/flowcontrol Backoff with kubelet's HasExpiredFunc (600 s), no jitter."""
    initial: float = INITIAL_BACKOFF
    maximum: float = MAX_BACKOFF
    entries: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (backoff, lastUpdate)

    def in_backoff_since(self, key: str, event: float, now: float) -> bool:
        if key not in self.entries:
            return False
        backoff, last = self.entries[key]
        if event - last > BACKOFF_RESET:
            return False
        return now - event < backoff

    def get(self, key: str) -> float:
        return self.entries.get(key, (0.0, 0.0))[0]

    def next(self, key: str, event: float, now: float) -> None:
        if key not in self.entries or event - self.entries[key][1] > BACKOFF_RESET:
            self.entries[key] = (self.initial, now)
        else:
            self.entries[key] = (min(self.entries[key][0] * 2, self.maximum), now)


@dataclass
class ProbeState:
    spec: dict
    kind: str  # readiness | liveness | startup
    next_at: float = 0.0
    last: str = ""
    run: int = 0
    on_hold: bool = False


@dataclass
class Ctr:
    spec: dict
    init: bool = False
    restart_count: int = 0
    proc: subprocess.Popen | None = None
    cid: str = ""
    started_at: float = 0.0
    waiting: tuple[str, str] | None = None  # (reason, message) when not running
    terminated: dict | None = None  # the state when it stays terminated
    last_terminated: dict | None = None
    next_try: float = 0.0
    ready: bool = False
    started: bool = False
    probes: list[ProbeState] = field(default_factory=list)
    log: CriLog | None = None
    pumps: list[threading.Thread] = field(default_factory=list)
    go_runner: bool = False
    user: tuple[int, int, list[int]] = (0, 0, [])
    env: dict[str, str] = field(default_factory=dict)
    image_id: str = ""

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def running(self) -> bool:
        return self.proc is not None


# ---------------------------------------------------------------------------------------------------


class PodRunner:
    def __init__(self, node_name: str, node_ip: str, kubeconfig: Path, images: dict[str, Path | list[str]],
                 state_dir: Path, log_dir: Path = Path("/var/log/pods"), csi=None):
        self.node_name, self.node_ip = node_name, node_ip
        # csi(pod, volume name, PV) -> Path: a CSI persistent volume set up on this node (the kubelet's
        # WaitForAttach, MountDevice/NodeStage and SetUp/NodePublish), raising MountError until it is
        self.csi = csi
        self.images = {k: (v if isinstance(v, list) else Path(v)) for k, v in images.items()}
        self.state_dir, self.log_dir = Path(state_dir), Path(log_dir)
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self.api = KubeClient.from_kubeconfig(Path(kubeconfig), self.state_dir / "pki",
                                              user_agent=f"osk8s-pods/{node_name}")
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.started_at = time.monotonic()
        self.backoff = Backoff()
        self._reap_leftovers()

    # -- what it runs --------------------------------------------------------------------------------
    def explain(self, pod: dict) -> str:
        """Why this runner does not run the pod ('' when it does)."""
        if "kubernetes.io/config.mirror" in (pod["metadata"].get("annotations") or {}):
            return "a mirror pod (its static pod is the kubelet's)"
        spec = pod["spec"]
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            repo, tag = split_image(c.get("image", ""))
            target = self.images.get(repo)
            if target is None:
                return f"container {c['name']}: image {repo} is not mapped"
            if isinstance(target, Path):
                image = IMAGES.get(repo, ImageConfig())
                version = binary_version(target, image.version_argv)
                want, have = (tag or "").lstrip("v"), (version or "").lstrip("v")
                if image.release == "major":
                    want, have = want.split(".")[0], have.split(".")[0]
                if version is not None and want != have:
                    return f"container {c['name']}: image tag {tag} but {target.name} is {version}"
        return ""

    def handles(self, pod: dict) -> bool:
        return not self.explain(pod)

    # -- the kubelet's pod loop ----------------------------------------------------------------------
    def sync(self, pods: list[dict]) -> None:
        seen = set()
        with self.lock:
            for pod in pods:
                uid = pod["metadata"]["uid"]
                if pod["spec"].get("nodeName") != self.node_name:
                    continue
                worker = self.workers.get(uid)
                if worker is None:
                    why = self.explain(pod)
                    if why:
                        continue
                    if pod["metadata"].get("deletionTimestamp"):
                        self.delete_unstarted(pod)  # nothing of it ran here: deleted at once, as kubelet does
                        continue
                    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                        continue
                    worker = PodWorker(self, pod)
                    worker.start()
                    self.workers[uid] = worker
                seen.add(uid)
                worker.update(pod)
            for uid, worker in list(self.workers.items()):
                if uid not in seen:
                    worker.terminate(gone=True)
                if not worker.is_alive() and worker.finished:
                    del self.workers[uid]

    def delete_unstarted(self, pod: dict) -> None:
        md = pod["metadata"]
        try:
            self.api.request("DELETE", f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}",
                             {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                              "preconditions": {"uid": md["uid"]}})
        except ApiError as e:
            if e.status not in (404, 409):
                log.warning("pod %s/%s: delete: %s", md["namespace"], md["name"], e)

    def stop(self) -> None:
        with self.lock:
            workers = list(self.workers.values())
            for w in workers:
                w.terminate(gone=True, shutdown=True)
        for w in workers:
            w.join()
        with self.lock:
            self.workers.clear()

    def pod_dir(self, uid: str) -> Path:
        return self.state_dir / "pods" / uid

    def _reap_leftovers(self) -> None:
        """Containers a previous runner of this state_dir left running: end them (by the PID and start
        time it recorded), then remove their pod directories."""
        base = self.state_dir / "pods"
        if not base.exists():
            return
        for pidfile in base.glob("*/containers/*.pid"):
            try:
                pid, start = pidfile.read_text().split()
                if _proc_start(int(pid)) == start:
                    os.killpg(int(pid), signal.SIGKILL)
            except (ValueError, OSError):
                pass
        shutil.rmtree(base, ignore_errors=True)

    # -- what a container gets -----------------------------------------------------------------------
    def event(self, pod: dict, reason: str, message: str, kind: str = "Normal", field_path: str | None = None) -> None:
        md = pod["metadata"]
        ref = {"kind": "Pod", "namespace": md["namespace"], "name": md["name"], "uid": md["uid"], "apiVersion": "v1"}
        if field_path:
            ref["fieldPath"] = field_path
        now = rfc3339()
        ev = {"metadata": {"name": f"{md['name']}.{_random.token_hex(8)}", "namespace": md["namespace"]},
              "involvedObject": ref, "reason": reason, "message": message, "type": kind,
              "source": {"component": "kubelet", "host": self.node_name}, "firstTimestamp": now, "lastTimestamp": now,
              "count": 1, "reportingComponent": "kubelet", "reportingInstance": self.node_name}
        try:
            self.api.request("POST", f"/api/v1/namespaces/{md['namespace']}/events", ev)
        except (ApiError, OSError) as e:
            log.debug("event %s %s: %s", reason, md["name"], e)


def _signal_text(sig: int) -> str:
    return {signal.SIGTERM: "terminated", signal.SIGINT: "interrupt", signal.SIGHUP: "hangup",
            signal.SIGQUIT: "quit", signal.SIGABRT: "aborted", signal.SIGSEGV: "segmentation fault"}.get(sig, f"signal {sig}")


def _proc_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------------------------------------------


class PodWorker(threading.Thread):
    """One pod: volumes, containers, probes and status (kubelet's podWorkers + SyncPod)."""

    def __init__(self, runner: PodRunner, pod: dict):
        md = pod["metadata"]
        super().__init__(daemon=True, name=f"pod-{md['namespace']}/{md['name']}")
        self.runner, self.api, self.pod = runner, runner.api, pod
        self.uid, self.ns, self.name = md["uid"], md["namespace"], md["name"]
        self.dir = runner.pod_dir(self.uid)
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.stopping: dict | None = None
        self.finished = False
        self.first_seen = time.time()
        self.volumes_ready = False
        self.volume_error = ""
        self.pvc_paths: dict[str, Path] = {}
        self.next_volume_sync = 0.0
        self.tokens: dict[str, tuple[str, float, float]] = {}  # volume/path -> (token, issued, expires)
        self.status_sent: dict | None = None
        self.next_status_sync = 0.0
        self.sandbox = False
        self.init = [Ctr(c, init=True) for c in pod["spec"].get("initContainers", [])]
        self.ctrs = [Ctr(c) for c in pod["spec"].get("containers", [])]
        self.probe_epoch = time.monotonic()
        for c in self.init + self.ctrs:
            for kind in ("startup", "readiness", "liveness"):
                spec = c.spec.get(f"{kind}Probe")
                if spec and not c.init:
                    c.probes.append(ProbeState(spec, kind))

    def update(self, pod: dict) -> None:
        with self.lock:
            self.pod = pod
            if pod["metadata"].get("deletionTimestamp") and not self.stopping:
                grace = pod["metadata"].get("deletionGracePeriodSeconds")
                self.stopping = {"grace": grace if grace is not None else self._grace(), "delete": True}
        self.wake.set()

    def terminate(self, gone: bool = False, shutdown: bool = False) -> None:
        with self.lock:
            if not self.stopping:
                self.stopping = {"grace": self._grace(), "delete": False}
            if gone:
                self.stopping["delete"] = False
            self.stopping["shutdown"] = shutdown
        self.wake.set()

    def _grace(self) -> int:
        g = self.pod["spec"].get("terminationGracePeriodSeconds")
        return DEFAULT_GRACE if g is None else g

    # -- loop ------------------------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            with self.lock:
                stopping = self.stopping
            if stopping:
                break
            try:
                self.step()
            except Exception:  # keep the pod worker alive, as kubelet's does; the log says why
                log.exception("pod %s/%s: sync failed", self.ns, self.name)
            self.wake.wait(timeout=self._sleep())
            self.wake.clear()
        try:
            self.kill_all(stopping["grace"])
            if not stopping.get("shutdown"):
                self.push_status(force=True)
            if stopping.get("delete"):
                try:  # the status manager's final delete (status_manager.go: canBeDeleted -> Delete, grace 0)
                    self.api.request("DELETE", f"/api/v1/namespaces/{self.ns}/pods/{self.name}",
                                     {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                                      "preconditions": {"uid": self.uid}})
                except ApiError as e:
                    if e.status not in (404, 409):
                        log.warning("pod %s/%s: final delete: %s", self.ns, self.name, e)
        except Exception:
            log.exception("pod %s/%s: stop failed", self.ns, self.name)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.finished = True

    def _sleep(self) -> float:
        now = time.monotonic()
        due = [p.next_at for c in self.ctrs for p in c.probes if c.running and not p.on_hold]
        due += [c.next_try for c in self.init + self.ctrs if c.next_try]
        nearest = min(due, default=now + 1.0)
        return max(0.05, min(1.0, nearest - now))  # PLEG relists every second

    def step(self) -> None:
        now = time.monotonic()
        if not self.volumes_ready or now >= self.next_volume_sync:
            try:
                self.setup_volumes()
                self.volumes_ready, self.volume_error = True, ""
                self.next_volume_sync = now + SYNC_FREQUENCY
            except (MountError, ApiError, OSError) as e:
                if str(e) != self.volume_error:
                    self.runner.event(self.pod, "FailedMount", str(e), "Warning")
                    log.warning("pod %s/%s: %s", self.ns, self.name, e)
                self.volume_error = str(e)
                self.next_volume_sync = now + 2.0
                if not self.volumes_ready:
                    self.push_status()
                    return
        self.sandbox = True
        for c in self.init + self.ctrs:
            if c.proc is not None and c.proc.poll() is not None:
                self.on_exit(c)
        initialized = self.run_init()
        if initialized:
            for c in self.ctrs:
                if not c.running:
                    self.maybe_start(c)
        self.run_probes()
        self.push_status()

    def run_init(self) -> bool:
        for c in self.init:
            if c.terminated and c.terminated["exitCode"] == 0:
                continue
            if c.running:
                return False
            self.maybe_start(c)
            return False
        return True

    def should_restart(self, container: dict, exit_code: int) -> bool:
        """pkg/api/v1/pod/util.go ContainerShouldRestart (ContainerRestartRules is on in 1.37)."""
        if container.get("restartPolicy"):
            for rule in container.get("restartPolicyRules") or []:
                codes = rule.get("exitCodes") or {}
                hit = exit_code in (codes.get("values") or [])
                if (hit if codes.get("operator") == "In" else not hit) and rule.get("action") == "Restart":
                    return True
            if container["restartPolicy"] in ("Always", "OnFailure", "Never"):
                return container["restartPolicy"] == "Always" or (container["restartPolicy"] == "OnFailure" and exit_code != 0)
        policy = self.pod["spec"].get("restartPolicy", "Always")
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    def maybe_start(self, c: Ctr) -> None:
        now = time.monotonic()
        if c.terminated is not None:
            return  # stays terminated (restartPolicy)
        if c.next_try and now < c.next_try:
            return
        if c.last_terminated is not None:  # an exited container: kuberuntime doBackOff
            key = f"{self.name}_{self.ns}_{self.uid}_{c.name}"  # GetBackoffKey (without the spec hash)
            finished = c.last_terminated["_finished"]
            wall = time.time()
            if self.runner.backoff.in_backoff_since(key, finished, wall):
                backoff = self.runner.backoff.get(key)
                msg = f"back-off {int(backoff)}s restarting failed container={c.name} pod={self.name}_{self.ns}({self.uid})"
                if c.waiting is None or c.waiting[0] != "CrashLoopBackOff":
                    self.runner.event(self.pod, "BackOff", f"Back-off restarting failed container {c.name} in pod "
                                      f"{self.name}_{self.ns}({self.uid})", "Warning", self._field(c))
                c.waiting = ("CrashLoopBackOff", msg)
                c.next_try = now + max(0.05, finished + backoff - wall)
                return
            self.runner.backoff.next(key, finished, wall)
            c.restart_count += 1
        c.next_try = 0.0
        try:
            self.start_container(c)
        except ConfigError as e:
            if c.last_terminated is not None:
                c.restart_count -= 1
            c.waiting = ("CreateContainerConfigError", str(e))
            c.next_try = now + 10.0  # kubelet's backOffPeriod after a failed sync
            self.runner.event(self.pod, "Failed", f"Error: {e}", "Warning", self._field(c))

    def _field(self, c: Ctr) -> str:
        return f"spec.{'initContainers' if c.init else 'containers'}{{{c.name}}}"

    # -- start / stop ----------------------------------------------------------------------------------
    def start_container(self, c: Ctr) -> None:
        spec = self.container_spec(c)
        cdir = self.dir / "containers"
        cdir.mkdir(parents=True, exist_ok=True)
        c.cid = _random.token_hex(32)
        err_file = cdir / f"{c.name}.error"
        err_file.unlink(missing_ok=True)
        spec["error_file"] = str(err_file)
        spec_file = cdir / f"{c.name}.spec.json"
        fd = os.open(spec_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f)
        logdir = self.runner.log_dir / f"{self.ns}_{self.name}_{self.uid}" / c.name
        if c.log:
            c.log.close()
        c.log = CriLog(logdir / f"{c.restart_count}.log")
        if c.go_runner:
            for line in spec.pop("go_runner_preamble", []):
                c.log.record("stderr", line.encode())
        out_r, out_w = os.pipe()
        err_r, err_w = (out_r, out_w) if spec.get("merge_stderr") else os.pipe()
        argv = ["unshare", "--mount", "--uts", "--propagation", "slave", "--",
                sys.executable, "-I", "-S", str(Path(__file__).resolve()), "--container", str(spec_file)]
        try:
            c.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, close_fds=True,
                                      start_new_session=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        finally:
            os.close(out_w)
            if err_w != out_w:
                os.close(err_w)
        c.pumps = [c.log.pump(out_r, "stdout")] + ([] if err_r == out_r else [c.log.pump(err_r, "stderr")])
        (cdir / f"{c.name}.pid").write_text(f"{c.proc.pid} {_proc_start(c.proc.pid) or ''}\n")
        c.started_at = time.time()
        c.waiting, c.ready, c.started = None, False, not any(p.kind == "startup" for p in c.probes)
        for p in c.probes:
            p.last, p.run, p.on_hold = "", 0, False
            p.next_at = self._first_probe(p)
        self.runner.event(self.pod, "Started", f"Started container {c.name}", field_path=self._field(c))

    def _first_probe(self, p: ProbeState) -> float:
        """The probe worker ticks every periodSeconds from when it was created (worker.go run)."""
        period = p.spec.get("periodSeconds", 10)
        now = time.monotonic()
        ticks = int((now - self.probe_epoch) // period) + 1
        return self.probe_epoch + ticks * period

    def on_exit(self, c: Ctr, final: bool = False) -> None:
        rc = c.proc.returncode
        for t in c.pumps:
            t.join(timeout=2)
        finished = time.time()
        code = rc if rc >= 0 else 128 - rc
        err_file = self.dir / "containers" / f"{c.name}.error"
        reason, message = ("Completed" if code == 0 else "Error"), None
        if err_file.exists() and err_file.stat().st_size:
            reason, message, code = "StartError", err_file.read_text().strip(), 128
        elif c.go_runner and code != 0 and rc != -signal.SIGKILL:
            # go-runner: cmd.Wait() fails -> log.Fatal("running command: ...") on its stderr, exit 1 (a SIGKILL
            # of the container kills go-runner itself: 137)
            what = f"exit status {code}" if rc >= 0 else f"signal: {_signal_text(-rc)}"
            c.log.record("stderr", f"{time.strftime('%Y/%m/%d %H:%M:%S')} running command: {what}".encode())
            code = 1
        term = {"exitCode": code, "reason": reason, "startedAt": rfc3339(c.started_at), "finishedAt": rfc3339(finished),
                "containerID": f"osk8s-pods://{c.cid}", "_finished": finished}
        if message:
            term["message"] = message
        c.proc, c.ready, c.started = None, False, False
        (self.dir / "containers" / f"{c.name}.pid").unlink(missing_ok=True)
        if final or (c.init and code == 0):
            c.terminated = term
        elif self.should_restart(c.spec, code):
            c.last_terminated, c.waiting = term, ("ContainerCreating", "")
        else:
            c.terminated = term

    def kill(self, c: Ctr, grace: float, reason: str = "") -> None:
        if c.proc is None:
            return
        if reason:
            self.runner.event(self.pod, "Killing", f"Stopping container {c.name}{reason}", field_path=self._field(c))
        try:
            os.killpg(c.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            c.proc.wait(timeout=max(grace, 0))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(c.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            c.proc.wait()
        self.on_exit(c)

    def kill_all(self, grace: float) -> None:
        """Containers stopped at once, each with the grace period (kubelet's minimum is 2 s)."""
        live = [c for c in self.ctrs + self.init if c.running]
        for c in live:
            try:
                os.killpg(c.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + max(grace, 2 if grace else 0)
        for c in live:
            try:
                c.proc.wait(timeout=max(0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(c.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                c.proc.wait()
            self.on_exit(c, final=True)  # stopped for good, whatever the restart policy
        for c in self.ctrs + self.init:
            if c.log:
                c.log.close()

    # -- container config ------------------------------------------------------------------------------
    def container_spec(self, c: Ctr) -> dict:
        pod, spec = self.pod, c.spec
        psc, csc = pod["spec"].get("securityContext") or {}, spec.get("securityContext") or {}
        for hook in ("postStart", "preStop"):
            if (spec.get("lifecycle") or {}).get(hook):
                raise ConfigError(f"osk8s pod runner: lifecycle.{hook} is not supported")
        repo, _ = split_image(spec["image"])
        target = self.runner.images[repo]
        image = IMAGES.get(repo, ImageConfig())
        c.image_id = f"{repo}@sha256:{_digest(target)}"
        env = self.environment(c)
        command = [expand(a, env) for a in spec.get("command") or []]
        args = [expand(a, env) for a in spec.get("args") or []]
        if not command:  # containerd WithProcessArgs
            args = args or list(image.cmd)
            command = list(image.entrypoint)
        argv = command + args
        if not argv:
            raise ConfigError("no command specified")
        workdir = spec.get("workingDir") or image.workdir
        uid = csc.get("runAsUser", psc.get("runAsUser", image.user))
        # the image's /etc/passwd (distroless) gives a known user's group; containerd uses 0 otherwise
        gid = csc.get("runAsGroup", psc.get("runAsGroup", {0: 0, 65532: 65532, 65534: 65534}.get(uid, 0)))
        if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) and uid == 0:  # kubelet verifyRunAsNonRoot
            raise ConfigError("container has runAsNonRoot and image will run as root "
                              f"(pod: \"{self.name}_{self.ns}({self.uid})\", container: {c.name})")
        groups = list(psc.get("supplementalGroups") or []) + ([psc["fsGroup"]] if "fsGroup" in psc else [])
        c.user = (uid, gid, groups)
        full_env = dict(image.env)
        full_env["HOSTNAME"] = self.hostname()
        full_env.setdefault("HOME", "/root" if uid == 0 else "/")
        full_env.update(env)
        c.env = full_env
        result = {"root": str(self.dir / "root"), "hostname": self.hostname(), "env": full_env, "cwd": workdir,
                  "uid": uid, "gid": gid, "groups": groups, "mounts": [], "files": {}}
        # go-runner (component-base logs/kube-log-runner): flags, then the command it runs
        c.go_runner = bool(argv and argv[0] == GO_RUNNER and image.entrypoint == (GO_RUNNER,))
        binary_path = image.binary
        if c.go_runner:
            argv = self.go_runner(argv, result, binary_path)
        elif image.applets:  # a multi-call binary: argv[0] is looked up on PATH among its applets at exec
            result["mounts"] += [{"kind": "symlink", "target": f"{os.path.dirname(binary_path)}/{a}",
                                  "to": os.path.basename(binary_path)} for a in applets(target)]
        elif binary_path is not None and self._resolve(argv[0], workdir, full_env) != binary_path:
            result["fail"] = {"start_error": f'exec: "{argv[0]}": stat {argv[0]}: no such file or directory'}
        if binary_path is None:  # an image we know nothing of: its program is where argv[0] says
            binary_path = self._resolve(argv[0], workdir, full_env)
        if isinstance(target, list):
            result["argv"] = target + argv[1:]
            result["mounts"] += self.standin_mounts(target)
        else:
            result["argv"] = argv
            result["mounts"].append({"kind": "bind", "source": str(target), "target": binary_path, "ro": True})
            for d in image.libs:  # merged /usr: /lib and /lib64 are links into /usr, as on the host
                result["mounts"].append({"kind": "bind", "source": d, "target": d, "ro": True})
            result["mounts"] += [{"kind": "symlink", "target": d, "to": os.readlink(d)}
                                 for d in ("/lib", "/lib64") if image.libs and os.path.islink(d)]
        result["mounts"] += self.base_mounts(c) + self.volume_mounts(c, env)
        privileged = bool(csc.get("privileged"))
        caps = set(CAPS) if privileged else set(DEFAULT_CAPS)
        capspec = csc.get("capabilities") or {}
        for name in capspec.get("drop") or []:
            caps = set() if name.upper() == "ALL" else caps - {name.upper().removeprefix("CAP_")}
        for name in capspec.get("add") or []:
            caps = set(CAPS) if name.upper() == "ALL" else caps | {name.upper().removeprefix("CAP_")}
        result["caps"] = sorted(CAPS[n] for n in caps if n in CAPS)
        result["no_new_privs"] = csc.get("allowPrivilegeEscalation") is False
        result["readonly_root"] = bool(csc.get("readOnlyRootFilesystem"))
        result["privileged"] = privileged
        result["files"]["/etc/passwd"] = PASSWD
        result["files"]["/etc/group"] = GROUP
        return result

    @staticmethod
    def _resolve(arg0: str, workdir: str, env: dict) -> str:
        if "/" in arg0:
            return os.path.normpath(os.path.join(workdir, arg0))
        for d in env.get("PATH", "").split(":"):
            if d:
                return os.path.join(d, arg0)  # the first PATH entry is where a single-binary image would have it
        return "/" + arg0

    def go_runner(self, argv: list[str], result: dict, binary: str | None) -> list[str]:
        """Parse go-runner's flags as Go's flag package does; its child is the container's program."""
        flags = {"flush-interval": "0s", "log-file": "", "log-file-size": "0", "log-file-age": "0s",
                 "also-stdout": "false", "redirect-stderr": "true"}
        bools = {"also-stdout", "redirect-stderr"}
        rest, i = argv[1:], 0
        while i < len(rest):
            a = rest[i]
            if a == "--":
                i += 1
                break
            if len(a) < 2 or a[0] != "-":
                break
            name = a.lstrip("-")
            name, has_value, value = name.partition("=")
            if name not in flags:
                result["fail"] = {"message": f"flag provided but not defined: -{name}", "code": 2}
                return argv
            if name in bools:
                flags[name] = value if has_value else "true"
            elif has_value:
                flags[name] = value
            elif i + 1 < len(rest):
                i += 1
                flags[name] = rest[i]
            else:
                result["fail"] = {"message": f"flag needs an argument: -{name}", "code": 2}
                return argv
            i += 1
        child = rest[i:]
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")
        if not child:
            result["fail"] = {"message": f"{stamp} not enough arguments to run", "code": 1}
            return argv
        if flags["log-file"]:
            raise ConfigError("osk8s pod runner: go-runner --log-file is not emulated")
        result["merge_stderr"] = flags["redirect-stderr"] == "true"
        result["go_runner_preamble"] = [
            f"{stamp} Running command:", f"Command env: (enable-flush={flags['flush-interval'] != '0s'}, log-file=, "
            f"log-file-size=0, log-file-age=0s, also-stdout={flags['also-stdout']}, "
            f"redirect-stderr={flags['redirect-stderr']})".replace("True", "true").replace("False", "false"),
            "Run from directory: ", f"Executable path: {child[0]}", f"Args (comma-delimited): {','.join(child)}",
            f"{stamp} Now listening for interrupts"]
        if binary is not None and self._resolve(child[0], result["cwd"], result["env"]) != binary:
            result["fail"] = {"message": f"{stamp} starting command: fork/exec {child[0]}: no such file or directory",
                              "code": 1}
        return child

    def hostname(self) -> str:
        spec = self.pod["spec"]
        if spec.get("hostNetwork"):
            return self.runner.node_name
        return (spec.get("hostname") or self.name)[:63].rstrip("-.")

    def environment(self, c: Ctr) -> dict[str, str]:
        """kubelet_pods.go makeEnvironmentVariables."""
        spec = self.pod["spec"]
        try:
            services = self.api.get("/api/v1/services")["items"]
        except ApiError as e:
            raise ConfigError(f"failed to list services when setting up env vars: {e}") from e
        links = spec.get("enableServiceLinks", True)
        mapped = {s["metadata"]["name"]: s for s in services
                  if (s["metadata"]["namespace"] == "default" and s["metadata"]["name"] == "kubernetes")}
        for s in services:
            if s["metadata"]["namespace"] == self.ns and links and not (
                    self.ns == "default" and s["metadata"]["name"] == "kubernetes"):
                mapped[s["metadata"]["name"]] = s
        svc_env = service_env(list(mapped.values()))
        env: dict[str, str] = {}
        cache: dict[tuple, dict | None] = {}
        for ef in c.spec.get("envFrom") or []:
            for kind in ("configMapRef", "secretRef"):
                ref = ef.get(kind)
                if ref:
                    obj = self._ref(kind, ref["name"], ref.get("optional", False), cache)
                    if obj is None:
                        continue
                    for k, v in self._data(kind, obj).items():
                        env[ef.get("prefix", "") + k] = v.decode()
        for ev in c.spec.get("env") or []:
            value = ev.get("value", "")
            if value:
                value = expand(value, env, svc_env)
            elif ev.get("valueFrom"):
                vf = ev["valueFrom"]
                if "fieldRef" in vf:
                    value = self.field(vf["fieldRef"]["fieldPath"])
                elif "resourceFieldRef" in vf:
                    value = self.resource_field(vf["resourceFieldRef"], c.spec)
                else:
                    kind = "configMapRef" if "configMapKeyRef" in vf else "secretRef"
                    ref = vf.get("configMapKeyRef") or vf.get("secretKeyRef")
                    if ref is None:
                        raise ConfigError(f"osk8s pod runner: env {ev['name']}: unsupported valueFrom {list(vf)}")
                    optional = ref.get("optional", False)
                    obj = self._ref(kind, ref["name"], optional, cache)
                    if obj is None:
                        continue
                    data = self._data(kind, obj)
                    if ref["key"] not in data:
                        if optional:
                            continue
                        what = "ConfigMap" if kind == "configMapRef" else "Secret"
                        raise ConfigError(f"couldn't find key {ref['key']} in {what} {self.ns}/{ref['name']}")
                    value = data[ref["key"]].decode()
            env[ev["name"]] = value
        for k, v in svc_env.items():
            env.setdefault(k, v)
        return env

    def _ref(self, kind: str, name: str, optional: bool, cache: dict) -> dict | None:
        key = (kind, name)
        if key not in cache:
            plural = "configmaps" if kind.startswith("configMap") else "secrets"
            try:
                cache[key] = self.api.get(f"/api/v1/namespaces/{self.ns}/{plural}/{name}")
            except ApiError as e:
                if e.status == 404 and optional:
                    cache[key] = None
                else:
                    what = "configmap" if plural == "configmaps" else "secret"
                    raise ConfigError(f"{what} \"{name}\" not found" if e.status == 404 else str(e)) from e
        return cache[key]

    @staticmethod
    def _data(kind: str, obj: dict) -> dict[str, bytes]:
        if kind.startswith("configMap"):
            out = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
            return out
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}

    def field(self, path: str) -> str:
        md, ip = self.pod["metadata"], self.runner.node_ip
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return (md.get(m.group(1)) or {}).get(m.group(2), "")
        simple = {"metadata.name": md["name"], "metadata.namespace": md["namespace"], "metadata.uid": md["uid"],
                  "spec.nodeName": self.pod["spec"].get("nodeName", ""),
                  "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", ""),
                  "status.hostIP": ip, "status.hostIPs": ip, "status.podIP": ip, "status.podIPs": ip}
        if path in simple:
            return simple[path]
        if path in ("metadata.labels", "metadata.annotations"):
            items = md.get(path.split(".")[1]) or {}
            return "\n".join(f'{k}="{json.dumps(v)[1:-1]}"' for k, v in sorted(items.items()))
        raise ConfigError(f"unsupported fieldRef {path}")

    def resource_field(self, ref: dict, container: dict | None) -> str:
        import math

        if ref.get("containerName"):
            container = next(c for c in self.pod["spec"]["containers"] if c["name"] == ref["containerName"])
        kind, res = ref["resource"].split(".", 1)
        value = ((container or {}).get("resources") or {}).get(kind, {}).get(res)
        if value is None and kind == "limits":  # defaulted to the node's allocatable
            node = self.api.get(f"/api/v1/nodes/{self.runner.node_name}")
            value = node.get("status", {}).get("allocatable", {}).get(res, "0")
        divisor = quantity(ref.get("divisor", "1"))
        return str(math.ceil(quantity(value or "0") / divisor))

    # -- mounts --------------------------------------------------------------------------------------------
    def base_mounts(self, c: Ctr) -> list[dict]:
        pod_etc = self.dir / "etc"
        pod_etc.mkdir(parents=True, exist_ok=True)
        spec = self.pod["spec"]
        if spec.get("hostNetwork"):  # nodeHostsFileContent
            hosts = "# Kubernetes-managed hosts file (host network).\n" + Path("/etc/hosts").read_text()
        else:  # managedHostsFileContent
            name = self.hostname()
            sub = spec.get("subdomain")
            fqdn = f"{name}.{sub}.{self.ns}.svc.cluster.local\t{name}" if sub else name
            hosts = ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                     "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
                     f"{self.runner.node_ip}\t{fqdn}\n")
        aliases = spec.get("hostAliases") or []
        if aliases:
            hosts += "\n# Entries added by HostAliases.\n" + "".join(
                f"{a['ip']}\t{chr(9).join(a.get('hostnames', []))}\n" for a in aliases)
        (pod_etc / "hosts").write_text(hosts)
        (pod_etc / "resolv.conf").write_text(Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else "")
        return [{"kind": "bind", "source": str(pod_etc / "hosts"), "target": "/etc/hosts", "ro": False},
                {"kind": "bind", "source": str(pod_etc / "resolv.conf"), "target": "/etc/resolv.conf", "ro": False},
                {"kind": "bind", "source": "/etc/ssl/certs", "target": "/etc/ssl/certs", "ro": True}]

    @staticmethod
    def standin_mounts(argv: list[str]) -> list[dict]:
        """A Python stand-in's 'image': the host's /usr and /lib* and the repository, read-only."""
        mounts = [{"kind": "bind", "source": d, "target": d, "ro": True}
                  for d in ("/usr", "/lib", "/lib64", "/etc/alternatives") if os.path.isdir(d) and not os.path.islink(d)]
        mounts += [{"kind": "symlink", "target": d, "to": os.readlink(d)}
                   for d in ("/bin", "/sbin", "/lib", "/lib64") if os.path.islink(d)]
        dirs = {str(ROOT), sys.base_prefix, sys.prefix}  # the repository and the interpreter's installation
        for a in argv:
            if a.startswith("/") and os.path.exists(a) and not a.startswith(("/usr/", str(ROOT) + "/")):
                dirs.add(os.path.dirname(a))
        mounts += [{"kind": "bind", "source": d, "target": d, "ro": True} for d in sorted(dirs)]
        return mounts

    def volume_mounts(self, c: Ctr, env: dict) -> list[dict]:
        vols = {v["name"]: v for v in self.pod["spec"].get("volumes") or []}
        out = []
        for vm in c.spec.get("volumeMounts") or []:
            vol = vols.get(vm["name"])
            if vol is None:
                raise ConfigError(f"cannot find volume \"{vm['name']}\" to mount into container \"{c.name}\"")
            source = self.volume_path(vol)
            sub = vm.get("subPath") or (expand(vm["subPathExpr"], env) if vm.get("subPathExpr") else "")
            if sub:
                if sub.startswith("/") or ".." in Path(sub).parts:
                    raise ConfigError(f"invalid subpath {sub!r}")
                source = source / sub
                if not source.exists() and not source.is_symlink():
                    source.mkdir(parents=True, mode=0o755)
            prop = vm.get("mountPropagation", "None")
            if prop == "Bidirectional" and not (c.spec.get("securityContext") or {}).get("privileged"):
                raise ConfigError("Bidirectional mount propagation is available only to privileged containers")
            out.append({"kind": "bind", "source": str(source), "target": vm["mountPath"], "ro": bool(vm.get("readOnly")),
                        "propagation": prop})
        return out

    def volume_path(self, vol: dict) -> Path:
        if "hostPath" in vol:
            return Path(vol["hostPath"]["path"])
        if "persistentVolumeClaim" in vol:  # set up by setup_volumes: .../kubernetes.io~csi/<pv>/mount
            return self.pvc_paths[vol["name"]]
        plugin = next(k for k in vol if k != "name")
        return self.dir / "volumes" / f"kubernetes.io~{re.sub(r'(?<!^)(?=[A-Z])', '-', plugin).lower()}" / vol["name"]

    def setup_volumes(self) -> None:
        """kubelet's volume manager: every volume of the pod set up (or re-read) before containers start."""
        spec = self.pod["spec"]
        psc = spec.get("securityContext") or {}
        fs_group = psc.get("fsGroup")
        fs_user = self._fs_user()
        base = self.dir / "volumes"
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o750)
        for vol in spec.get("volumes") or []:
            name = vol["name"]
            path = self.volume_path(vol) if "persistentVolumeClaim" not in vol else None
            if "hostPath" in vol:
                self.check_host_path(vol["hostPath"])
            elif "emptyDir" in vol:
                if not path.exists():
                    path.mkdir(parents=True)
                    os.chmod(path, 0o777)  # emptyDir's perm
                    if fs_group is not None:
                        os.chown(path, -1, fs_group)
                        os.chmod(path, 0o2777)
            elif "secret" in vol:
                src = vol["secret"]
                obj = self._volume_object("secrets", src["secretName"], src.get("optional", False), name)
                data = self._data("secretRef", obj) if obj else {}
                payload = key_payload(data, src.get("items"), src.get("defaultMode", 0o644), src.get("optional", False),
                                      f"secret {src['secretName']}")
                atomic_write(path, payload, fs_group)
            elif "configMap" in vol:
                src = vol["configMap"]
                obj = self._volume_object("configmaps", src["name"], src.get("optional", False), name)
                data = self._data("configMapRef", obj) if obj else {}
                payload = key_payload(data, src.get("items"), src.get("defaultMode", 0o644), src.get("optional", False),
                                      f"configmap {src['name']}")
                atomic_write(path, payload, fs_group)
            elif "downwardAPI" in vol:
                src = vol["downwardAPI"]
                atomic_write(path, self.downward(src.get("items") or [], src.get("defaultMode", 0o644)), fs_group)
            elif "projected" in vol:
                atomic_write(path, self.projected(vol, fs_user, fs_group), fs_group)
            elif "persistentVolumeClaim" in vol:
                self.pvc_paths[name] = self.persistent_volume(name, vol["persistentVolumeClaim"])
            else:
                kind = next((k for k in vol if k != "name"), "?")
                raise MountError(f"MountVolume.SetUp failed for volume \"{name}\" : osk8s pod runner: volume type "
                                 f"{kind} is not supported")

    def persistent_volume(self, name: str, src: dict) -> Path:
        """A PVC volume (pkg/volume/csi): the claim bound, its PV a CSI volume, which the CSI hook sets up;
        the pod's mount point is kubelet's pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount."""
        try:
            pvc = self.api.get(f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims/{src['claimName']}")
        except ApiError as e:
            raise MountError(f"persistentvolumeclaim \"{src['claimName']}\" not found" if e.status == 404 else str(e)) from e
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if (pvc.get("status") or {}).get("phase") != "Bound" or not pv_name:
            raise MountError(f"persistentvolumeclaim \"{src['claimName']}\" is not bound")
        pv = self.api.get(f"/api/v1/persistentvolumes/{pv_name}")
        if "csi" not in pv.get("spec", {}) or self.runner.csi is None:
            kind = next((k for k in pv.get("spec", {}) if k not in ("capacity", "accessModes", "claimRef",
                         "persistentVolumeReclaimPolicy", "storageClassName", "volumeMode", "nodeAffinity",
                         "mountOptions")), "?")
            raise MountError(f"MountVolume.SetUp failed for volume \"{pv_name}\" : osk8s pod runner: {kind} volumes "
                             "are not supported")
        source = self.runner.csi(self.pod, name, pv)
        mount = self.dir / "volumes" / "kubernetes.io~csi" / pv_name / "mount"
        mount.parent.mkdir(parents=True, exist_ok=True)
        if not mount.is_symlink() or os.readlink(mount) != str(source):
            mount.unlink(missing_ok=True)
            os.symlink(source, mount)
        return mount

    def _fs_user(self) -> int | None:
        """pkg/volume/util FsUserFrom: the one runAsUser every container has, else None."""
        spec, users = self.pod["spec"], set()
        psc = spec.get("securityContext") or {}
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            u = (c.get("securityContext") or {}).get("runAsUser", psc.get("runAsUser"))
            if u is None:
                return None
            users.add(u)
        return users.pop() if len(users) == 1 else None

    def _volume_object(self, plural: str, name: str, optional: bool, vol: str) -> dict | None:
        try:
            return self.api.get(f"/api/v1/namespaces/{self.ns}/{plural}/{name}")
        except ApiError as e:
            if e.status == 404 and optional:
                return None
            what = "secret" if plural == "secrets" else "configmap"
            detail = f"{what} \"{name}\" not found" if e.status == 404 else str(e)
            raise MountError(f"MountVolume.SetUp failed for volume \"{vol}\" : {detail}") from e

    def check_host_path(self, hp: dict) -> None:
        """pkg/volume/hostpath checkType."""
        path, kind = Path(hp["path"]), hp.get("type", "")
        if kind == "DirectoryOrCreate" and not path.exists():
            path.mkdir(parents=True, mode=0o755)
        elif kind == "FileOrCreate" and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o644)
        checks = {"Directory": path.is_dir, "DirectoryOrCreate": path.is_dir, "File": path.is_file,
                  "FileOrCreate": path.is_file, "Socket": path.is_socket, "CharDevice": path.is_char_device,
                  "BlockDevice": path.is_block_device}
        if kind in checks and not checks[kind]():
            what = {"DirectoryOrCreate": "directory", "FileOrCreate": "file"}.get(kind, kind.lower())
            raise MountError(f"MountVolume.SetUp failed : hostPath type check failed: {path} is not a {what}")

    def downward(self, items: list[dict], default_mode: int) -> dict:
        out = {}
        for it in items:
            if "fieldRef" in it:
                value = self.field(it["fieldRef"]["fieldPath"])
            else:
                spec = it["resourceFieldRef"]
                ctr = next((c for c in self.pod["spec"]["containers"] if c["name"] == spec.get("containerName")), None)
                value = self.resource_field(spec, ctr)
            out[it["path"]] = (value.encode(), it.get("mode", default_mode), None)
        return out

    def projected(self, vol: dict, fs_user: int | None, fs_group: int | None) -> dict:
        src = vol["projected"]
        mode = src.get("defaultMode", 0o644)
        out: dict = {}
        for s in src.get("sources") or []:
            if "secret" in s or "configMap" in s:
                kind = "secret" if "secret" in s else "configMap"
                ref = s[kind]
                plural = "secrets" if kind == "secret" else "configmaps"
                obj = self._volume_object(plural, ref["name"], ref.get("optional", False), vol["name"])
                data = self._data("secretRef" if kind == "secret" else "configMapRef", obj) if obj else {}
                out.update(key_payload(data, ref.get("items"), mode, ref.get("optional", False), f"{kind.lower()} {ref['name']}"))
            elif "downwardAPI" in s:
                out.update(self.downward(s["downwardAPI"].get("items") or [], mode))
            elif "serviceAccountToken" in s:
                tp = s["serviceAccountToken"]
                token = self.service_account_token(vol["name"], tp)
                out[tp["path"]] = (token.encode(), 0o600 if fs_user is not None or fs_group is not None else mode, fs_user)
            else:
                raise MountError(f"MountVolume.SetUp failed for volume \"{vol['name']}\" : osk8s pod runner: projected "
                                 f"source {list(s)} is not supported")
        return out

    def service_account_token(self, vol: str, tp: dict) -> str:
        """pkg/kubelet/token/token_manager.go: a TokenRequest bound to the pod, cached until 80% of its TTL
        (or 24 h) has passed."""
        key = f"{vol}/{tp['path']}"
        now = time.time()
        if key in self.tokens:
            token, issued, expires = self.tokens[key]
            ttl = tp.get("expirationSeconds", 3600)
            if now < expires - ttl * 0.2 and now < issued + TOKEN_MAX_TTL:
                return token
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [tp["audience"]] if tp.get("audience") else None,
                         "expirationSeconds": tp.get("expirationSeconds", 3600),
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}}}
        try:
            tr = self.api.request("POST", f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token", body)
        except ApiError as e:
            raise MountError(f"MountVolume.SetUp failed for volume \"{vol}\" : failed to fetch token: {e}") from e
        token = tr["status"]["token"]
        expires = parse_time(tr["status"]["expirationTimestamp"])
        self.tokens[key] = (token, now, expires)
        return token

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
                    self.runner.event(self.pod, "Unhealthy", f"{p.kind.capitalize()} probe failed: {output}".strip(),
                                      "Warning", self._field(c))
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
        argv = ["nsenter", "--target", str(c.proc.pid), "--mount", "--uts", "--root", "--wd",
                "--setuid", str(uid), "--setgid", str(gid), "--", *command]
        command = [expand(a, c.env) for a in command]  # ExpandContainerCommandOnlyStatic
        try:
            out = subprocess.run(argv, capture_output=True, timeout=timeout, env=c.env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return "failure", f"command {command} timed out"
        text = (out.stdout + out.stderr).decode(errors="replace")[:1024]
        return ("success", text) if out.returncode == 0 else ("failure", text)

    # -- status ------------------------------------------------------------------------------------------
    def ctr_status(self, c: Ctr, waiting_default: str) -> dict:
        spec = c.spec
        st: dict = {"name": c.name, "image": spec["image"], "imageID": c.image_id, "ready": c.ready,
                    "restartCount": c.restart_count, "started": c.started if c.running else False}
        if c.running:
            st["state"] = {"running": {"startedAt": rfc3339(c.started_at)}}
            st["containerID"] = f"osk8s-pods://{c.cid}"
        elif c.terminated is not None:
            st["state"] = {"terminated": {k: v for k, v in c.terminated.items() if not k.startswith("_")}}
            st["containerID"] = c.terminated["containerID"]
        else:
            reason, message = c.waiting or (waiting_default, "")
            st["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        st["lastState"] = ({"terminated": {k: v for k, v in c.last_terminated.items() if not k.startswith("_")}}
                           if c.last_terminated else {})
        if not c.image_id:
            del st["imageID"]
        mounts = [{"name": m["name"], "mountPath": m["mountPath"],
                   **({"readOnly": True, "recursiveReadOnly": "Disabled"} if m.get("readOnly") else {})}
                  for m in spec.get("volumeMounts") or []]
        if mounts:
            st["volumeMounts"] = mounts
        if c.running:
            uid, gid, groups = c.user
            st["user"] = {"linux": {"uid": uid, "gid": gid, "supplementalGroups": sorted({gid, *groups})}}
        return st

    def desired_status(self, current: dict) -> dict:
        pod = self.pod
        gen = pod["metadata"].get("generation", 1)
        init_done = all(c.terminated and c.terminated["exitCode"] == 0 for c in self.init)
        default = "PodInitializing" if self.init and not init_done else "ContainerCreating"
        cs = [self.ctr_status(c, default) for c in self.ctrs]
        ics = [self.ctr_status(c, "PodInitializing" if i else "ContainerCreating") for i, c in enumerate(self.init)]
        phase = self.phase(cs, ics)
        old = {c["type"]: c for c in current.get("conditions") or []}
        now = rfc3339()

        def cond(kind: str, ok: bool, reason: str = "", message: str = "") -> dict:
            status = "True" if ok else "False"
            prev = old.get(kind)
            c = {"type": kind, "status": status, "observedGeneration": gen, "lastProbeTime": None,
                 "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == status else now}
            if reason:
                c["reason"] = reason
            if message:
                c["message"] = message
            return c

        unready = [c.name for c in self.ctrs if not c.ready]
        terminal = phase in ("Succeeded", "Failed")
        if terminal:
            reason = "PodCompleted" if phase == "Succeeded" else "PodFailed"
            ready = cond("ContainersReady", False, reason)
        elif unready:
            ready = cond("ContainersReady", False, "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]")
        else:
            ready = cond("ContainersReady", True)
        incomplete = [c.name for c in self.init if not (c.terminated and c.terminated["exitCode"] == 0)]
        started_any = any(c.running or c.terminated or c.last_terminated for c in self.ctrs)
        if incomplete and not started_any:
            initialized = cond("Initialized", False, "ContainersNotInitialized",
                               f"containers with incomplete status: [{' '.join(incomplete)}]")
        else:
            initialized = cond("Initialized", True, "PodCompleted" if phase == "Succeeded" and self.init else "")
        gates = [g["conditionType"] for g in pod["spec"].get("readinessGates") or []]
        gate_msgs = [f"corresponding condition of pod readiness gate \"{g}\" does not exist." if g not in old else
                     f"the status of pod readiness gate \"{g}\" is not \"True\", but {old[g]['status']}"
                     for g in gates if old.get(g, {}).get("status") != "True"]
        if ready["status"] != "True":
            pod_ready = {**ready, "type": "Ready"}
            prev = old.get("Ready")
            pod_ready["lastTransitionTime"] = prev["lastTransitionTime"] if prev and prev.get("status") == ready["status"] else now
        elif gate_msgs:
            pod_ready = cond("Ready", False, "ReadinessGatesNotReady", ", ".join(gate_msgs))
        else:
            pod_ready = cond("Ready", True)
        sandbox = cond("PodReadyToStartContainers", self.sandbox and not terminal)
        mine = {"PodReadyToStartContainers": sandbox, "Initialized": initialized, "Ready": pod_ready,
                "ContainersReady": ready}
        conditions = [mine.pop(c["type"], c) for c in current.get("conditions") or []] + list(mine.values())
        status = {"phase": phase, "conditions": conditions, "observedGeneration": gen,
                  "hostIP": self.runner.node_ip, "hostIPs": [{"ip": self.runner.node_ip}],
                  "startTime": current.get("startTime") or rfc3339(self.first_seen), "containerStatuses": cs}
        if self.sandbox:
            status["podIP"], status["podIPs"] = self.runner.node_ip, [{"ip": self.runner.node_ip}]
        if ics:
            status["initContainerStatuses"] = ics
        return status

    def phase(self, cs: list[dict], ics: list[dict]) -> str:
        """kubelet_pods.go getPhase with ContainerRestartRules (beta, on in 1.37); no sidecar init containers."""
        def restartable(spec: dict, term: dict) -> bool:
            return self.should_restart(spec, term["exitCode"])

        pending_init = failed_init_final = 0
        for c, s in zip(self.init, ics):
            st, last = s["state"], s["lastState"].get("terminated")
            if "running" in st:
                pending_init += 1
            elif "terminated" in st:
                failed_init_final += st["terminated"]["exitCode"] != 0 and not restartable(c.spec, st["terminated"])
            elif last:
                failed_init_final += last["exitCode"] != 0 and not restartable(c.spec, last)
            else:
                pending_init += 1
        running = waiting = stopped = stopped_final = succeeded = 0
        for c, s in zip(self.ctrs, cs):
            st, last = s["state"], s["lastState"].get("terminated")
            if "running" in st:
                running += 1
            elif "terminated" in st:
                stopped += 1
                stopped_final += not restartable(c.spec, st["terminated"])
                succeeded += st["terminated"]["exitCode"] == 0
            elif last:
                stopped += 1
                stopped_final += not restartable(c.spec, last)
            else:
                waiting += 1
        if failed_init_final:
            return "Failed"
        if pending_init or waiting:
            return "Pending"
        if running:
            return "Running"
        if stopped:
            if stopped != stopped_final:
                return "Running"
            return "Succeeded" if stopped == succeeded else "Failed"
        return "Pending"

    def push_status(self, force: bool = False) -> None:
        """status_manager.go syncPod: the status patched when it changed (or every 10 s checked against
        the API), with the node's credentials, resourceVersion and UID as preconditions."""
        now = time.monotonic()
        snapshot = json.dumps(self.desired_status(self.status_sent or {}), sort_keys=True, default=str)
        if not force and self.status_sent is not None and now < self.next_status_sync and \
                snapshot == json.dumps(self.status_sent, sort_keys=True, default=str):
            return
        path = f"/api/v1/namespaces/{self.ns}/pods/{self.name}"
        for _ in range(3):
            try:
                current = self.api.get(path)
            except ApiError as e:
                if e.status == 404:
                    return
                raise
            if current["metadata"]["uid"] != self.uid:
                return
            want = self.desired_status(current.get("status") or {})
            have = current.get("status") or {}
            patch = {k: v for k, v in want.items() if have.get(k) != v}
            self.next_status_sync = now + STATUS_RESYNC
            if not patch:
                self.status_sent = want
                return
            try:
                self.api.request("PATCH", path + "/status",
                                 {"metadata": {"uid": self.uid, "resourceVersion": current["metadata"]["resourceVersion"]},
                                  "status": patch}, content_type="application/merge-patch+json")
                self.status_sent = want
                return
            except ApiError as e:
                if e.status == 404:
                    return
                if e.status != 409:
                    raise


# ---------------------------------------------------------------------------------------------------
# Inside the container's new mount + UTS namespace (started by `unshare`): build the root, enter it,
# drop what the container may not keep, exec. Only the standard library; no threads.

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MS_PRIVATE, MS_SLAVE, MS_SHARED = 1 << 18, 1 << 19, 1 << 20
PROPAGATION = {"None": MS_PRIVATE, "HostToContainer": MS_SLAVE, "Bidirectional": MS_SHARED}


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _mount(libc, source, target, fstype, flags, data=None):
    if libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(), flags,
                  data and data.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or fstype} on {target}: {os.strerror(err)}")


def _mountpoint(path: str, is_file: bool) -> None:
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if is_file:
        open(path, "a").close()
    else:
        os.makedirs(path)


def container_main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    os.unlink(spec_file)  # the environment may hold secrets
    # opened before the chroot, closed by the exec: written only when the container cannot start
    error_fd = os.open(spec["error_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        fail = spec.get("fail") or {}
        if "message" in fail:  # go-runner's own failure: it ran, printed, and exited
            print(fail["message"], file=sys.stderr, flush=True)
            os._exit(fail["code"])
        enter(spec)
        if "start_error" in fail:
            raise OSError(fail["start_error"])
        argv, env = spec["argv"], spec["env"]
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        path = argv[0]
        if "/" not in path:
            for d in env.get("PATH", "").split(":"):
                if d and os.access(os.path.join(d, path), os.X_OK):
                    path = os.path.join(d, path)
                    break
            else:
                raise OSError(f'exec: "{argv[0]}": executable file not found in $PATH')
        try:
            os.execve(path, argv, env)
        except OSError as e:
            raise OSError(f'exec: "{argv[0]}": stat {argv[0]}: {e.strerror.lower() if e.strerror else e}') from e
    except BaseException as e:  # runc's "failed to create containerd task" -> StartError, exit 128
        msg = str(e.args[0]) if isinstance(e, OSError) and len(e.args) == 1 else str(e)
        os.write(error_fd, f"failed to create containerd task: failed to create shim task: OCI runtime create failed: "
                           f"{msg}".encode())
        print(msg, file=sys.stderr, flush=True)
        os._exit(128)


def enter(spec: dict) -> None:
    libc = _libc()
    name = spec["hostname"].encode()
    if libc.sethostname(name, len(name)) != 0:
        raise OSError(ctypes.get_errno(), "sethostname")
    root = spec["root"]
    os.makedirs(root, exist_ok=True)
    _mount(libc, "tmpfs", root, "tmpfs", MS_NOSUID, "mode=0755,size=512m")
    for d, mode in (("etc", 0o755), ("dev", 0o755), ("proc", 0o555), ("sys", 0o555), ("tmp", 0o1777),
                    ("run", 0o755), ("root", 0o700), ("var", 0o755)):
        os.makedirs(f"{root}/{d}", exist_ok=True)
        os.chmod(f"{root}/{d}", mode)
    os.symlink("../run", f"{root}/var/run")
    for path, text in spec["files"].items():
        with open(root + path, "w") as f:
            f.write(text)
    mounts = sorted(spec["mounts"], key=lambda m: len(Path(m["target"]).parts))  # parents first (containerd)
    for m in mounts:
        target = root + os.path.normpath("/" + m["target"])
        if m["kind"] == "symlink":
            if not os.path.lexists(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.symlink(m["to"], target)
            continue
        src = m["source"]
        if not os.path.lexists(src):
            raise OSError(f"error mounting \"{src}\" to rootfs at \"{m['target']}\": no such file or directory")
        _mountpoint(target, not os.path.isdir(src))
        _mount(libc, src, target, None, MS_BIND | MS_REC)
        if m.get("ro"):
            _mount(libc, None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        _mount(libc, None, target, None, MS_REC | PROPAGATION.get(m.get("propagation") or "None", MS_PRIVATE))
    if any(Path(m["target"]).is_relative_to("/root") for m in mounts):
        os.chmod(f"{root}/root", 0o755)  # a stand-in's interpreter installed under /root (pyenv): traversable
    if spec.get("privileged"):
        _mount(libc, "/dev", f"{root}/dev", None, MS_BIND | MS_REC)
    else:
        _mount(libc, "tmpfs", f"{root}/dev", "tmpfs", MS_NOSUID, "mode=0755,size=65536k")
        for dev in ("null", "zero", "full", "random", "urandom", "tty"):
            open(f"{root}/dev/{dev}", "a").close()
            _mount(libc, f"/dev/{dev}", f"{root}/dev/{dev}", None, MS_BIND)
        os.makedirs(f"{root}/dev/shm")
        _mount(libc, "shm", f"{root}/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
        for link, to in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")):
            os.symlink(to, f"{root}/dev/{link}")
    _mount(libc, "proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount(libc, "sysfs", f"{root}/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | (0 if spec.get("privileged") else MS_RDONLY))
    cwd = os.path.normpath("/" + spec["cwd"])
    os.makedirs(root + cwd, exist_ok=True)
    if spec.get("readonly_root"):
        _mount(libc, None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
    os.chroot(root)
    os.chdir(cwd)
    os.umask(0o022)
    # runc's order: groups while all capabilities are held, the bounding set, then the user (a non-root
    # user loses its effective and permitted capabilities on setuid), or the kept set for root
    os.setgroups(sorted({spec["gid"], *spec["groups"]}))
    os.setgid(spec["gid"])
    drop_bounding(libc, spec["caps"])
    if spec.get("no_new_privs") and libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if spec["uid"] != 0:
        os.setuid(spec["uid"])
    else:
        capset(libc, spec["caps"])


def drop_bounding(libc, keep: list[int]) -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        if cap not in keep and libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap})")


def capset(libc, keep: list[int]) -> None:

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    have = int(next(ln.split()[1] for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("CapPrm:")), 16)
    mask = sum(1 << c for c in keep) & have  # what this runner holds: a privileged container gets no more
    data = (Data * 2)()
    for i in (0, 1):  # inheritable stays empty (containerd since CVE-2022-24769)
        data[i].effective = data[i].permitted = (mask >> (32 * i)) & 0xFFFFFFFF
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), data) != 0:  # _LINUX_CAPABILITY_VERSION_3
        raise OSError(ctypes.get_errno(), "capset")


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--container":
    container_main(sys.argv[2])
