"""Golden files for everything `cluster` renders; every Kubernetes manifest validated against the
OpenAPI schema of the pinned Kubernetes version (kubernetes-validate, strict); our own cloud.conf
files pass our own lint. UPDATE_GOLDEN=1 rewrites the golden files."""

import os
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from osk8s_tasks.cluster import lint as cloudconf
from osk8s_tasks.cluster import render as cluster_render
from osk8s_tasks.core import config

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CLOUD = {
    "auth_url": "http://192.168.121.10/identity",
    "app_credential_id": "0a1b2c",
    "app_credential_secret": "s3cret",
    "region": "RegionOne",
    "subnet_id": "5d7e-subnet",
    "floating_network_id": "9f1c-public",
}


def settings(**cluster):
    return config.validate({"lab": {"name": "golden"}, "cluster": cluster})


def check(name, text):
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; review, then UPDATE_GOLDEN=1 to accept"


def test_kubeadm_init_v1beta4():
    text = cluster_render.init_config(settings(), "10.0.0.5", "golden-master", "172.24.4.10")
    check("kubeadm-init.yaml", text)
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"]
    init, cluster, kubelet = docs
    assert init["apiVersion"] == cluster["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert {"name": "cloud-provider", "value": "external"} in init["nodeRegistration"]["kubeletExtraArgs"]
    assert {"name": "cloud-provider", "value": "external"} in cluster["controllerManager"]["extraArgs"]
    assert "172.24.4.10" in cluster["apiServer"]["certSANs"] and cluster["kubernetesVersion"] == "v1.37.2"
    assert kubelet["cgroupDriver"] == "systemd"


def test_kubeadm_join_v1beta4():
    text = cluster_render.join_config(
        settings(), "golden-worker-1", "10.0.0.5:6443", "abcdef.0123456789abcdef", "sha256:ab12"
    )
    check("kubeadm-join.yaml", text)
    doc = yaml.safe_load(text)
    assert doc["kind"] == "JoinConfiguration" and doc["discovery"]["bootstrapToken"]["caCertHashes"] == ["sha256:ab12"]


@pytest.mark.parametrize("provider, method", [("amphora", "ROUND_ROBIN"), ("ovn", "SOURCE_IP_PORT")])
def test_cloud_conf(provider, method):
    text = cluster_render.cloud_conf(settings(lb_provider=provider), CLOUD)
    check(f"cloud.conf.{provider}", text)
    assert f"lb-provider = {provider}" in text and f"lb-method = {method}" in text and "\npassword" not in text
    assert cloudconf.lint(text, "occm") == []


def test_cinder_conf():
    text = cluster_render.cinder_conf(settings(), CLOUD)
    check("cinder-csi.conf", text)
    assert cloudconf.lint(text, "cinder-csi") == []


@pytest.mark.parametrize(
    "name, render", [("occm.yaml", cluster_render.occm_manifests), ("cinder-csi.yaml", cluster_render.cinder_csi_manifests)]
)
def test_manifests_match_golden_and_the_pinned_schema(name, render):
    s = settings()
    text = render(s)
    check(name, text)
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, s.versions.kubernetes, strict=True)
        assert doc["metadata"]["labels"]["osk8s.io/lab"] == "golden"
    images = [
        c["image"]
        for d in docs
        if d["kind"] in ("Deployment", "DaemonSet")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    assert images and all(":v" in i and not i.endswith(":latest") for i in images)


def test_schema_validation_catches_a_broken_manifest():
    doc = yaml.safe_load(cluster_render.occm_manifests(settings()).split("---")[-1])
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, "1.37.0", strict=True)


def containers(docs):
    return {
        (d["metadata"]["name"], c["name"]): c
        for d in docs
        if d["kind"] in ("Deployment", "DaemonSet")
        for c in d["spec"]["template"]["spec"]["containers"]
    }


def test_upstream_images_leave_the_pull_policy_to_kubernetes():
    s = settings()
    for text in (cluster_render.occm_manifests(s), cluster_render.cinder_csi_manifests(s)):
        assert "imagePullPolicy" not in text


def test_a_loaded_image_is_used_if_present_and_only_where_it_is_set():
    """cluster.images: the nodes cannot pull a local build, so its containers say IfNotPresent (a
    tag of :latest, or none, would default to Always); upstream's images stay as they were."""
    s = settings(images={"occm": "occm:dev", "cinder_csi": "localhost/cinder-csi-plugin:latest"})
    occm = [d for d in yaml.safe_load_all(cluster_render.occm_manifests(s)) if d]
    cinder = [d for d in yaml.safe_load_all(cluster_render.cinder_csi_manifests(s)) if d]
    for doc in occm + cinder:
        kubernetes_validate.validate(doc, s.versions.kubernetes, strict=True)
    c = containers(occm)[("openstack-cloud-controller-manager", "openstack-cloud-controller-manager")]
    assert (c["image"], c["imagePullPolicy"]) == ("occm:dev", "IfNotPresent")
    plugins = {k: v for k, v in containers(cinder).items() if k[1] == "cinder-csi-plugin"}
    assert len(plugins) == 2  # the controller's and the node plugin's
    loaded = {(c["image"], c["imagePullPolicy"]) for c in plugins.values()}
    assert loaded == {("localhost/cinder-csi-plugin:latest", "IfNotPresent")}
    sidecars = [c for k, c in containers(cinder).items() if k[1] != "cinder-csi-plugin"]
    assert sidecars and all(
        "imagePullPolicy" not in c and c["image"].startswith("registry.k8s.io/sig-storage/") for c in sidecars
    )
