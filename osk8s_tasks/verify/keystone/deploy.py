"""k8s-keystone-auth on the cluster, as verify.keystone sets it up (converging steps):

1. its Service (the ClusterIP the apiserver calls), 2. a serving certificate from the lab CA for
that address, 3. the Secret, policy ConfigMap, RBAC and Deployment (pinned image), 4. on the
control plane: the webhook kubeconfig pinning the CA, a structured AuthorizationConfiguration
(Node, RBAC, Webhook) and the kube-apiserver flags that use them, 5. a user kubeconfig with the
client-keystone-auth exec plugin (kubectl's --auth-provider=openstack is gone upstream)."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import yaml

from osk8s_tasks.core import kube, lab
from osk8s_tasks.core.engine import Status, Step, StepFailed
from osk8s_tasks.core.files import write_private
from osk8s_tasks.core.imageref import component_image
from osk8s_tasks.core.render import render
from osk8s_tasks.core.wait import wait_step
from osk8s_tasks.verify.harness import pod_errors, rollout_ready
from osk8s_tasks.verify.keystone import model as keystone_auth
from osk8s_tasks.verify.keystone import pki

SERVICE = "k8s-keystone-auth-service"
DIR = "/etc/kubernetes/keystone-auth"
WEBHOOK_KUBECONFIG = f"{DIR}/webhook.kubeconfig"
AUTHZ_CONFIG = f"{DIR}/authorization-config.yaml"
APISERVER_MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
FLAGS = {
    "--authentication-token-webhook-config-file": WEBHOOK_KUBECONFIG,
    # k8s-keystone-auth v1.36 answers 400 to anything but v1beta1 reviews (pkg/identity/keystone/keystone.go, Handler)
    "--authentication-token-webhook-version": "v1beta1",
    "--authentication-token-webhook-cache-ttl": "30s",  # a revoked token works this long at most
    "--authorization-config": AUTHZ_CONFIG,
}


def pki_dir(settings):
    return lab.keystone_pki(settings)


def policy(settings) -> list[dict]:
    """The webhook's policy: Keystone role `verify.viewer_role` may get/list/watch pods."""
    rules = json.loads(json.dumps(keystone_auth.DEFAULT_POLICY))
    rules[0]["match"][0]["values"] = [settings.verify.viewer_role]
    return rules


def service_doc(settings) -> dict:
    return next(d for d in manifests(settings, "", "") if d["kind"] == "Service")


def manifests(settings, keystone_url: str, cert_digest: str) -> list[dict]:
    image, pull_policy = component_image(settings, "keystone_auth")
    text = render(
        "manifests/keystone-auth.yaml.j2",
        lab=settings.lab.name,
        image=image,
        pull_policy=pull_policy,
        keystone_url=keystone_url or "http://keystone.invalid/identity",
        cert_digest=cert_digest,
        policy_json=json.dumps(policy(settings)),
    )
    return [d for d in yaml.safe_load_all(text) if d]


def cert_names(cluster_ip: str) -> list[str]:
    # 127.0.0.1: the tool reaches the webhook through an SSH forward to the control plane
    return [f"{SERVICE}.kube-system.svc", SERVICE, f"{SERVICE}.kube-system", cluster_ip, "127.0.0.1"]


def with_webhooks(manifest: dict) -> dict:
    """The kube-apiserver static pod with the keystone webhook flags and the config directory
    mounted; --authorization-mode goes (it excludes --authorization-config)."""
    doc = json.loads(json.dumps(manifest))
    container = next(c for c in doc["spec"]["containers"] if c["name"] == "kube-apiserver")
    args = [a for a in container["command"] if not a.startswith(("--authorization-mode=", *(f"{f}=" for f in FLAGS)))]
    container["command"] = args + [f"{k}={v}" for k, v in FLAGS.items()]
    mounts = [m for m in container.get("volumeMounts", []) if m["name"] != "keystone-auth"]
    container["volumeMounts"] = mounts + [{"name": "keystone-auth", "mountPath": DIR, "readOnly": True}]
    volumes = [v for v in doc["spec"].get("volumes", []) if v["name"] != "keystone-auth"]
    doc["spec"]["volumes"] = volumes + [{"name": "keystone-auth", "hostPath": {"path": DIR, "type": "DirectoryOrCreate"}}]
    return doc


def user_kubeconfig(settings, server: str, ca_data: str, auth_url: str, user: str, project: str, domain: str) -> str:
    """kubectl as a Keystone user: client-keystone-auth asks for the password (or reads OS_PASSWORD)."""
    env = [
        {"name": "OS_AUTH_URL", "value": auth_url},
        {"name": "OS_DOMAIN_NAME", "value": domain},
        {"name": "OS_PROJECT_NAME", "value": project},
        {"name": "OS_USERNAME", "value": user},
    ]
    name = f"{settings.lab.name}-keystone-{user}"
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": name,
        "clusters": [{"name": settings.lab.name, "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [
            {
                "name": name,
                "user": {
                    "exec": {
                        # client-keystone-auth prints a v1beta1 ExecCredential, whatever it is asked
                        # (cmd/client-keystone-auth/main.go); client-go rejects an answer whose version
                        # differs from this one
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": "client-keystone-auth",
                        "env": env,
                        "interactiveMode": "IfAvailable",
                        "provideClusterInfo": False,
                        "installHint": "client-keystone-auth is released with cloud-provider-openstack "
                        f"{settings.versions.cloud_provider_openstack}; set OS_PASSWORD or type it when asked",
                    }
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": settings.lab.name, "user": name}}],
    }
    return yaml.safe_dump(cfg, sort_keys=False)


def apiserver_started(api) -> float | None:
    """kube-apiserver's process start time (its own process_start_time_seconds metric), or None
    while it does not answer."""
    try:
        code, body = api.call("GET", "/metrics")
    except StepFailed:
        return None
    if code != 200:
        return None
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("process_start_time_seconds "):
            return float(line.split()[1])
    return None


APISERVER_LOGS = "/var/log/pods/kube-system_kube-apiserver-*/kube-apiserver/*.log"  # kubelet's layout


def apiserver_log(master, lines: int = 4) -> str:
    """The last error lines kube-apiserver wrote (kubelet keeps each container's output under
    /var/log/pods in CRI format: `<time> <stream> <P|F> <message>`), or what was found instead."""
    out = master.run(
        f'f=$(ls -t {APISERVER_LOGS} 2>/dev/null | head -1); [ -n "$f" ] && tail -n 200 "$f"', sudo=True, warn=True
    ).stdout
    return parse_apiserver_errors(out, lines) or "no kube-apiserver log under /var/log/pods"


def parse_apiserver_errors(cri_log: str, lines: int = 4) -> str:
    """The messages of a CRI log's error lines (klog `E....` or `Error:`), last `lines` of them."""
    messages = [ln.split(" ", 3)[3] for ln in cri_log.splitlines() if ln.count(" ") >= 3]
    errors = [m for m in messages if m[:1] == "E" and m[1:5].isdigit() or m.startswith(("Error:", "error:", "F"))]
    return " | ".join(x.strip()[:300] for x in (errors or messages)[-lines:])


class Setup:
    """The steps, sharing what each learns (the Service's ClusterIP) with the next."""

    def __init__(self, ctx, master, ident: dict):
        self.ctx, self.master, self.ident = ctx, master, ident
        self.dir = pki_dir(ctx.settings)

    def cluster_ip(self) -> str:
        svc = self.ctx.api.get(service_doc(self.ctx.settings))
        if not svc or not svc.get("spec", {}).get("clusterIP"):
            raise StepFailed(f"Service {SERVICE} has no ClusterIP yet")
        return svc["spec"]["clusterIP"]

    def cert_step(self) -> Step:
        crt, key = self.dir / "tls.crt", self.dir / "tls.key"

        def check():
            ca = self.dir / "ca.crt"
            if not ca.exists():
                return Status(False, "no lab CA yet", f"create the lab CA in {self.dir} and a serving certificate")
            problem = pki.serving_cert_problem(crt, key, ca, cert_names(self.cluster_ip()))
            return Status(
                not problem,
                problem or f"{crt.name} from the lab CA names {SERVICE} and {self.cluster_ip()}",
                f"issue {crt} ({problem})",
            )

        def apply():
            ca, ca_key = pki.ensure_ca(self.dir, self.ctx.settings.lab.name)
            pki.issue_serving_cert(crt, key, ca, ca_key, cert_names(self.cluster_ip()))

        return Step("k8s-keystone-auth serving certificate", check, apply)

    def docs(self) -> list[dict]:
        crt, key = self.dir / "tls.crt", self.dir / "tls.key"
        if not crt.exists():
            raise StepFailed("no serving certificate yet")
        digest = hashlib.sha256(crt.read_bytes()).hexdigest()[:16]
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {
                "name": "keystone-auth-certs",
                "namespace": "kube-system",
                "labels": {"osk8s.io/lab": self.ctx.settings.lab.name},
            },
            "data": {
                "tls.crt": base64.b64encode(crt.read_bytes()).decode(),
                "tls.key": base64.b64encode(key.read_bytes()).decode(),
            },
        }
        return [secret] + [d for d in manifests(self.ctx.settings, self.ident["auth_url"], digest) if d["kind"] != "Service"]

    def objects_step(self) -> Step:
        """Secret, policy, RBAC, Deployment: applied together, each only where it differs."""

        def check():
            if not (self.dir / "tls.crt").exists():
                every = ["Secret kube-system/keystone-auth-certs"] + [
                    kube.label(d) for d in manifests(self.ctx.settings, "", "") if d["kind"] != "Service"
                ]
                return Status(False, "no serving certificate yet", f"apply {', '.join(every)}")
            stale = [kube.label(d) for d in self.docs() if not kube.apply_step(self.ctx.api, d).check().ok]
            return Status(
                not stale,
                "Secret, policy, RBAC and Deployment are as wanted" if not stale else f"differ: {', '.join(stale)}",
                f"apply {', '.join(stale)}",
            )

        def apply():
            for d in self.docs():
                step = kube.apply_step(self.ctx.api, d)
                if not step.check().ok:
                    step.apply()

        return Step("k8s-keystone-auth objects", check, apply)

    def file_step(self, path: str, text_fn) -> Step:
        def check():
            have, want = self.master.run(f"cat {path}", sudo=True, warn=True).stdout, text_fn()
            return Status(
                have == want,
                f"{path} is current" if have == want else f"{path} is {'different' if have else 'missing'}",
                f"write {path} on the control plane (0600)",
            )

        return Step(f"control plane {path}", check, lambda: self.master.install(path, text_fn(), mode=0o600))

    def webhook_kubeconfig(self) -> str:
        if not (self.dir / "ca.crt").exists():
            raise StepFailed("no lab CA yet")
        ca = base64.b64encode((self.dir / "ca.crt").read_bytes()).decode()
        return render(
            "kubeadm/keystone-webhook.kubeconfig.j2",
            lab=self.ctx.settings.lab.name,
            ca_data=ca,
            server=f"https://{self.cluster_ip()}:8443/webhook",
        )

    def authz_config(self) -> str:
        return render(
            "kubeadm/authorization-config.yaml.j2",
            lab=self.ctx.settings.lab.name,
            webhook_kubeconfig=WEBHOOK_KUBECONFIG,
            project_id_key=keystone_auth.PROJECT_ID,
        )

    def apiserver_step(self) -> Step:
        def current() -> dict:
            text = self.master.run(f"cat {APISERVER_MANIFEST}", sudo=True, warn=True).stdout
            if not text.strip():
                raise StepFailed(f"{APISERVER_MANIFEST} not found on the control plane. Fix: inv cluster.deploy")
            return yaml.safe_load(text)

        def check():
            have = current()
            ok = have == with_webhooks(have)
            return Status(
                ok,
                "kube-apiserver uses the keystone webhook (token authn + authorization-config Node,RBAC,Webhook)"
                if ok
                else "kube-apiserver does not use the keystone webhook yet",
                f"edit {APISERVER_MANIFEST}: {', '.join(FLAGS)}; the kubelet restarts the apiserver",
            )

        def apply():
            before = apiserver_started(self.ctx.api)
            self.master.install(APISERVER_MANIFEST, yaml.safe_dump(with_webhooks(current()), sort_keys=False), mode=0o600)
            # the kubelet notices the new manifest and restarts kube-apiserver: wait for a NEW process
            # (its start time moves) that is ready, not for the old one still answering
            deadline = time.monotonic() + self.ctx.settings.verify.timeout
            while True:
                started = apiserver_started(self.ctx.api)
                if started is not None and (before is None or started > before):
                    try:
                        if self.ctx.api.call("GET", "/readyz")[0] == 200:
                            return
                    except StepFailed:
                        pass
                if time.monotonic() > deadline:
                    raise StepFailed(
                        "kube-apiserver did not come back after the webhook flags were added; its log on "
                        f"the control plane says: {apiserver_log(self.master)}. Fix: correct the cause "
                        f"(the files in {DIR}, the flags in {APISERVER_MANIFEST}), then run verify.keystone "
                        "again"
                    )
                time.sleep(2)

        return Step("kube-apiserver webhook flags", check, apply)

    def kubeconfig_step(self) -> Step:
        path = self.ctx.settings.lab_dir / f"keystone-{self.ident['username']}.kubeconfig"

        def wanted() -> str:
            admin = yaml.safe_load((self.ctx.settings.lab_dir / "admin.conf").read_text())
            cluster = admin["clusters"][0]["cluster"]
            return user_kubeconfig(
                self.ctx.settings,
                cluster["server"],
                cluster.get("certificate-authority-data", ""),
                self.ident["auth_url"],
                self.ident["username"],
                self.ident["project_name"],
                self.ident["domain"],
            )

        def check():
            ok = path.exists() and path.read_text() == wanted()
            return Status(
                ok,
                f"{path.name}: kubectl --kubeconfig {path} as {self.ident['username']} (client-keystone-auth)"
                if ok
                else f"{path.name} missing or out of date",
                f"write {path} (0600)",
            )

        return Step("user kubeconfig (client-keystone-auth)", check, lambda: write_private(path, wanted()))

    def steps(self) -> list[Step]:
        api, s = self.ctx.api, self.ctx.settings
        return [
            kube.apply_step(api, service_doc(s)),
            self.cert_step(),
            self.objects_step(),
            wait_step(
                "k8s-keystone-auth ready",
                rollout_ready(api, "kube-system", "k8s-keystone-auth"),
                s.verify.timeout,
                why=lambda: pod_errors(api, "kube-system", "app=k8s-keystone-auth"),
            ),
            self.file_step(WEBHOOK_KUBECONFIG, self.webhook_kubeconfig),
            self.file_step(AUTHZ_CONFIG, self.authz_config),
            self.apiserver_step(),
            self.kubeconfig_step(),
        ]
