"""The Keystone side of verify.keystone against the real loopback Keystone: token issue, the
TokenReview k8s-keystone-auth derives (validation with the user's own token, groups, project id
among them), revocation, garbage tokens, and the webhook's policy for role k8s-viewer."""

import pytest
import yaml

from osk8s_tasks.verify.keystone import model as ka

pytestmark = pytest.mark.openstack
AUTH = "http://127.0.0.1:5000/v3"


@pytest.fixture(scope="module")
def demo(loopback_cloud):
    """A token of demo, made a k8s-viewer first (as verify.keystone grants its test user the role)."""
    import openstack

    idn = openstack.connect(cloud="admin").identity
    project, user = idn.find_project("demo", domain_id="default"), idn.find_user("demo", domain_id="default")
    idn.assign_project_role_to_user(project, user, idn.find_role("k8s-viewer"))
    cloud = yaml.safe_load(loopback_cloud.read_text())["clouds"]["demo"]["auth"]
    return ka.issue_token(AUTH, cloud["username"], cloud["password"], cloud["project_name"])


def test_token_review_authenticates_with_project_among_groups(demo):
    import openstack

    review = ka.token_review(AUTH, demo)
    project = openstack.connect(cloud="admin").identity.find_project("demo", domain_id="default")
    assert review["authenticated"] and review["user"]["username"] == "demo"
    assert project.id in review["user"]["groups"]
    assert {"member", "k8s-viewer"} <= set(review["user"]["extra"][ka.ROLES])
    assert review["user"]["extra"][ka.PROJECT_NAME] == ["demo"]


def test_policy_lets_a_viewer_list_pods_but_not_create_them(demo):
    user = ka.token_review(AUTH, demo)["user"]
    assert ka.authorize(ka.DEFAULT_POLICY, user, "list", "pods", "default")
    assert ka.authorize(ka.DEFAULT_POLICY, user, "watch", "pods", "kube-system")
    assert not ka.authorize(ka.DEFAULT_POLICY, user, "create", "pods", "default")
    assert not ka.authorize(ka.DEFAULT_POLICY, user, "list", "secrets", "default")
    stranger = {**user, "extra": {**user["extra"], ka.ROLES: ["member"]}}
    assert not ka.authorize(ka.DEFAULT_POLICY, stranger, "list", "pods", "default")


def test_project_policy_matches_by_id_or_name(demo):
    user = ka.token_review(AUTH, demo)["user"]
    pid = user["extra"][ka.PROJECT_ID][0]
    for value in (pid, "demo"):
        policy = [
            {
                "resource": {"verbs": ["*"], "resources": ["*"], "version": "*", "namespace": "*"},
                "match": [{"type": "project", "values": [value]}],
            }
        ]
        assert ka.authorize(policy, user, "create", "deployments", "default", group="apps")


def test_revoked_and_garbage_tokens_are_rejected(loopback_cloud):
    cloud = yaml.safe_load(loopback_cloud.read_text())["clouds"]["demo"]["auth"]
    token = ka.issue_token(AUTH, cloud["username"], cloud["password"], cloud["project_name"])
    assert ka.token_review(AUTH, token)["authenticated"]
    ka.revoke(AUTH, token)
    revoked = ka.token_review(AUTH, token)
    assert not revoked["authenticated"] and revoked["error"].endswith(("401 for the token", "404 for the token"))
    garbage = ka.token_review(AUTH, "gAAAAA-not-a-token")
    assert not garbage["authenticated"] and garbage["error"].endswith(("401 for the token", "404 for the token"))
