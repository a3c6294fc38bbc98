"""Certificate authorities and certificates, made with `cryptography`.

Keys are ECDSA P-256: fast to generate (a cold deploy makes dozens) and accepted by etcd,
Kubernetes, HAProxy and curl alike. Certificates carry exactly the usages they need
(server, client, or both for etcd peers), so a leaked client certificate cannot serve.

Example:
    >>> ca = CA.create("hakube-demo-ca")
    >>> cert = ca.issue("kube-apiserver", sans=["10.0.0.100", "kubernetes"], server=True)
    >>> cert.cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    True
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
CERT_DAYS = 825


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(entry: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(entry))
    except ValueError:
        return x509.DNSName(entry)


@dataclass(frozen=True)
class Cert:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def pem_bundle(self) -> bytes:
        """Certificate followed by key: the single-file form HAProxy reads."""
        return self.cert_pem + self.key_pem

    def save(self, crt: Path, key: Path) -> None:
        _write(crt, self.cert_pem, 0o644)
        _write(key, self.key_pem, 0o600)

    @classmethod
    def load(cls, crt: Path, key: Path) -> "Cert":
        return cls(crt.read_bytes(), key.read_bytes())


@dataclass(frozen=True)
class CA(Cert):
    """A certificate authority that can issue certificates."""

    @classmethod
    def create(cls, cn: str, days: int = CA_DAYS) -> "CA":
        key = _key()
        name = _name(cn)
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    @classmethod
    def load(cls, crt: Path, key: Path) -> "CA":
        return cls(crt.read_bytes(), key.read_bytes())

    def issue(self, cn: str, orgs: tuple[str, ...] | list[str] = (), sans: list[str] | tuple[str, ...] = (),
              server: bool = False, client: bool = False, days: int = CERT_DAYS) -> Cert:
        """Issue a certificate for `cn`, signed by this CA."""
        if not (server or client):
            raise ValueError("a certificate must be for a server, a client, or both")
        ca_key = serialization.load_pem_private_key(self.key_pem, password=None)
        ca_cert = self.cert
        key = _key()
        now = _now()
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        b = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, tuple(orgs))).issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName([_san(s) for s in dict.fromkeys(sans)]),
                                critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        return Cert(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with `mode` from the first byte (no window with looser rights)."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    tmp.replace(path)
