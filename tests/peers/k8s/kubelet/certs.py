"""The kubelet's client certificate: cmd/kubelet/app/server.go buildKubeletClientConfig
(rotateCertificates: true, as kubeadm configures it), pkg/kubelet/certificate/bootstrap/bootstrap.go
LoadClientConfig and writeKubeconfigFromBootstrapping, client-go util/certificate/
certificate_manager.go (getCurrentCertificateOrBootstrap, rotateCerts), certificate_store.go
(kubelet-client-<time>.pem + the kubelet-client-current.pem symlink, 0600), util/certificate/csr/
csr.go: ECDSA P-256 key, CN system:node:<name>, O system:nodes, signer
kubernetes.io/kube-apiserver-client-kubelet, usages digital signature + client auth."""

from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path

from tests.peers.k8s.apiclient import Client, Kubeconfig
from tests.peers.k8s.kubelet.flags import log

SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"


def _x509():
    from cryptography import x509

    return x509


def cert_valid(pem: bytes | None) -> bool:
    """Parses as certificates, none of them expired (bootstrap.go isClientConfigStillValid)."""
    if not pem:
        return False
    from datetime import datetime, timezone

    try:
        certs = _x509().load_pem_x509_certificates(pem)
    except ValueError:
        return False
    now = datetime.now(timezone.utc)
    return bool(certs) and all(c.not_valid_after_utc > now for c in certs)


def kubeconfig_valid(path: str) -> bool:
    if not path or not os.path.exists(path):
        return False
    try:
        kc = Kubeconfig.load(path)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return cert_valid(kc.client_cert_pem()) and kc.client_key_pem() is not None


class CertStore:
    """client-go util/certificate/certificate_store.go, pair file prefix "kubelet-client"."""

    def __init__(self, cert_dir: str, prefix: str = "kubelet-client"):
        self.dir, self.prefix = Path(cert_dir), prefix

    @property
    def current_path(self) -> Path:
        return self.dir / f"{self.prefix}-current.pem"

    def current(self) -> bytes | None:
        """The current pair (PEM: certificates then key) when it is valid."""
        try:
            data = self.current_path.read_bytes()
        except OSError:
            return None
        return data if cert_valid(data) and b"PRIVATE KEY" in data else None

    def update(self, cert_pem: bytes, key_pem: bytes) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        path = self.dir / f"{self.prefix}-{time.strftime('%Y-%m-%d-%H-%M-%S')}.pem"
        fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert_pem.rstrip(b"\n") + b"\n" + key_pem.rstrip(b"\n") + b"\n")
        tmp = self.dir / f".{self.prefix}-current.pem.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(path, tmp)
        os.replace(tmp, self.current_path)
        return path


def write_kubeconfig_from_bootstrapping(bootstrap: Kubeconfig, path: str, pem_path: str, ca_file: str | None) -> None:
    """bootstrap.go writeKubeconfigFromBootstrapping: the bootstrap server and CA, the store's pair."""
    import yaml

    cluster = {"server": bootstrap.server}
    if ca_file:
        cluster["certificate-authority"] = ca_file
    else:
        cluster["certificate-authority-data"] = base64.b64encode(bootstrap.ca_pem or b"").decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default-cluster", "cluster": cluster}],
        "contexts": [
            {
                "name": "default-context",
                "context": {"cluster": "default-cluster", "namespace": "default", "user": "default-auth"},
            }
        ],
        "current-context": "default-context",
        "users": [{"name": "default-auth", "user": {"client-certificate": pem_path, "client-key": pem_path}}],
    }
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False))
    os.chmod(path, 0o600)


def new_key_and_csr(node: str) -> tuple[bytes, bytes]:
    """ECDSA P-256 key (SEC1 PEM, as keyutil writes it) and a CSR for the node's client identity."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    x509 = _x509()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def request_client_certificate(
    client: Client, node: str, stopping: threading.Event, timeout: float = 900
) -> tuple[bytes, bytes]:
    """One CSR as certificate_manager.go rotateCerts makes it; waits until it is issued."""
    key_pem, csr_pem = new_key_and_csr(node)
    body = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "csr-"},
        "spec": {
            "request": base64.b64encode(csr_pem).decode(),
            "signerName": SIGNER,
            "usages": ["digital signature", "client auth"],
        },
    }
    created = client.request("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", body)
    name, uid = created["metadata"]["name"], created["metadata"]["uid"]
    log(f"certificate signing request {name} created for system:node:{node} (signer {SIGNER})")
    deadline = time.monotonic() + timeout
    while not stopping.is_set() and time.monotonic() < deadline:
        csr = client.request("GET", f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}")
        if csr["metadata"]["uid"] != uid:
            raise RuntimeError(f"csr {name} was replaced")
        for cond in csr.get("status", {}).get("conditions") or []:
            if cond["type"] in ("Denied", "Failed"):
                raise RuntimeError(f"csr {name} {cond['type']}: {cond.get('reason')}: {cond.get('message')}")
        if csr.get("status", {}).get("certificate"):
            approved = [c for c in csr["status"].get("conditions") or [] if c["type"] == "Approved"]
            log(f"csr {name} approved ({approved[0].get('reason') if approved else '?'}) and issued")
            return base64.b64decode(csr["status"]["certificate"]), key_pem
        stopping.wait(1)
    raise TimeoutError(f"csr {name} not issued in time")
