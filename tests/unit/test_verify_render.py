"""Everything verify renders: the echo app, Services (one sharing the load balancer), the PVC and
its Pods, the Ingress and octavia-ingress-controller, k8s-keystone-auth (Deployment, Service,
policy ConfigMap, RBAC) and the project-group RoleBinding, all validated strictly against the
pinned Kubernetes OpenAPI schema; the apiserver side (static pod edit, webhook kubeconfig,
AuthorizationConfiguration) and the client-keystone-auth kubeconfig checked as files."""

import json
import os
import subprocess
from types import SimpleNamespace

import kubernetes_validate
import pytest
import yaml

from osk8s_tasks.core import config
from osk8s_tasks.core.render import render
from osk8s_tasks.verify import ingress as verify_ingress
from osk8s_tasks.verify import lb as verify_lb
from osk8s_tasks.verify import pv as verify_pv
from osk8s_tasks.verify.harness import Ctx
from osk8s_tasks.verify.keystone import deploy as keystone_deploy
from osk8s_tasks.verify.keystone import model as keystone_auth
from osk8s_tasks.verify.keystone import pki
from tests.unit.test_cluster_render import check

CLOUD = {
    "auth_url": "http://192.168.121.10/identity",
    "app_credential_id": "0a1b2c",
    "app_credential_secret": "s3cret",
    "region": "RegionOne",
    "subnet_id": "5d7e-subnet",
    "floating_network_id": "9f1c-public",
}


@pytest.fixture
def ctx():
    settings = config.validate({"lab": {"name": "golden"}})
    return Ctx(SimpleNamespace(settings=settings, task="verify.test"), None, None, keep=False, nonce="osk8s-n0nce")


def validate_all(docs, version="1.37.0"):
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
        assert doc["metadata"]["labels"]["osk8s.io/lab"] == "golden", doc["metadata"]["name"]


def images(docs):
    out = []
    for d in docs:
        spec = d["spec"]["template"]["spec"] if "template" in d.get("spec", {}) else d.get("spec", {})
        out += [c["image"] for c in spec.get("containers", [])]
    return out


def test_lb_manifests_validate_and_the_shared_service_names_the_lb(ctx):
    assert [d["kind"] for d in verify_lb.lb_docs(ctx)] == ["Namespace", "Deployment", "Service"]
    docs = verify_lb.lb_docs(ctx, "9b1c-lb-id")
    validate_all(docs)
    shared = docs[-1]
    assert shared["metadata"]["annotations"]["loadbalancer.openstack.org/load-balancer-id"] == "9b1c-lb-id"
    assert shared["spec"]["type"] == "LoadBalancer" and shared["spec"]["ports"][0]["port"] == 8080
    assert images(docs) == ["registry.k8s.io/e2e-test-images/agnhost:2.53"]


def test_pv_manifests_validate_pvc_has_no_class_and_pods_carry_the_nonce(ctx):
    writer, reader = verify_pv.docs(ctx, True), verify_pv.docs(ctx, False)
    validate_all(writer + reader[-1:])
    pvc = writer[1]
    assert pvc["kind"] == "PersistentVolumeClaim" and "storageClassName" not in pvc["spec"]
    assert "echo osk8s-n0nce > /data/probe" in writer[-1]["spec"]["containers"][0]["command"][-1]
    assert reader[-1]["spec"]["containers"][0]["command"][-1] == "cat /data/probe"


def test_ingress_manifests_validate_and_route_two_paths(ctx):
    docs = verify_ingress.ingress_docs(ctx)
    validate_all(docs)
    ing = docs[-1]
    assert ing["metadata"]["annotations"]["kubernetes.io/ingress.class"] == "openstack"
    paths = {p["path"]: p["backend"]["service"]["name"] for p in ing["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {"/a": "echo-a", "/b": "echo-b"}


def test_octavia_ingress_controller_validates_and_keeps_credentials_in_a_secret(ctx):
    text = render(
        "manifests/octavia-ingress.yaml.j2",
        lab="golden",
        image="registry.k8s.io/provider-os/octavia-ingress-controller:v1.36.0",
        pull_policy=None,
    )
    docs = [d for d in yaml.safe_load_all(text) if d]
    validate_all(docs)
    assert "s3cret" not in text and images(docs) == ["registry.k8s.io/provider-os/octavia-ingress-controller:v1.36.0"]
    conf = yaml.safe_load(
        render(
            "manifests/octavia-ingress-config.yaml.j2", lab="golden", lb_provider="ovn", manage_security_groups=True, **CLOUD
        )
    )
    assert conf["cluster-name"] == "golden" and conf["octavia"]["provider"] == "ovn"
    assert conf["openstack"]["application-credential-id"] == "0a1b2c" and "password" not in conf["openstack"]


def test_loaded_ingress_and_keystone_images_are_used_if_present():
    s = config.validate(
        {
            "lab": {"name": "golden"},
            "cluster": {
                "images": {
                    "octavia_ingress": "octavia-ingress-controller:dev",
                    "keystone_auth": "localhost/k8s-keystone-auth:dev",
                }
            },
        }
    )
    loaded = Ctx(SimpleNamespace(settings=s, task="verify.test"), None, None, keep=False, nonce="osk8s-n0nce")
    ingress = verify_ingress.controller_docs(loaded, content=False)[1:]
    keystone = keystone_deploy.manifests(s, "http://192.168.121.10/identity/v3", "abc123")
    validate_all(ingress + keystone)
    pods = [
        d["spec"]["template"]["spec"]["containers"][0]
        for d in ingress + keystone
        if d["kind"] in ("StatefulSet", "Deployment")
    ]
    assert [(c["image"], c["imagePullPolicy"]) for c in pods] == [
        ("octavia-ingress-controller:dev", "IfNotPresent"),
        ("localhost/k8s-keystone-auth:dev", "IfNotPresent"),
    ]


def test_upstream_ingress_and_keystone_images_keep_the_default_pull_policy(ctx):
    docs = verify_ingress.controller_docs(ctx, content=False) + keystone_deploy.manifests(ctx.settings, "", "")
    pods = [d["spec"]["template"]["spec"]["containers"][0] for d in docs if d["kind"] in ("StatefulSet", "Deployment")]
    assert len(pods) == 2 and all("imagePullPolicy" not in c for c in pods)


def test_keystone_auth_manifests_validate_with_the_viewer_policy(ctx):
    docs = keystone_deploy.manifests(ctx.settings, "http://192.168.121.10/identity/v3", "abc123")
    validate_all(docs)
    check("keystone-auth.yaml", yaml.safe_dump_all(docs, sort_keys=False))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Service", "Deployment"]
    # cluster-wide list/watch of configmaps: its informer syncs before it serves (keystone.go Run)
    assert {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]} in docs[1]["rules"]
    probe = docs[-1]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["tcpSocket"] == {"port": 8443}  # ready means serving
    policy = json.loads(docs[3]["data"]["policies"])
    assert policy == keystone_auth.DEFAULT_POLICY  # role k8s-viewer: get/list/watch pods
    args = docs[-1]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--keystone-url=http://192.168.121.10/identity/v3" in args
    assert images(docs) == ["registry.k8s.io/provider-os/k8s-keystone-auth:v1.36.0"]
    rbac = ctx.render("manifests/verify/keystone-rbac.yaml.j2", project_id="4f2a9c", project_name="demo")
    validate_all(rbac)
    assert [d["kind"] for d in rbac] == ["Namespace", "Role", "RoleBinding"]  # verify.keystone may run first
    assert rbac[2]["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "4f2a9c"}]


def test_apiserver_gets_webhook_flags_and_loses_authorization_mode():
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-apiserver", "namespace": "kube-system"},
        "spec": {
            "containers": [
                {
                    "name": "kube-apiserver",
                    "image": "registry.k8s.io/kube-apiserver:v1.37.0",
                    "command": ["kube-apiserver", "--authorization-mode=Node,RBAC", "--secure-port=6443"],
                    "volumeMounts": [{"name": "k8s-certs", "mountPath": "/etc/kubernetes/pki"}],
                }
            ],
            "volumes": [{"name": "k8s-certs", "hostPath": {"path": "/etc/kubernetes/pki"}}],
        },
    }
    new = keystone_deploy.with_webhooks(manifest)
    check("kube-apiserver-keystone.yaml", yaml.safe_dump(new, sort_keys=False))
    cmd = new["spec"]["containers"][0]["command"]
    assert "--authentication-token-webhook-version=v1beta1" in cmd  # k8s-keystone-auth v1.36 reads v1beta1 only
    assert "--authorization-mode=Node,RBAC" not in cmd and "--secure-port=6443" in cmd
    assert "--authorization-config=/etc/kubernetes/keystone-auth/authorization-config.yaml" in cmd
    assert "--authentication-token-webhook-config-file=/etc/kubernetes/keystone-auth/webhook.kubeconfig" in cmd
    assert keystone_deploy.with_webhooks(new) == new  # idempotent: a second edit changes nothing
    kubernetes_validate.validate(new, "1.37.0", strict=True)


def test_authorization_config_and_webhook_kubeconfig():
    text = render(
        "kubeadm/authorization-config.yaml.j2",
        lab="golden",
        webhook_kubeconfig=keystone_deploy.WEBHOOK_KUBECONFIG,
        project_id_key=keystone_auth.PROJECT_ID,
    )
    check("authorization-config.yaml", text)
    authz = yaml.safe_load(text)
    assert authz["apiVersion"] == "apiserver.config.k8s.io/v1" and authz["kind"] == "AuthorizationConfiguration"
    assert [a["type"] for a in authz["authorizers"]] == ["Node", "RBAC", "Webhook"]
    hook = authz["authorizers"][2]["webhook"]
    assert hook["connectionInfo"] == {"type": "KubeConfigFile", "kubeConfigFile": keystone_deploy.WEBHOOK_KUBECONFIG}
    assert hook["failurePolicy"] == "NoOpinion" and keystone_auth.PROJECT_ID in hook["matchConditions"][0]["expression"]
    assert hook["subjectAccessReviewVersion"] == "v1beta1" and hook["matchConditionSubjectAccessReviewVersion"] == "v1"
    text = render(
        "kubeadm/keystone-webhook.kubeconfig.j2", lab="golden", ca_data="Q0E=", server="https://10.96.0.50:8443/webhook"
    )
    assert "insecure-skip-tls-verify" not in yaml.safe_dump(yaml.safe_load(text))
    assert yaml.safe_load(text)["clusters"][0]["cluster"]["certificate-authority-data"] == "Q0E="


def test_user_kubeconfig_uses_the_exec_plugin_and_kubectl_reads_it(tmp_path, ctx):
    text = keystone_deploy.user_kubeconfig(
        ctx.settings, "https://172.24.4.10:6443", "Q0E=", "http://ks/identity/v3", "demo", "demo", "Default"
    )
    check("keystone-user.kubeconfig", text)
    path = tmp_path / "demo.kubeconfig"
    path.write_text(text)
    out = subprocess.run(
        ["kubectl", "config", "view", "--kubeconfig", str(path), "-o", "json"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    user = json.loads(out.stdout)["users"][0]["user"]
    assert "auth-provider" not in user and user["exec"]["command"] == "client-keystone-auth"
    assert user["exec"]["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert {e["name"] for e in user["exec"]["env"]} == {"OS_AUTH_URL", "OS_DOMAIN_NAME", "OS_PROJECT_NAME", "OS_USERNAME"}


def test_serving_certificate_chains_to_the_lab_ca_and_is_renewed_when_names_change(tmp_path):
    ca, ca_key = pki.ensure_ca(tmp_path, "golden")
    assert pki.ensure_ca(tmp_path, "golden") == (ca, ca_key)  # created once
    crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    names = keystone_deploy.cert_names("10.96.0.50")
    assert "does not exist" in pki.serving_cert_problem(crt, key, ca, names)
    pki.issue_serving_cert(crt, key, ca, ca_key, names)
    assert pki.serving_cert_problem(crt, key, ca, names) == ""
    assert "wanted" in pki.serving_cert_problem(crt, key, ca, keystone_deploy.cert_names("10.96.0.51"))
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (ca, ca_key, crt, key))
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(crt)], capture_output=True, text=True)
    assert verify.returncode == 0 and "OK" in verify.stdout


def test_default_storage_class_decision():
    class Api:
        def __init__(self, classes):
            self.classes = classes

        def request(self, method, path, query=None):
            return {"items": self.classes}

    good = {
        "metadata": {"name": "csi-cinder-sc-delete", "annotations": {verify_pv.DEFAULT: "true"}},
        "provisioner": "cinder.csi.openstack.org",
        "reclaimPolicy": "Delete",
    }
    assert verify_pv.default_class(Api([good]))[0]
    ok, why = verify_pv.default_class(Api([]))
    assert not ok and "0 default StorageClasses" in why
    intree = {**good, "provisioner": "kubernetes.io/cinder"}
    ok, why = verify_pv.default_class(Api([intree]))
    assert not ok and "kubernetes.io/cinder" in why
    ok, why = verify_pv.default_class(Api([{**good, "reclaimPolicy": "Retain"}]))
    assert not ok and "Retain" in why


# What client-keystone-auth v1.36.0 prints on success, whatever version it is asked for
# (cloud-provider-openstack cmd/client-keystone-auth/main.go, respTemplate).
PLUGIN = """#!/bin/sh
printf '{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", "status": {"token": "gAAAA-t", "expirationTimestamp": "2099-01-01T00:00:00Z"}}'
"""  # noqa: E501 (one line, as client-keystone-auth prints it)


@pytest.mark.parametrize(
    "exec_version, accepted", [("client.authentication.k8s.io/v1beta1", True), ("client.authentication.k8s.io/v1", False)]
)
def test_kubectl_accepts_client_keystone_auth_only_with_the_kubeconfig_version_it_prints(
    tmp_path, ctx, exec_version, accepted
):
    """client-go rejects an ExecCredential whose apiVersion differs from the kubeconfig's exec
    apiVersion: the real kubectl runs the plugin (here: what client-keystone-auth prints)."""
    plugin = tmp_path / "client-keystone-auth"
    plugin.write_text(PLUGIN)
    plugin.chmod(0o755)
    cfg = yaml.safe_load(
        keystone_deploy.user_kubeconfig(ctx.settings, "https://127.0.0.1:1", "", "http://ks/v3", "demo", "demo", "Default")
    )
    cfg["clusters"][0]["cluster"].pop("certificate-authority-data")
    cfg["users"][0]["user"]["exec"]["apiVersion"] = exec_version
    path = tmp_path / "demo.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(path), "--insecure-skip-tls-verify", "get", "--raw", "/version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    mismatch = "plugin returned version client.authentication.k8s.io/v1beta1" in out.stderr
    assert out.returncode != 0 and mismatch != accepted, out.stderr  # accepted: it fails later, at the closed port
    if accepted:
        assert "refused" in out.stderr, out.stderr


def test_webhook_answers_are_read_as_k8s_keystone_auth_gives_them():
    """keystone.go: 200 with the review; a rejected token is HTTP 401 with the review saying
    authenticated false (a rejection, not an error); 400 is an error (e.g. a v1 review)."""
    from osk8s_tasks.core.engine import StepFailed
    from osk8s_tasks.verify.keystone.check import review_status

    ok = json.dumps({"status": {"authenticated": True, "user": {"username": "demo"}}})
    rejected = json.dumps({"apiVersion": "authentication.k8s.io/v1beta1", "status": {"authenticated": False}})
    assert review_status(200, ok)["user"]["username"] == "demo"
    assert review_status(401, rejected) == {"authenticated": False}
    for code, text in ((400, 'unknown apiVersion "authentication.k8s.io/v1"\n'), (401, "Unauthorized"), (500, "{}")):
        with pytest.raises(StepFailed, match=f"answered {code}"):
            review_status(code, text)


@pytest.mark.parametrize(
    "wanted, offered, provider",
    [
        ("amphora", {"amphora", "octavia"}, "amphora"),
        ("ovn", {"amphora", "ovn"}, "amphora"),  # HTTP listeners need amphora
        ("ovn", {"ovn"}, None),  # skipped, never failed on an Octavia 400
    ],
)
def test_ingress_provider(wanted, offered, provider):
    got, why = verify_ingress.ingress_provider(wanted, offered)
    assert got == provider
    if provider is None:
        assert why.startswith("skipped:") and "HTTP listeners" in why


def test_keystone_policy_model_accepts_only_what_upstream_reads_the_same_way():
    user = {
        "username": "demo",
        "uid": "u1",
        "groups": ["p1"],
        "extra": {keystone_auth.ROLES: ["k8s-viewer"], keystone_auth.PROJECT_ID: ["p1"]},
    }
    assert keystone_auth.authorize(keystone_auth.DEFAULT_POLICY, user, "list", "pods", "default")
    assert not keystone_auth.authorize(keystone_auth.DEFAULT_POLICY, {**user, "extra": {}}, "list", "pods", "default")
    rule = keystone_auth.DEFAULT_POLICY[0]
    for bad, why in (
        ([{**rule, "resource": {k: v for k, v in rule["resource"].items() if k != "version"}}], "version"),
        ([{**rule, "resource": {**rule["resource"], "apiGroup": "*"}}], "apiGroup"),
        ([{**rule, "users": {"roles": ["x"], "projects": ["p1"]}}], "users"),
        ([{"resource_permissions": {"*/pods": ["get"]}, "match": []}], "resource_permissions"),
        ([{**rule, "match": [{"type": "domain", "values": ["x"]}]}], "domain"),
    ):
        with pytest.raises(keystone_auth.PolicyError, match=why):
            keystone_auth.authorize(bad, user, "list", "pods", "default")


@pytest.mark.parametrize(
    "rule, allowed",
    [
        ({}, True),  # tcp 30000-32767 from anywhere
        ({"direction": "egress"}, False),  # every new group's default rules
        ({"ether_type": "IPv6"}, False),
        ({"protocol": "udp"}, False),
        ({"protocol": None, "port_range_min": None, "port_range_max": None}, True),  # any protocol, any port
        ({"port_range_min": 30000, "port_range_max": 31000}, False),  # 31320 outside
        ({"port_range_min": 31320, "port_range_max": 31320}, True),
        ({"remote_ip_prefix": "10.0.0.0/26"}, True),  # the VIP's subnet
        ({"remote_ip_prefix": "172.24.4.0/24"}, False),  # another source
        ({"remote_group_id": "a-group"}, False),  # only that group's ports
    ],
)
def test_nodeport_rule_matching(rule, allowed):
    from osk8s_tasks.verify.octavia import rule_allows

    base = {
        "direction": "ingress",
        "ether_type": "IPv4",
        "protocol": "tcp",
        "port_range_min": 30000,
        "port_range_max": 32767,
        "remote_ip_prefix": None,
        "remote_group_id": None,
    }
    assert rule_allows(SimpleNamespace(**{**base, **rule}), 31320, "10.0.0.5") is allowed


def test_the_apiserver_s_own_log_names_why_it_does_not_start():
    """kubelet's CRI log lines (`<time> <stream> <P|F> <message>`): the klog error lines win. The line
    is what kube-apiserver v1.37.2 printed for an AuthorizationConfiguration webhook without settings."""
    log = (
        "2026-11-30T08:00:00.000000000Z stderr F I1130 08:00:00.000000       1 options.go:229] "
        "external host was not specified\n"
        '2026-11-30T08:00:00.100000000Z stderr F E1130 08:00:00.100000       1 run.go:72] "command failed" '
        'err="authorizers[0].webhook: Required value: required when type=Webhook"\n'
        "2026-11-30T08:00:00.200000000Z stderr F I1130 08:00:00.200000       1 server.go:1] shutting down\n"
    )
    why = keystone_deploy.parse_apiserver_errors(log)
    assert why.startswith("E1130") and "authorizers[0].webhook: Required value" in why and "shutting down" not in why
    assert keystone_deploy.parse_apiserver_errors("") == ""
