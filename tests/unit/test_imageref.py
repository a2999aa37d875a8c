"""core.imageref against distribution/reference v0.6.0's own tables (normalize_test.go:
TestValidateReferenceName, TestParseDockerRef), plus the add-on image each setting gives."""

import pytest

from osk8s_tasks.core import config, imageref

DIGEST = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"

# normalize_test.go TestValidateReferenceName
VALID = [
    "docker/docker",
    "library/debian",
    "debian",
    "localhost/library/debian",
    "localhost/debian",
    "LOCALDOMAIN/library/debian",
    "LOCALDOMAIN/debian",
    "docker.io/docker/docker",
    "docker.io/library/debian",
    "docker.io/debian",
    "index.docker.io/docker/docker",
    "index.docker.io/library/debian",
    "index.docker.io/debian",
    "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian",
    "127.0.0.1:5000/debian",
    "192.168.0.1",
    "192.168.0.1:80",
    "192.168.0.1:8/debian",
    "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker",
    "[fc00::1]:5000/docker/docker",
    "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "Docker/docker",
    "DOCKER/docker",
]
INVALID = [
    "https://github.com/docker/docker",
    "docker/Docker",
    "-docker",
    "-docker/docker",
    "-docker.io/docker/docker",
    "docker///docker",
    "docker.io/docker/Docker",
    "docker.io/docker///docker",
    "[fc00::1]",
    "[fc00::1]:5000",
    "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian",
    "[2001:db8:3:4::192.0.2.33]:5000/debian",
    "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    # ours: what would break the manifest it lands in, or is no name at all
    "",
    "occm:dev\n",
    "occm:dev command: [sh]",
    'occm:"dev"',
    "occm:dev@sha256:abc",
    f"occm@md5:{'a' * 32}",
    f"occm@sha256:{'A' * 64}",
    f"occm@sha256:{'a' * 63}",
]

# normalize_test.go TestParseDockerRef
DOCKER_REF = {
    "busybox": "docker.io/library/busybox:latest",
    "busybox:latest": "docker.io/library/busybox:latest",
    f"busybox@{DIGEST}": f"docker.io/library/busybox@{DIGEST}",
    "library/busybox": "docker.io/library/busybox:latest",
    "docker.io/busybox": "docker.io/library/busybox:latest",
    "docker.io/library/busybox": "docker.io/library/busybox:latest",
    "docker.io/busybox:latest": "docker.io/library/busybox:latest",
    "library/busybox:latest": "docker.io/library/busybox:latest",
    "docker.io/library/busybox:latest": "docker.io/library/busybox:latest",
    "gcr.io/library/busybox": "gcr.io/library/busybox:latest",
    f"gcr.io/library/busybox:latest@{DIGEST}": f"gcr.io/library/busybox@{DIGEST}",
    # ours: the names a cloud-provider-openstack build gets
    "occm:dev": "docker.io/library/occm:dev",
    "index.docker.io/me/occm:dev": "docker.io/me/occm:dev",
    "localhost/openstack-cloud-controller-manager:v1.36.0-dev": "localhost/openstack-cloud-controller-manager:v1.36.0-dev",
    "registry.k8s.io/provider-os/openstack-cloud-controller-manager:v1.36.0": (
        "registry.k8s.io/provider-os/openstack-cloud-controller-manager:v1.36.0"
    ),
}


@pytest.mark.parametrize("ref", VALID)
def test_upstream_valid_names(ref):
    assert imageref.normalize(ref)


@pytest.mark.parametrize("ref", INVALID)
def test_upstream_invalid_names(ref):
    with pytest.raises(imageref.RefError):
        imageref.normalize(ref)


@pytest.mark.parametrize("ref, full", DOCKER_REF.items())
def test_normalized_as_containerd_stores_it(ref, full):
    assert imageref.normalize(ref) == full
    imageref.parse(full)  # the normalized name is a canonical reference itself


@pytest.mark.parametrize(
    "ref, message",
    [
        ("docker/Docker", "invalid reference format: repository name (docker/Docker) must be lowercase"),
        ("a" * 64, "cannot specify 64-byte hexadecimal strings"),
        ("", "invalid reference format"),
        (f"occm@md5:{'a' * 32}", "unsupported digest algorithm"),
        (f"occm@sha256:{'a' * 63}", "invalid checksum digest length"),
        (f"occm@sha256:{'A' * 64}", "invalid checksum digest format"),
    ],
)
def test_upstream_messages(ref, message):
    with pytest.raises(imageref.RefError, match=message.replace("(", r"\(").replace(")", r"\)")):
        imageref.normalize(ref)


def settings(**images):
    return config.validate({"cluster": {"images": images}})


@pytest.mark.parametrize(
    "images, component, want",
    [
        ({}, "occm", ("registry.k8s.io/provider-os/openstack-cloud-controller-manager:v1.36.0", None)),
        ({}, "keystone_auth", ("registry.k8s.io/provider-os/k8s-keystone-auth:v1.36.0", None)),
        ({"occm": "occm:dev"}, "occm", ("occm:dev", "IfNotPresent")),
        ({"occm": "occm:dev"}, "cinder_csi", ("registry.k8s.io/provider-os/cinder-csi-plugin:v1.36.0", None)),
        # upstream's image named explicitly is still upstream's: the nodes pull it
        (
            {"cinder_csi": "registry.k8s.io/provider-os/cinder-csi-plugin:v1.36.0"},
            "cinder_csi",
            ("registry.k8s.io/provider-os/cinder-csi-plugin:v1.36.0", None),
        ),
        (
            {"octavia_ingress": "localhost/octavia-ingress-controller"},
            "octavia_ingress",
            ("localhost/octavia-ingress-controller", "IfNotPresent"),
        ),
    ],
)
def test_component_image_and_pull_policy(images, component, want):
    assert imageref.component_image(settings(**images), component) == want
