"""Certificates and keys for the dev cluster: one CA, serving and client certs, SA keys.

TLS and RBAC are on in the dev cluster as on a real one, so what passes here
is what passes there: components and people authenticate with client certs
whose subject carries their identity (CN = user, O = groups).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=3650)

# Who signs in with which certificate: (file stem, CN, O).
CLIENTS = {
    "admin": ("kinflow-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", None),
    "kube-scheduler": ("system:kube-scheduler", None),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
}


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


class Pki:
    """The dev cluster's PKI in one folder; created once, then reused."""

    def __init__(self, folder: Path):
        self.dir = folder

    def path(self, name: str) -> Path:
        return self.dir / name

    @property
    def ca_cert(self) -> Path:
        return self.path("ca.crt")

    def ensure(self, node_names: list[str] = ()) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.ca_cert.exists():
            self._make_ca()
        ca_key = serialization.load_pem_private_key(self.path("ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        if not self.path("apiserver.crt").exists():
            self._issue(
                ca_cert, ca_key, "apiserver", _name("kube-apiserver"), server=True,
                dns=["localhost", "kubernetes", "kubernetes.default",
                     "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"],
                ips=["127.0.0.1", "10.0.0.1"],
            )
        for stem, (cn, org) in CLIENTS.items():
            if not self.path(f"{stem}.crt").exists():
                self._issue(ca_cert, ca_key, stem, _name(cn, org))
        for node in node_names:
            self.node_cert(node)
        if not self.path("sa.key").exists():
            sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _write(self.path("sa.key"), sa.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption()), private=True)
            _write(self.path("sa.pub"), sa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def node_cert(self, node: str) -> tuple[Path, Path]:
        """A kubelet client cert (system:node:<name> in system:nodes) for the Node authorizer."""
        stem = f"node-{node}"
        if not self.path(f"{stem}.crt").exists():
            ca_key = serialization.load_pem_private_key(self.path("ca.key").read_bytes(), None)
            ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
            self._issue(ca_cert, ca_key, stem, _name(f"system:node:{node}", "system:nodes"))
        return self.path(f"{stem}.crt"), self.path(f"{stem}.key")

    def _make_ca(self) -> None:
        key = _key()
        now = dt.datetime.now(dt.timezone.utc)
        name = _name("kinflow-dev-ca")
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        _write(self.path("ca.key"), _pem_key(key), private=True)
        _write(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM))

    def _issue(self, ca_cert, ca_key, stem: str, subject: x509.Name, server: bool = False,
               dns: list[str] = (), ips: list[str] = ()) -> None:
        key = _key()
        now = dt.datetime.now(dt.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
        )
        if dns or ips:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(d) for d in dns]
                + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write(self.path(f"{stem}.key"), _pem_key(key), private=True)
        _write(self.path(f"{stem}.crt"), cert.public_bytes(serialization.Encoding.PEM))
