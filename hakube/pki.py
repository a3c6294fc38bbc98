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

import os

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
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    tmp.replace(path)


# ---- the cluster's PKI -----------------------------------------------------------------------

from . import paths  # noqa: E402  (kept below the primitives they build on)
from .topology import Topology  # noqa: E402


@dataclass(frozen=True)
class PKIFile:
    """A certificate or key as a host receives it."""

    path: str
    content: bytes
    mode: int
    owner: str = "root"
    group: str = "root"

    @property
    def secret(self) -> bool:
        return self.mode & 0o077 == 0


@dataclass(frozen=True)
class ExistingEtcd:
    """The CA, client certificate and key of an existing etcd (spec.datastore type external),
    read from the files the spec names; copied to every server (the key 0600), never made here."""

    ca: bytes
    cert: bytes
    key: bytes

    @classmethod
    def read(cls, loaded) -> "ExistingEtcd | None":
        d = loaded.cluster.spec.datastore
        if d.type != "external" or loaded.cluster.spec.distribution.name != "kubernetes":
            return None
        return cls(*(loaded.resolve(p).read_bytes() for p in (d.ca_file, d.cert_file, d.key_file)))


@dataclass(frozen=True)
class Renewal:
    """When an existing leaf certificate is renewed: `before_days` before its expiry
    (spec.certificates.renewBeforeDays), or, given `asked` (`hakube certs --renew`), on
    that command's window; `why` returns the sentence each renewal is reported with.

    Example:
        >>> now = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
        >>> Renewal(90).why(now + dt.timedelta(days=60), now)
        'it expires in 60 days (2027-03-02), within spec.certificates.renewBeforeDays (90)'
        >>> Renewal(90).why(now + dt.timedelta(days=600), now) is None
        True
        >>> Renewal(CERT_DAYS + 1, asked="hakube certs --renew").why(now + dt.timedelta(days=600), now)
        'asked for by hakube certs --renew (it would expire in 600 days, on 2028-08-23)'
    """

    before_days: int
    asked: str = ""  # the command that asked, when not the spec's window

    def why(self, not_after: dt.datetime, now: dt.datetime) -> str | None:
        left = not_after - now
        if left > dt.timedelta(days=self.before_days):
            return None
        days, date = left.days, f"{not_after:%Y-%m-%d}"
        if self.asked:
            return f"asked for by {self.asked} (it would expire in {days} days, on {date})"
        if left <= dt.timedelta(0):
            return f"it expired on {date}"
        return f"it expires in {days} days ({date}), within spec.certificates.renewBeforeDays ({self.before_days})"


class ClusterPKI:
    """Every authority and certificate of one cluster, under `<state>/pki` (0700).

    Created on first use and reused after: a certificate is reissued only when what it must
    say changed (its SANs, because a server was added) or when it is within
    `renew_before_days` of its expiry (spec.certificates.renewBeforeDays; `hakube certs
    --renew` gives its own window), and each such reissue is reported in `changes`, never
    done silently. The CAs are never renewed here. In a dry run a reissued certificate is
    held in memory only: the state directory keeps the one the hosts have.

    Example:
        >>> pki = ClusterPKI.load_or_create(state.cluster_dir("demo"), topo)
        >>> [f.path for f in pki.files_for(topo.host("server-1"))][:2]
        ['/etc/kubernetes/pki/ca.crt', '/etc/kubernetes/pki/ca.key']
    """

    def __init__(self, root: Path, topo: Topology, existing_etcd: "ExistingEtcd | None" = None,
                 renew: "Renewal | None" = None, dry_run: bool = False):
        self.root = root
        self.topo = topo
        self.existing_etcd = existing_etcd
        self.renew = renew or Renewal(topo.renew_before_days)
        self.dry_run = dry_run
        self.changes: list[str] = []
        self._pending: dict[str, Cert] = {}  # reissued in a dry run: not written

    @classmethod
    def load_or_create(cls, state_dir: Path, topo: Topology, existing_etcd: "ExistingEtcd | None" = None,
                       renew: "Renewal | None" = None, dry_run: bool = False) -> "ClusterPKI":
        pki = cls(state_dir / "pki", topo, existing_etcd, renew, dry_run)
        pki.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        pki.root.chmod(0o700)
        pki._ensure_all()
        return pki

    @classmethod
    def load_existing(cls, state_dir: Path, topo: Topology,
                      existing_etcd: "ExistingEtcd | None" = None) -> "ClusterPKI":
        """The PKI as it is in the state directory, creating and reissuing nothing (for
        `hakube certs`). Raises FileNotFoundError when the cluster has no CAs yet."""
        pki = cls(state_dir / "pki", topo, existing_etcd)
        pki.ca = CA.load(pki.root / "ca.crt", pki.root / "ca.key")
        pki.etcd_ca = CA.load(pki.root / "etcd-ca.crt", pki.root / "etcd-ca.key")
        pki.front_proxy_ca = CA.load(pki.root / "front-proxy-ca.crt", pki.root / "front-proxy-ca.key")
        return pki

    # -- storage -----------------------------------------------------------------------------

    def _ca(self, name: str, cn: str) -> CA:
        crt, key = self.root / f"{name}.crt", self.root / f"{name}.key"
        if crt.exists() and key.exists():
            return CA.load(crt, key)
        ca = CA.create(cn)
        ca.save(crt, key)
        self.changes.append(f"created certificate authority {name}")
        return ca

    def _cert(self, ca: CA, name: str, cn: str, orgs: tuple[str, ...] = (), sans: tuple[str, ...] = (),
              server: bool = False, client: bool = False) -> Cert:
        crt, key = self.root / f"{name}.crt", self.root / f"{name}.key"
        existed = crt.exists() and key.exists()
        if existed:
            cert = Cert.load(crt, key)
            have = _sans_of(cert.cert)
            if have == set(sans) and cert.cert.issuer == ca.cert.subject:
                why = self.renew.why(cert.cert.not_valid_after_utc, _now())
                if why is None:
                    return cert
                self.changes.append(f"renewed {name}: {why}")
            else:
                added, removed = sorted(set(sans) - have), sorted(have - set(sans))
                self.changes.append(f"reissued {name}: SANs changed"
                                    + (f", added {', '.join(added)}" if added else "")
                                    + (f", removed {', '.join(removed)}" if removed else ""))
        else:
            self.changes.append(f"issued {name}")
        cert = ca.issue(cn, orgs, sans, server=server, client=client)
        if existed and self.dry_run:
            self._pending[name] = cert
        else:
            cert.save(crt, key)
        return cert

    def get(self, name: str) -> Cert:
        if name in self._pending:
            return self._pending[name]
        return Cert.load(self.root / f"{name}.crt", self.root / f"{name}.key")

    # -- what the cluster needs --------------------------------------------------------------

    def _ensure_all(self) -> None:
        t = self.topo
        self.ca = self._ca("ca", f"hakube-{t.name}-ca")
        self.etcd_ca = self._ca("etcd-ca", f"hakube-{t.name}-etcd-ca")
        self.front_proxy_ca = self._ca("front-proxy-ca", f"hakube-{t.name}-front-proxy-ca")
        ca, etcd = self.ca, self.etcd_ca
        self._cert(ca, "admin", "hakube-admin", ("system:masters",), client=True)
        self._cert(ca, "lb-check", "hakube:lb-check", client=True)
        self._cert(ca, "monitoring", "hakube:monitoring", client=True)
        self._cert(ca, "controller-manager", "system:kube-controller-manager", client=True)
        self._cert(ca, "scheduler", "system:kube-scheduler", client=True)
        self._cert(ca, "kube-proxy", "system:kube-proxy", client=True)
        self._cert(ca, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",),
                   client=True)
        self._cert(self.front_proxy_ca, "front-proxy-client", "front-proxy-client", client=True)
        self._cert(etcd, "apiserver-etcd-client", "kube-apiserver-etcd-client", client=True)
        self._cert(etcd, "etcd-healthcheck-client", "kube-etcd-healthcheck-client", client=True)
        for s in t.etcd_hosts if t.distribution == "kubernetes" else ():
            a = t.address(s)
            # etcd serves on the host address and 127.0.0.1; peers are both server and client
            self._cert(etcd, f"hosts/{s}/etcd-server", s, sans=(s, "localhost", a, "127.0.0.1"),
                       server=True, client=True)
            self._cert(etcd, f"hosts/{s}/etcd-peer", s, sans=(s, a), server=True, client=True)
        for s in t.servers:
            self._cert(ca, f"hosts/{s}/apiserver", "kube-apiserver", sans=t.apiserver_sans(s), server=True)
        for h in t.hosts:
            if h.is_node:
                self._cert(ca, f"hosts/{h.name}/kubelet-client", f"system:node:{h.name}", ("system:nodes",),
                           client=True)
                self._cert(ca, f"hosts/{h.name}/kubelet", h.name, sans=(h.name, h.address), server=True)
        sa_key = self.root / "sa.key"
        if not sa_key.exists():
            key = _key()
            _write(sa_key, _key_pem(key), 0o600)
            _write(self.root / "sa.pub", key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
            self.changes.append("created the service-account key pair")

    def files_for(self, host) -> list[PKIFile]:
        """The certificates and keys `host` (a HostPlan) needs, with owner and mode."""
        out: dict[str, PKIFile] = {}

        def add(path: str, data: bytes, mode: int = 0o644, owner: str = "root") -> None:
            out[path] = PKIFile(path, data, mode, owner, owner)

        def pair(name: str, crt: str, key: str, owner: str = "root") -> None:
            c = self.get(name)
            add(crt, c.cert_pem, 0o644, owner)
            add(key, c.key_pem, 0o600, owner)

        if host.is_node or "haproxy" in host.components or "keepalived" in host.components \
                or "nginx" in host.components:
            add(paths.CA_CRT, self.ca.cert_pem)
        # lb-check: load balancers' and keepalived's health checks, and the deploy's own
        # /readyz gate on each server (whether or not a load balancer shares the host)
        if "haproxy" in host.components or "keepalived" in host.components or "kube-apiserver" in host.components:
            pair("lb-check", paths.LB_CHECK_CRT, paths.LB_CHECK_KEY)
            add(paths.LB_CHECK_PEM, self.get("lb-check").pem_bundle, 0o600)
        if "etcd" in host.components:
            add(paths.ETCD_CA_CRT, self.etcd_ca.cert_pem, 0o644, "etcd")
            pair(f"hosts/{host.name}/etcd-server", paths.ETCD_SERVER_CRT, paths.ETCD_SERVER_KEY, "etcd")
            pair(f"hosts/{host.name}/etcd-peer", paths.ETCD_PEER_CRT, paths.ETCD_PEER_KEY, "etcd")
            pair("etcd-healthcheck-client", paths.ETCD_HEALTH_CRT, paths.ETCD_HEALTH_KEY)
        if "kube-apiserver" in host.components:
            if self.existing_etcd is not None:  # the credentials the spec gives for an existing etcd
                add(paths.ETCD_CA_CRT, self.existing_etcd.ca)
                add(paths.APISERVER_ETCD_CLIENT_CRT, self.existing_etcd.cert)
                add(paths.APISERVER_ETCD_CLIENT_KEY, self.existing_etcd.key, 0o600)
            else:
                add(paths.ETCD_CA_CRT, self.etcd_ca.cert_pem, 0o644, "etcd" if "etcd" in host.components else "root")
                pair("apiserver-etcd-client", paths.APISERVER_ETCD_CLIENT_CRT, paths.APISERVER_ETCD_CLIENT_KEY)
            add(paths.CA_KEY, self.ca.key_pem, 0o600)  # the controller-manager signs CSRs with it
            pair(f"hosts/{host.name}/apiserver", paths.APISERVER_CRT, paths.APISERVER_KEY)
            pair("apiserver-kubelet-client", paths.APISERVER_KUBELET_CLIENT_CRT,
                 paths.APISERVER_KUBELET_CLIENT_KEY)
            add(paths.FRONT_PROXY_CA_CRT, self.front_proxy_ca.cert_pem)
            pair("front-proxy-client", paths.FRONT_PROXY_CLIENT_CRT, paths.FRONT_PROXY_CLIENT_KEY)
            add(paths.SA_KEY, (self.root / "sa.key").read_bytes(), 0o600)
            add(paths.SA_PUB, (self.root / "sa.pub").read_bytes())
            pair("controller-manager", paths.CONTROLLER_MANAGER_CRT, paths.CONTROLLER_MANAGER_KEY)
            pair("scheduler", paths.SCHEDULER_CRT, paths.SCHEDULER_KEY)
            pair("admin", paths.ADMIN_CRT, paths.ADMIN_KEY)
        if host.is_node and self.topo.distribution == "kubernetes":
            pair(f"hosts/{host.name}/kubelet-client", paths.KUBELET_CLIENT_CRT, paths.KUBELET_CLIENT_KEY)
            pair(f"hosts/{host.name}/kubelet", paths.KUBELET_SERVING_CRT, paths.KUBELET_SERVING_KEY)
            pair("kube-proxy", paths.KUBE_PROXY_CRT, paths.KUBE_PROXY_KEY)
        if "prometheus" in host.components:
            add(paths.MONITORING_CA_CRT, self.ca.cert_pem, 0o644, "prometheus")
            add(paths.MONITORING_ETCD_CA_CRT, self.etcd_ca.cert_pem, 0o644, "prometheus")
            pair("monitoring", paths.MONITORING_CLIENT_CRT, paths.MONITORING_CLIENT_KEY, "prometheus")
            pair("etcd-healthcheck-client", paths.MONITORING_ETCD_CLIENT_CRT, paths.MONITORING_ETCD_CLIENT_KEY,
                 "prometheus")
        if host.runs("node-exporter"):
            add(EXPIRY_TEXTFILE, expiry_metrics(out.values()))
        return [out[p] for p in sorted(out)]


# Every certificate on a host, by path, with its expiry, for node exporter's textfile
# collector (alert CertificateExpiresSoon): written with the certificates, so it changes
# exactly when they do.
EXPIRY_METRIC = "hakube_certificate_expiry_timestamp_seconds"
EXPIRY_TEXTFILE = f"{paths.TEXTFILE_DIR}/hakube_certificates.prom"


def expiry_metrics(files) -> bytes:
    """The textfile of `files`' certificates (key files and bundles are skipped).

    Example:
        >>> ca = CA.create("demo-ca")
        >>> text = expiry_metrics([PKIFile("/etc/kubernetes/pki/ca.crt", ca.cert_pem, 0o644, "root", "root")])
        >>> text.decode().splitlines()[2].startswith(
        ...     'hakube_certificate_expiry_timestamp_seconds{path="/etc/kubernetes/pki/ca.crt"} ')
        True
    """
    lines = [f"# HELP {EXPIRY_METRIC} When a certificate hakube put on this host expires (notAfter).",
             f"# TYPE {EXPIRY_METRIC} gauge"]
    for f in sorted(files, key=lambda f: f.path):
        if not f.path.endswith(".crt") or not f.content.startswith(b"-----BEGIN CERTIFICATE-----"):
            continue
        end = x509.load_pem_x509_certificate(f.content).not_valid_after_utc
        lines.append(f'{EXPIRY_METRIC}{{path="{f.path}"}} {int(end.timestamp())}')
    return ("\n".join(lines) + "\n").encode()


def _sans_of(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.IPAddress)} | set(ext.get_values_for_type(x509.DNSName))
