"""A lab CA and serving certificates for the cluster's webhooks (k8s-keystone-auth): generated
here, kept in the lab directory (keys 0600), and pinned by the apiserver's webhook kubeconfig, so
nothing needs `insecure-skip-tls-verify` (which the 2018 write-up used)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from osk8s_tasks.core.files import write_private

RENEW_BEFORE = datetime.timedelta(days=30)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _write(path: Path, data: bytes) -> None:
    write_private(path, data.decode())


def ensure_ca(directory: Path, lab: str) -> tuple[Path, Path]:
    """ca.crt / ca.key in `directory`, created once (10 years)."""
    crt, key_path = directory / "ca.crt", directory / "ca.key"
    if crt.exists() and key_path.exists():
        return crt, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"osk8s {lab} webhook CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write(
        key_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    _write(crt, cert.public_bytes(serialization.Encoding.PEM))
    return crt, key_path


def _sans(names: list[str]):
    out = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def serving_cert_problem(crt: Path, key: Path, ca: Path, names: list[str]) -> str:
    """'' when crt is signed by ca, valid for 30 more days and names exactly `names`; else why not."""
    if not (crt.exists() and key.exists()):
        return f"{crt.name} does not exist"
    cert, ca_cert = x509.load_pem_x509_certificate(crt.read_bytes()), x509.load_pem_x509_certificate(ca.read_bytes())
    if cert.issuer != ca_cert.subject:
        return f"{crt.name} is not signed by the lab CA"
    if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return f"{crt.name} expires {cert.not_valid_after_utc:%Y-%m-%d}"
    have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    if set(map(str, have)) != set(map(str, _sans(names))):
        return f"{crt.name} names {sorted(str(getattr(x, 'value', x)) for x in have)}, wanted {sorted(names)}"
    return ""


def issue_serving_cert(crt: Path, key_path: Path, ca: Path, ca_key: Path, names: list[str], days: int = 365) -> None:
    ca_cert = x509.load_pem_x509_certificate(ca.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_sans(names)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )
    _write(
        key_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    _write(crt, cert.public_bytes(serialization.Encoding.PEM))
