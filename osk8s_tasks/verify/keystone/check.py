"""verify.keystone: Keystone users on the cluster through k8s-keystone-auth (set up by
keystone_deploy), checked the way a user meets it:

1. a TokenReview sent straight to the webhook with a real Keystone token: authenticated, the
   user's name, the project ID among the groups (and the same as Keystone's own answer);
2. the user is Forbidden before any binding;
3. a RoleBinding to the project's group (not to the user) lets them list pods;
4. with the Keystone role verify.viewer_role, the webhook policy lets them list but not create;
5. a revoked token and a garbage token are rejected."""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager

import requests

from osk8s_tasks.core import kube, log
from osk8s_tasks.core.engine import Status, StepFailed
from osk8s_tasks.openstack import clouds as cloud
from osk8s_tasks.verify.harness import Ctx, plan_rows, wait
from osk8s_tasks.verify.keystone import model as keystone_auth
from osk8s_tasks.verify.keystone.deploy import SERVICE, Setup, pki_dir

ASSERTIONS = [
    "webhook TokenReview",
    "forbidden before any binding",
    "RoleBinding to the project group",
    "keystone policy: viewer lists, cannot create",
    "revoked token rejected",
    "garbage token rejected",
    "cleanup",
]


def identity(ctx: Ctx) -> dict:
    """Who verify.keystone acts as: a password user from clouds.yaml (DevStack's demo)."""
    name = ctx.settings.verify.keystone_user_cloud or ctx.settings.openstack.cloud
    conn = ctx.clouds.get(name)
    auth = conn.config.config.get("auth", {})
    if not auth.get("username") or not auth.get("password"):
        raise StepFailed(
            f"verify.keystone needs a Keystone user with a password; cloud {name!r} has none. "
            "Fix: set verify.keystone_user_cloud to such a clouds.yaml entry"
        )
    return {
        "cloud": name,
        "auth_url": keystone_auth.v3(auth["auth_url"]),
        "username": auth["username"],
        "project_name": auth.get("project_name", ""),
        "domain": auth.get("user_domain_name", "Default"),
        "project_id": conn.current_project_id,
        "user_id": conn.current_user_id,
    }


def new_token(ctx: Ctx, ident: dict) -> str:
    """A fresh token of the user (a new authentication, as client-keystone-auth makes one)."""
    return log.secret(cloud.connect(ctx.settings, ident["cloud"]).auth_token)


@contextmanager
def webhook_url(ctx: Ctx, master, cluster_ip: str):
    """The webhook's URL as the tool reaches it: directly when the cluster is (cluster.api_server),
    else through an SSH forward from the control plane to the Service's ClusterIP."""
    if ctx.settings.cluster.api_server:
        yield f"https://{cluster_ip}:8443/webhook"
        return
    with master.forward(cluster_ip, 8443) as port:
        yield f"https://127.0.0.1:{port}/webhook"


def review(url: str, ca, token: str) -> dict:
    """The webhook's TokenReview status. k8s-keystone-auth v1.36 takes only v1beta1 reviews (400
    otherwise) and answers a rejected token with HTTP 401 and the review, authenticated false
    (pkg/identity/keystone/keystone.go: Handler, authenticateToken)."""
    body = {"apiVersion": "authentication.k8s.io/v1beta1", "kind": "TokenReview", "spec": {"token": token}}
    try:
        r = requests.post(url, json=body, verify=str(ca), timeout=15)
    except requests.RequestException as exc:
        raise StepFailed(f"k8s-keystone-auth at {url} unreachable: {exc.__class__.__name__}: {str(exc)[:200]}") from None
    return review_status(r.status_code, r.text)


def review_status(code: int, text: str) -> dict:
    """200: the review's status; 401 with a review whose status says authenticated false: a
    rejected token; anything else is an error of the webhook, with its answer in the message."""
    try:
        status = json.loads(text).get("status", {}) if text.strip().startswith("{") else None
    except ValueError:
        status = None
    if code == 200 and isinstance(status, dict):
        return status
    if code == 401 and isinstance(status, dict) and status.get("authenticated") is False:
        return status
    raise StepFailed(f"k8s-keystone-auth answered {code} to a TokenReview: {text.strip()[:200]}")


def pods_as(ctx: Ctx, token: str) -> int:
    return ctx.api.as_bearer(token).call("GET", f"/api/v1/namespaces/{ctx.namespace}/pods")[0]


def create_pod_as(ctx: Ctx, token: str) -> int:
    """A server-side dry-run create: authorization is decided, nothing is stored."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "keystone-probe", "namespace": ctx.namespace},
        "spec": {
            "containers": [
                {"name": "c", "image": f"registry.k8s.io/e2e-test-images/busybox:{ctx.settings.versions.busybox}"}
            ]
        },
    }
    return ctx.api.as_bearer(token).call(
        "POST", f"/api/v1/namespaces/{ctx.namespace}/pods", body=pod, query=[("dryRun", "All")]
    )[0]


def _status(ctx: Ctx, fn, want: int, what: str, timeout: float = 30):
    def check():
        code = fn()
        return Status(code == want, f"{what}: HTTP {code}")

    return wait(check, timeout, 1.0)


AUTHN_HINT = (
    "401: the apiserver did not accept the Keystone token (is --authentication-token-webhook-config-file "
    "set? kube-apiserver logs)"
)


def run_keystone(ctx: Ctx, master) -> None:
    ident = identity(ctx)
    setup = Setup(ctx, master, ident)
    ctx.s.converge(setup.steps())
    admin = ctx.clouds.get(ctx.settings.openstack.admin_cloud).identity
    role = _viewer_role(admin, ctx.settings.verify.viewer_role)
    if role.id in _roles_of(admin, ident):
        ctx.record(
            "forbidden before any binding",
            False,
            f"{ident['username']} already has role {role.name} in "
            f"{ident['project_name']}, so this check means nothing. Fix: inv verify.destroy (removes it)",
        )
        return
    ca = pki_dir(ctx.settings) / "ca.crt"
    token = new_token(ctx, ident)
    with webhook_url(ctx, master, setup.cluster_ip()) as url:
        t0 = time.monotonic()
        st = review(url, ca, token)
        ours = keystone_auth.token_review(ident["auth_url"], token)
        user = st.get("user", {})
        problems = [] if st.get("authenticated") else [f"not authenticated: {st.get('error', '?')}"]
        problems += [] if user.get("username") == ident["username"] else [f"user {user.get('username')!r}"]
        problems += [] if ident["project_id"] in user.get("groups", []) else ["the project ID is not among the groups"]
        problems += (
            []
            if sorted(user.get("groups", [])) == sorted(ours.get("user", {}).get("groups", []))
            else [f"groups {user.get('groups')} differ from Keystone's {ours.get('user', {}).get('groups')}"]
        )
        ctx.record(
            "webhook TokenReview",
            not problems,
            "; ".join(problems) or f"{user['username']} authenticated, groups include project {ident['project_id']}",
            t0,
        )
        _rbac_and_policy(ctx, ident, admin, role, token)
        t0 = time.monotonic()
        keystone_auth.revoke(ident["auth_url"], token)
        st = review(url, ca, token)
        ctx.record(
            "revoked token rejected",
            not st.get("authenticated"),
            "the webhook rejects the revoked token (the apiserver may keep accepting it for its 30 s token cache)"
            if not st.get("authenticated")
            else "the webhook still accepts a revoked token",
            t0,
        )
        garbage = "gAAAAA" + "x" * 180
        t0 = time.monotonic()
        direct, via_api = review(url, ca, garbage).get("authenticated"), pods_as(ctx, garbage)
        ctx.record(
            "garbage token rejected",
            not direct and via_api == 401,
            f"webhook: authenticated={bool(direct)}; apiserver: HTTP {via_api} (want 401)",
            t0,
        )


def plan_keystone(ctx: Ctx, master) -> None:
    """--dry-run: the set-up steps checked for real (cluster and control plane files), the test
    objects and the assertions listed."""
    ident = identity(ctx)
    ctx.s.converge(Setup(ctx, master, ident).steps())
    rbac = ctx.render(
        "manifests/verify/keystone-rbac.yaml.j2", project_id=ident["project_id"], project_name=_dns(ident["project_name"])
    )
    plan_rows(ctx, "keystone", rbac, ASSERTIONS)


def _rbac_and_policy(ctx: Ctx, ident: dict, admin, role, token: str) -> None:
    t0 = time.monotonic()
    ctx.apply(
        ctx.render(
            "manifests/verify/keystone-rbac.yaml.j2",
            project_id=ident["project_id"],
            project_name=_dns(ident["project_name"]),
        )[:1]
    )  # the namespace
    code = pods_as(ctx, token)
    ctx.record(
        "forbidden before any binding",
        code == 403,
        f"list pods as {ident['username']}: HTTP {code}" + ("" if code != 401 else f" ({AUTHN_HINT})"),
        t0,
    )
    rbac = ctx.render(
        "manifests/verify/keystone-rbac.yaml.j2", project_id=ident["project_id"], project_name=_dns(ident["project_name"])
    )[1:]
    t0 = time.monotonic()
    ctx.apply(rbac)
    ok, detail = _status(
        ctx, lambda: pods_as(ctx, token), 200, f"list pods via a RoleBinding to group {ident['project_id']}"
    )
    ctx.record("RoleBinding to the project group", ok, detail, t0)
    for d in reversed(rbac):
        ctx.api.delete(d)
    _status(ctx, lambda: pods_as(ctx, token), 403, "binding removed")
    t0 = time.monotonic()
    admin.assign_project_role_to_user(ident["project_id"], ident["user_id"], role)
    try:
        viewer = new_token(ctx, ident)  # roles are part of the token
        listed = _status(ctx, lambda: pods_as(ctx, viewer), 200, f"list pods as {role.name}")
        created = create_pod_as(ctx, viewer)
        ctx.record(
            "keystone policy: viewer lists, cannot create",
            listed[0] and created == 403,
            f"{listed[1]}; create pod (dry run): HTTP {created} (want 403)",
            t0,
        )
        keystone_auth.revoke(ident["auth_url"], viewer)
    finally:
        if not ctx.keep:
            admin.unassign_project_role_from_user(ident["project_id"], ident["user_id"], role)
    ctx.record(
        "cleanup",
        True,
        f"RoleBinding deleted; role {role.name} "
        + ("kept (--keep)" if ctx.keep else f"taken from {ident['username']} again"),
    )


def _viewer_role(admin, name: str):
    role = cloud.by_name(admin.roles(name=name))
    return role or admin.create_role(name=name, description="osk8s: may read pods through k8s-keystone-auth")


def _roles_of(admin, ident: dict) -> set[str]:
    return {a.role["id"] for a in admin.role_assignments(user_id=ident["user_id"], scope_project_id=ident["project_id"])}


def _dns(name: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:40] or "project"


def cleanup_keystone(ctx: Ctx) -> list[str]:
    """verify.destroy: the RBAC objects and the viewer role assignment verify.keystone makes."""
    done = []
    admin, ident, role = viewer_grant(ctx)
    for d in ctx.render(
        "manifests/verify/keystone-rbac.yaml.j2", project_id=ident["project_id"], project_name=_dns(ident["project_name"])
    )[1:]:
        if ctx.api.delete(d):
            done.append(kube.label(d))
    if role is not None:
        admin.unassign_project_role_from_user(ident["project_id"], ident["user_id"], role)
        done.append(f"role {role.name} of {ident['username']}")
    return done


def viewer_grant(ctx: Ctx):
    """(admin identity proxy, the user, the viewer role if the user holds it in its project, else None)."""
    ident = identity(ctx)
    admin = ctx.clouds.get(ctx.settings.openstack.admin_cloud).identity
    role = cloud.by_name(admin.roles(name=ctx.settings.verify.viewer_role))
    return admin, ident, role if role is not None and role.id in _roles_of(admin, ident) else None


__all__ = ["ASSERTIONS", "SERVICE", "run_keystone", "cleanup_keystone", "viewer_grant"]
