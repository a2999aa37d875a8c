"""The Keystone side of Kubernetes authentication, as k8s-keystone-auth (cloud-provider-openstack)
performs it: a TokenReview validates the user's token with that same token, lists the user's
groups, and puts the project ID among the groups (so a RoleBinding can name a project); the
authorization webhook then matches policy rules by role, project, user or group.

verify.keystone compares the webhook's answers with these: same inputs, same Keystone."""

from __future__ import annotations

import requests

from . import log

ROLES = "alpha.kubernetes.io/identity/roles"
PROJECT_ID = "alpha.kubernetes.io/identity/project/id"
PROJECT_NAME = "alpha.kubernetes.io/identity/project/name"
DOMAIN_ID = "alpha.kubernetes.io/identity/user/domain/id"
DOMAIN_NAME = "alpha.kubernetes.io/identity/user/domain/name"

# The policy osk8s deploys with k8s-keystone-auth: Keystone role k8s-viewer may read pods.
DEFAULT_POLICY = [{
    "resource": {"verbs": ["get", "list", "watch"], "resources": ["pods"], "version": "*", "namespace": "*"},
    "match": [{"type": "role", "values": ["k8s-viewer"]}],
}]


def _v3(auth_url: str) -> str:
    url = auth_url.rstrip("/")
    return url if url.endswith("/v3") else url + "/v3"


def issue_token(auth_url: str, username: str, password: str, project: str, domain: str = "Default", timeout=15) -> str:
    body = {"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": username, "domain": {"name": domain}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": domain}}}}}
    r = requests.post(f"{_v3(auth_url)}/auth/tokens", json=body, timeout=timeout)
    r.raise_for_status()
    return log.secret(r.headers["X-Subject-Token"])


def token_review(auth_url: str, token: str, timeout=15) -> dict:
    """The TokenReview status k8s-keystone-auth returns for `token`."""
    headers = {"X-Auth-Token": token, "X-Subject-Token": token}
    r = requests.get(f"{_v3(auth_url)}/auth/tokens", headers=headers, timeout=timeout)
    if r.status_code != 200:  # revoked: 404 on current Keystone (401 on older); garbage: 401
        return {"authenticated": False, "error": f"Keystone answered {r.status_code} for the token"}
    tok = r.json()["token"]
    user, project = tok["user"], tok.get("project") or {}
    g = requests.get(f"{_v3(auth_url)}/users/{user['id']}/groups", headers={"X-Auth-Token": token}, timeout=timeout)
    groups = [x["name"] for x in g.json().get("groups", [])] if g.status_code == 200 else []
    return {"authenticated": True, "user": {
        "username": user["name"], "uid": user["id"], "groups": groups + [project.get("id", "")],
        "extra": {ROLES: [x["name"] for x in tok.get("roles", [])], PROJECT_ID: [project.get("id", "")],
                  PROJECT_NAME: [project.get("name", "")], DOMAIN_ID: [user["domain"]["id"]],
                  DOMAIN_NAME: [user["domain"]["name"]]}}}


def revoke(auth_url: str, token: str, timeout=15) -> None:
    r = requests.delete(f"{_v3(auth_url)}/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": token},
                        timeout=timeout)
    r.raise_for_status()


def _match(rules: list[dict], user: dict) -> bool:
    extra = user.get("extra", {})
    for m in rules:
        values, kind = m.get("values", []), m.get("type")
        if kind not in ("group", "project", "role", "user"):
            return False
        if "*" in values:
            continue
        if kind == "group" and not set(user.get("groups", [])) & set(values):
            return False
        if kind == "user" and user.get("username") not in values and user.get("uid") not in values:
            return False
        if kind == "project" and not (set(extra.get(PROJECT_ID, [])) | set(extra.get(PROJECT_NAME, []))) & set(values):
            return False
        if kind == "role" and not set(extra.get(ROLES, [])) & set(values):
            return False
    return True


def authorize(policy: list[dict], user: dict, verb: str, resource: str, namespace: str = "", group: str = "",
              subresource: str = "") -> bool:
    """Whether the webhook's resource policy allows the request (as its resourceMatches does)."""
    for p in policy:
        spec = p.get("resource")
        if not spec:
            continue
        if spec.get("apiGroup", "*") not in ("*", group) or spec.get("namespace", "*") not in ("*", namespace):
            continue
        resources = spec.get("resources", [])
        wanted = {"*", f"{resource}/*", f"{resource}/{subresource}"} if subresource else {"*", resource}
        if not wanted & set(resources):
            continue
        if "*" not in spec.get("verbs", []) and verb not in spec.get("verbs", []):
            continue
        if _match(p.get("match", []), user):
            return True
    return False
