"""The Keystone side of Kubernetes authentication, as k8s-keystone-auth (cloud-provider-openstack
v1.36, pkg/identity/keystone) performs it: a TokenReview validates the user's token with that same
token, lists the user's groups, and puts the project ID among the groups (so a RoleBinding can name
a project); the authorization webhook then matches policy rules by role, project, user or group.

Keystone is asked through python-keystoneclient over a keystoneauth session whose token is the
user's own (authenticator.go: Keystoner uses the token under review). verify.keystone compares the
webhook's answers with these: same inputs, same Keystone.

The policy model accepts only the shape osk8s writes (policy.go's version-1 `resource` rule with
every key upstream dereferences, and `match`); any other shape is rejected with the reason, since
a rule upstream would read differently must not be judged here as if it meant the same."""

from __future__ import annotations

from keystoneauth1 import exceptions, session, token_endpoint
from keystoneauth1.identity import v3 as identity
from keystoneclient.v3 import client

from osk8s_tasks.core import log

ROLES = "alpha.kubernetes.io/identity/roles"
PROJECT_ID = "alpha.kubernetes.io/identity/project/id"
PROJECT_NAME = "alpha.kubernetes.io/identity/project/name"
DOMAIN_ID = "alpha.kubernetes.io/identity/user/domain/id"
DOMAIN_NAME = "alpha.kubernetes.io/identity/user/domain/name"

# The policy osk8s deploys with k8s-keystone-auth: Keystone role k8s-viewer may read pods. In
# upstream's policy.go the API group of a resource rule is the JSON key "version" (sic).
DEFAULT_POLICY = [
    {
        "resource": {"verbs": ["get", "list", "watch"], "resources": ["pods"], "version": "*", "namespace": "*"},
        "match": [{"type": "role", "values": ["k8s-viewer"]}],
    }
]
MATCH_TYPES = ("group", "project", "role", "user")


class PolicyError(ValueError):
    """A policy shape this model does not judge; the message names the rule and why."""


def v3(auth_url: str) -> str:
    url = auth_url.rstrip("/")
    return url if url.endswith("/v3") else url + "/v3"


def _client(auth_url: str, token: str, timeout: float):
    """keystoneclient acting with `token` itself, as k8s-keystone-auth validates a user's token."""
    sess = session.Session(auth=token_endpoint.Token(v3(auth_url), token), timeout=timeout)
    return client.Client(session=sess, interface="public")


def issue_token(auth_url: str, username: str, password: str, project: str, domain: str = "Default", timeout=15) -> str:
    auth = identity.Password(
        auth_url=v3(auth_url),
        username=username,
        password=password,
        user_domain_name=domain,
        project_name=project,
        project_domain_name=domain,
    )
    return log.secret(session.Session(auth=auth, timeout=timeout).get_token())


def token_review(auth_url: str, token: str, timeout=15) -> dict:
    """The TokenReview status k8s-keystone-auth returns for `token` (authenticator.go:
    AuthenticateToken): a token Keystone does not accept, a token without a project scope and a
    failed group lookup each end in `authenticated: false` with the reason in `error`."""

    ksc = _client(auth_url, token, timeout)
    try:
        access = ksc.tokens.validate(token, include_catalog=False)
    except exceptions.HttpError as exc:  # revoked: 404 on current Keystone (401 on older); garbage: 401
        return {"authenticated": False, "error": f"Keystone answered {exc.http_status} for the token"}
    if not access.project_id:
        return {"authenticated": False, "error": "the token has no project scope (k8s-keystone-auth needs one)"}
    try:
        groups = [g.name for g in ksc.groups.list(user=access.user_id)]
    except exceptions.HttpError as exc:
        return {"authenticated": False, "error": f"Keystone answered {exc.http_status} to the user's group list"}
    return {
        "authenticated": True,
        "user": {
            "username": access.username,
            "uid": access.user_id,
            "groups": groups + [access.project_id],
            "extra": {
                ROLES: list(access.role_names),
                PROJECT_ID: [access.project_id],
                PROJECT_NAME: [access.project_name],
                DOMAIN_ID: [access.user_domain_id],
                DOMAIN_NAME: [access.user_domain_name],
            },
        },
    }


def revoke(auth_url: str, token: str, timeout=15) -> None:
    _client(auth_url, token, timeout).tokens.revoke_token(token)


def check_policy(policy: list[dict]) -> None:
    """Raise PolicyError unless every rule has the shape osk8s writes, with every key upstream's
    resourceMatches dereferences (verbs, resources, version, namespace) present."""
    if not isinstance(policy, list):
        raise PolicyError("a policy is a JSON list of rules")
    for i, rule in enumerate(policy):
        extra = sorted(set(rule) - {"resource", "match"})
        if extra:
            raise PolicyError(
                f"rule {i}: {', '.join(extra)} not judged here (osk8s writes version-1 `resource` "
                "rules only; `users`, `resource_permissions` and `nonresource*` are version-2 or "
                "non-resource rules)"
            )
        spec = rule.get("resource")
        if not isinstance(spec, dict):
            raise PolicyError(f"rule {i}: no `resource` rule")
        missing = [k for k in ("verbs", "resources", "version", "namespace") if k not in spec]
        if missing:
            raise PolicyError(
                f"rule {i}: resource rule lacks {', '.join(missing)} (upstream's policy.go requires "
                "each; the API group is the key `version`)"
            )
        if "apiGroup" in spec:
            raise PolicyError(f"rule {i}: `apiGroup` is not read upstream; the API group is the key `version`")
        for m in rule.get("match", []):
            if m.get("type") not in MATCH_TYPES:
                raise PolicyError(f"rule {i}: match type {m.get('type')!r} (upstream knows {', '.join(MATCH_TYPES)})")


def _match(rules: list[dict], user: dict) -> bool:
    """authorizer.go: match: every rule of the list must hold."""
    extra = user.get("extra", {})
    for m in rules:
        values, kind = m.get("values", []), m.get("type")
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


def authorize(
    policy: list[dict], user: dict, verb: str, resource: str, namespace: str = "", group: str = "", subresource: str = ""
) -> bool:
    """Whether the webhook's resource policy allows the request (authorizer.go: Authorize,
    resourceMatches). A user without Keystone extras is denied, as upstream denies it."""
    check_policy(policy)
    if not user.get("extra"):
        return False
    for p in policy:
        spec = p["resource"]
        if spec["version"] not in ("*", group) or spec["namespace"] not in ("*", namespace):
            continue
        resources = spec["resources"]
        wanted = {"*", f"{resource}/*", f"{resource}/{subresource}"} if subresource else {"*", resource}
        if not wanted & set(resources):
            continue
        if "*" not in spec["verbs"] and verb not in spec["verbs"]:
            continue
        if _match(p.get("match", []), user):
            return True
    return False
