"""HTTPS clients that verify the cluster's certificates, from the local state directory."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx


def tls_context(pki: Path, ca: str, cert: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / f"{ca}.crt"))
    ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    return ctx


def api_client(state_dir: Path, timeout: float = 3.0, keepalive: bool = True) -> httpx.AsyncClient:
    """The Kubernetes API as admin; TLS verified against the cluster CA."""
    limits = httpx.Limits() if keepalive else httpx.Limits(max_keepalive_connections=0)
    return httpx.AsyncClient(verify=tls_context(state_dir / "pki", "ca", "admin"), timeout=timeout, limits=limits)


def etcd_client(state_dir: Path, timeout: float = 3.0) -> httpx.AsyncClient:
    """etcd's JSON gateway with the health-check client certificate; TLS verified."""
    return httpx.AsyncClient(verify=tls_context(state_dir / "pki", "etcd-ca", "etcd-healthcheck-client"),
                             timeout=timeout)


def external_etcd_client(loaded, timeout: float = 3.0) -> httpx.AsyncClient:
    """An existing etcd (spec.datastore type external) with the CA, certificate and key
    the spec gives for it; TLS verified against that CA."""
    d = loaded.cluster.spec.datastore
    ctx = ssl.create_default_context(cafile=str(loaded.resolve(d.ca_file)))
    ctx.load_cert_chain(str(loaded.resolve(d.cert_file)), str(loaded.resolve(d.key_file)))
    return httpx.AsyncClient(verify=ctx, timeout=timeout)


def admin_client(state_dir: Path, timeout: float = 5.0) -> httpx.Client:
    """A blocking HTTPS client with the cluster CA (verification ON) and the admin certificate."""
    return httpx.Client(verify=tls_context(state_dir / "pki", "ca", "admin"), timeout=timeout)
