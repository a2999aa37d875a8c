"""The admin kubeconfig a control-plane node hands over is reduced to what kubeadm writes there;
an exec plugin, an auth-provider or extra users/contexts (a node taken over could plant them: a
kubeconfig's exec plugin runs on the machine that loads it) are refused, and never run."""

import pytest
import yaml

from osk8s_tasks.core import kube
from osk8s_tasks.core.engine import StepFailed

KUBEADM = {
    "apiVersion": "v1",
    "kind": "Config",
    "current-context": "kubernetes-admin@kubernetes",
    "preferences": {},
    "clusters": [
        {"name": "kubernetes", "cluster": {"server": "https://10.0.0.5:6443", "certificate-authority-data": "Q0E="}}
    ],
    "users": [{"name": "kubernetes-admin", "user": {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}}],
    "contexts": [{"name": "kubernetes-admin@kubernetes", "context": {"cluster": "kubernetes", "user": "kubernetes-admin"}}],
}


def planted(**user):
    doc = yaml.safe_load(yaml.safe_dump(KUBEADM))
    doc["users"][0]["user"].update(user)
    return doc


def test_what_kubeadm_writes_is_kept():
    clean = yaml.safe_load(kube.admin_kubeconfig(yaml.safe_dump(KUBEADM), "admin.conf"))
    assert clean["users"] == KUBEADM["users"] and clean["clusters"] == KUBEADM["clusters"]
    assert clean["current-context"] == "kubernetes-admin@kubernetes" and "preferences" not in clean


@pytest.mark.parametrize(
    "doc, words",
    [
        (planted(exec={"apiVersion": "client.authentication.k8s.io/v1", "command": "sh", "args": ["-c", "id"]}), "exec"),
        (planted(**{"auth-provider": {"name": "oidc"}}), "auth-provider"),
        (planted(**{"client-key": "/home/you/.ssh/id_ed25519"}), "client-key"),
        ({**KUBEADM, "users": KUBEADM["users"] * 2}, "2 users"),
        ({**KUBEADM, "contexts": KUBEADM["contexts"] + [{"name": "x", "context": {}}]}, "2 contexts"),
        (
            {
                **KUBEADM,
                "clusters": [{"name": "k", "cluster": {"server": "https://x:6443", "insecure-skip-tls-verify": True}}],
            },
            "insecure-skip-tls-verify",
        ),
    ],
)
def test_anything_else_is_refused_with_what_was_found(doc, words):
    with pytest.raises(StepFailed, match=words):
        kube.admin_kubeconfig(yaml.safe_dump(doc), "master:/etc/kubernetes/admin.conf")


def test_a_planted_exec_plugin_never_runs(inv, tmp_path):
    """inv cluster.status with an exec plugin in the lab's admin.conf: refused before loading."""
    lab = tmp_path / "state" / "osk8s"
    lab.mkdir(parents=True)
    doc = planted(
        exec={
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "sh",
            "args": ["-c", f"touch {tmp_path}/pwned"],
        }
    )
    (lab / "admin.conf").write_text(yaml.safe_dump(doc))
    r = inv(
        ["cluster.status"],
        env={"INVOKE_LAB_STATE_DIR": str(tmp_path / "state"), "INVOKE_CLUSTER_API_SERVER": "https://127.0.0.1:1"},
        timeout=120,
    )
    assert r.returncode == 1 and "refused" in r.stdout + r.stderr and "exec" in r.stdout + r.stderr, r.stdout + r.stderr
    assert not (tmp_path / "pwned").exists()
