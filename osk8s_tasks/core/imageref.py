"""Container image references as containerd names them, and the image of each add-on.

:func:`normalize` is what containerd does to a name before it stores an image (``docker save``'s
RepoTags in ``core/images/archive/reference.go normalizeReference``) and what the kubelet's CRI
does to a Pod's ``image:``: ``occm:dev`` is ``docker.io/library/occm:dev``. It is a port of
github.com/distribution/reference v0.6.0 (the version containerd v2.4.2 pins): ``regexp.go`` (the
grammar), ``reference.go`` ``Parse``, ``normalize.go`` ``ParseNormalizedNamed``, ``ParseDockerRef``
and ``splitDockerDomain``; the digest check is github.com/opencontainers/go-digest v1.0.0
``Digest.Validate``. The error messages are upstream's.
"""

from __future__ import annotations

import re

# distribution/reference regexp.go, piece by piece (Go's `$` is the end of the text: \Z here)
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[(?:[a-fA-F0-9:]+)\])"
_DOMAIN_AND_PORT = _HOST + r"(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}"
REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?\Z", re.ASCII)
ANCHORED_NAME_RE = re.compile(rf"^(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})\Z", re.ASCII)
ANCHORED_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}\Z")
DIGEST_RE = re.compile(rf"^{_DIGEST}\Z", re.ASCII)
DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}  # go-digest's algorithms: lower-case hex only
NAME_MAX = 255  # RepositoryNameTotalLengthMax

DEFAULT_DOMAIN, LEGACY_DOMAIN, OFFICIAL_PREFIX = "docker.io", "index.docker.io", "library/"

# cloud-provider-openstack's images (its manifests/ and Makefile), tagged versions.cloud_provider_openstack
COMPONENTS = {
    "occm": "registry.k8s.io/provider-os/openstack-cloud-controller-manager",
    "cinder_csi": "registry.k8s.io/provider-os/cinder-csi-plugin",
    "octavia_ingress": "registry.k8s.io/provider-os/octavia-ingress-controller",
    "keystone_auth": "registry.k8s.io/provider-os/k8s-keystone-auth",
}


class RefError(ValueError):
    """Not a reference containerd would accept; the message is upstream's."""


def _check_digest(value: str) -> None:
    algorithm, sep, encoded = value.partition(":")
    if not algorithm or not sep or not encoded:
        raise RefError("invalid checksum digest format")
    if algorithm not in DIGEST_HEX:
        raise RefError("unsupported digest algorithm" if DIGEST_RE.match(value) else "invalid checksum digest format")
    if len(encoded) != DIGEST_HEX[algorithm]:
        raise RefError("invalid checksum digest length")
    if not re.fullmatch(r"[a-f0-9]+", encoded):
        raise RefError("invalid checksum digest format")


def parse(ref: str) -> tuple[str, str, str, str]:
    """(domain, path, tag, digest) of a reference in canonical form (reference.go Parse)."""
    m = REFERENCE_RE.match(ref)
    if not m:
        if ref == "":
            raise RefError("repository name must have at least one component")
        if REFERENCE_RE.match(ref.lower()):
            raise RefError("repository name must be lowercase")
        raise RefError("invalid reference format")
    name = ANCHORED_NAME_RE.match(m[1])
    domain, path = (name[1] or "", name[2]) if name else ("", m[1])
    if len(path) > NAME_MAX:
        raise RefError(f"repository name must not be more than {NAME_MAX} characters")
    if m[3]:
        _check_digest(m[3])
    return domain, path, m[2] or "", m[3] or ""


def split_docker_domain(name: str) -> tuple[str, str]:
    """normalize.go splitDockerDomain: a familiar name's registry and path."""
    first, sep, rest = name.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_PREFIX + name
    if first == LEGACY_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, rest
    elif first == "localhost" or "." in first or ":" in first or first.lower() != first:
        domain, remote = first, rest
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_PREFIX + remote
    return domain, remote


def normalize(ref: str) -> str:
    """ParseDockerRef: the full name containerd stores and the CRI looks up ('occm:dev' ->
    'docker.io/library/occm:dev', 'x/y' -> 'docker.io/x/y:latest'; tag and digest -> digest only).
    Raises RefError with upstream's message."""
    if ANCHORED_IDENTIFIER_RE.match(ref):
        raise RefError(f"invalid repository name ({ref}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = split_docker_domain(ref)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise RefError(f"invalid reference format: repository name ({remote}) must be lowercase")
    domain, path, tag, digest = parse(f"{domain}/{remainder}")
    name = f"{domain}/{path}" if domain else path
    if digest:
        return f"{name}@{digest}"
    return f"{name}:{tag or 'latest'}"


def upstream(component: str, cpo_version: str) -> str:
    """The image cloud-provider-openstack publishes for this component at this version."""
    return f"{COMPONENTS[component]}:{cpo_version}"


def component_image(settings, component: str) -> tuple[str, str | None]:
    """(image, imagePullPolicy) of an add-on: cluster.images.<component>, else upstream's image at
    versions.cloud_provider_openstack. An image other than upstream's is a local build loaded onto
    the nodes (cluster.load-images), which no registry serves: IfNotPresent, so the kubelet uses the
    loaded one (a tag of :latest, or none, would default to Always)."""
    default = upstream(component, settings.versions.cloud_provider_openstack)
    chosen = getattr(settings.cluster.images, component) or default
    return chosen, (None if normalize(chosen) == normalize(default) else "IfNotPresent")
