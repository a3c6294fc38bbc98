"""The cluster PKI: real certificates, verified by openssl, reused on re-runs."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from hakube import paths
from hakube.pki import ClusterPKI
from hakube.verify.certs import local_rows
from hakube.verify.status import _first_expiry

from .conftest import topology


@pytest.fixture
def pki(tmp_path: Path) -> ClusterPKI:
    return ClusterPKI.load_or_create(tmp_path, topology("ha3"))


def openssl_verify(ca: Path, cert: Path, purpose: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "verify", "-purpose", purpose, "-CAfile", str(ca), str(cert)],
                          capture_output=True, text=True)


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
def test_certificates_verify_against_their_ca(pki: ClusterPKI) -> None:
    r = pki.root
    assert openssl_verify(r / "ca.crt", r / "hosts/server-1/apiserver.crt", "sslserver").returncode == 0
    assert openssl_verify(r / "ca.crt", r / "admin.crt", "sslclient").returncode == 0
    assert openssl_verify(r / "etcd-ca.crt", r / "hosts/server-2/etcd-peer.crt", "sslserver").returncode == 0
    assert openssl_verify(r / "etcd-ca.crt", r / "hosts/server-2/etcd-peer.crt", "sslclient").returncode == 0
    # a client certificate cannot serve, and the clusters' CAs do not vouch for each other
    assert openssl_verify(r / "ca.crt", r / "admin.crt", "sslserver").returncode != 0
    assert openssl_verify(r / "etcd-ca.crt", r / "admin.crt", "sslclient").returncode != 0


def test_apiserver_certificate_carries_every_san_of_the_plan_but_the_other_servers(pki: ClusterPKI) -> None:
    """Its own name and address, the VIP, DNS name, service names: not the other servers'
    (adding or removing a server then reissues no other server's certificate)."""
    t = topology("ha3")
    cert = pki.get("hosts/server-3/apiserver").cert
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
    assert names == set(t.sans) - {"server-1", "server-2", t.address("server-1"), t.address("server-2")}
    assert {"server-3", t.address("server-3"), t.endpoint_host, "api.demo.lan", "kubernetes.default"} <= names
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_identity_of_node_and_admin_certificates(pki: ClusterPKI) -> None:
    subject = pki.get("hosts/agent-1/kubelet-client").cert.subject.rfc4514_string()
    assert subject == "CN=system:node:agent-1,O=system:nodes"
    assert "O=system:masters" in pki.get("admin").cert.subject.rfc4514_string()


def test_state_is_private_and_reused(tmp_path: Path, pki: ClusterPKI) -> None:
    assert pki.root.stat().st_mode & 0o777 == 0o700
    for key in pki.root.rglob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600, key
    before = {p: p.read_bytes() for p in pki.root.rglob("*") if p.is_file()}
    again = ClusterPKI.load_or_create(tmp_path, topology("ha3"))
    assert again.changes == []
    assert {p: p.read_bytes() for p in pki.root.rglob("*") if p.is_file()} == before


def test_a_san_change_reissues_and_says_so(tmp_path: Path, pki: ClusterPKI) -> None:
    # the same state directory, a plan with a fourth server: the apiserver certs must change
    t = topology("ha3")
    from dataclasses import replace
    t2 = replace(t, sans=t.sans + ("192.168.56.14",))
    again = ClusterPKI.load_or_create(tmp_path, t2)
    assert any("reissued hosts/server-1/apiserver: SANs changed, added 192.168.56.14" == c for c in again.changes)
    assert not any("ca" == c.split()[-1] for c in again.changes), "authorities are never replaced"


def test_hosts_get_only_what_they_need(pki: ClusterPKI) -> None:
    t = topology("ha3")
    server = {f.path: f for f in pki.files_for(t.host("server-1"))}
    agent = {f.path: f for f in pki.files_for(t.host("agent-1"))}
    assert paths.CA_KEY in server and paths.CA_KEY not in agent
    assert paths.ETCD_PEER_KEY not in agent and paths.SA_KEY not in agent
    assert server[paths.ETCD_SERVER_KEY].owner == "etcd" and server[paths.ETCD_SERVER_KEY].mode == 0o600
    assert all(f.mode == 0o600 for f in server.values() if f.path.endswith((".key", ".pem")))


def test_certs_lists_what_each_host_should_have_without_creating_anything(tmp_path) -> None:
    """`hakube certs` reads the state directory as it is: every certificate a host gets, its
    issuer and expiry; loading it creates and reissues nothing."""
    topo = topology("ha3")
    ClusterPKI.load_or_create(tmp_path, topo)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    pki = ClusterPKI.load_existing(tmp_path, topo)
    rows = {r.path: r for r, _ in local_rows(pki, topo.host("server-1"), dt.datetime.now(dt.timezone.utc))}
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    api = rows["/etc/kubernetes/pki/apiserver.crt"]
    assert api.subject == "kube-apiserver" and api.issuer.endswith("-ca") and 800 < api.days_left <= 825
    assert "/etc/kubernetes/pki/apiserver.key" not in rows  # keys are not certificates
    assert all(r.days_left > 300 for r in rows.values())


def test_status_names_the_certificate_that_expires_first(pki: ClusterPKI) -> None:
    name, days = _first_expiry(pki.root)
    assert name.endswith(".crt") and not name.startswith(("ca.", "etcd-ca.", "front-proxy-ca."))
    assert 800 < days <= 825  # leaves expire long before the CAs (3650 days)
    assert _first_expiry(pki.root / "missing") == ("", None)


def test_leaf_certificates_within_the_window_are_renewed_and_said_so_the_cas_stay(tmp_path: Path, pki: ClusterPKI,
                                                                              monkeypatch) -> None:
    import hakube.pki as pki_module
    t = topology("ha3")
    cas = {n: (tmp_path / "pki" / f"{n}.crt").read_bytes() for n in ("ca", "etcd-ca", "front-proxy-ca")}
    old = (tmp_path / "pki" / "admin.crt").read_bytes()
    # 800 days on: every leaf certificate (825 days) is 25 days from its expiry
    later = pki_module._now() + dt.timedelta(days=800)
    monkeypatch.setattr(pki_module, "_now", lambda: later)
    # a dry run renews in memory only: the state directory keeps what the hosts have
    dry = ClusterPKI.load_or_create(tmp_path, t, dry_run=True)
    assert (tmp_path / "pki" / "admin.crt").read_bytes() == old
    shown = {f.path: f for f in dry.files_for(t.host("server-1"))}[paths.ADMIN_CRT].content
    assert shown != old
    again = ClusterPKI.load_or_create(tmp_path, t)
    renewed = [c for c in again.changes if c.startswith("renewed ")]
    assert "renewed admin: it expires in 24 days" in renewed[0] or "renewed admin: it expires in 25 days" in renewed[0]
    assert all("within spec.certificates.renewBeforeDays (90)" in c for c in renewed)
    assert any(c.startswith("renewed hosts/server-2/etcd-peer") for c in renewed)
    assert {n: (tmp_path / "pki" / f"{n}.crt").read_bytes() for n in cas} == cas, "authorities are never renewed"
    cert = x509.load_pem_x509_certificate((tmp_path / "pki" / "admin.crt").read_bytes())
    assert (cert.not_valid_after_utc - later).days >= 824
    assert ClusterPKI.load_or_create(tmp_path, t).changes == []  # renewed once, then left alone


def test_renewal_on_a_command_window_and_the_expiry_metrics_each_host_gets(tmp_path: Path, pki: ClusterPKI) -> None:
    from hakube.pki import CERT_DAYS, EXPIRY_TEXTFILE, Renewal
    t = topology("ha3")
    asked = ClusterPKI.load_or_create(tmp_path, t, renew=Renewal(CERT_DAYS + 1, asked="hakube certs --renew"))
    assert asked.changes and all(c.startswith("renewed ") and "asked for by hakube certs --renew" in c
                                 for c in asked.changes)
    assert ClusterPKI.load_or_create(tmp_path, t, renew=Renewal(30, asked="x")).changes == []
    files = {f.path: f for f in asked.files_for(t.host("server-1"))}
    assert t.host("server-1").runs("node-exporter")  # ha3 has monitoring on
    text = files[EXPIRY_TEXTFILE].content.decode()
    cert = x509.load_pem_x509_certificate(files[paths.APISERVER_CRT].content)
    assert f'{{path="{paths.APISERVER_CRT}"}} {int(cert.not_valid_after_utc.timestamp())}' in text
    assert ".key" not in text and files[EXPIRY_TEXTFILE].mode == 0o644
