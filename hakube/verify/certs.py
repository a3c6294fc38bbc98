"""`hakube certs`: every certificate hakube made, on every host, with its expiry and issuer,
and whether the host's copy is the one in the state directory.

Read-only: nothing is issued, reissued or written (the state directory's PKI is loaded as
it is). A host's copy is compared by sha256, read with the same fact as the deploy uses.

Example:
    >>> rows = asyncio.run(gather_certs(load("cluster.yaml")))   # doctest: +SKIP
    >>> min(r.days_left for r in rows)                           # doctest: +SKIP
    364
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from dataclasses import asdict, dataclass

from cryptography import x509

from .. import state
from ..errors import HakubeError
from ..facts.host import file_states
from ..pki import ClusterPKI, ExistingEtcd
from ..spec import Loaded
from ..topology import derive
from ..transport import SSHConnector
from ..transport.targets import ssh_targets


@dataclass
class CertRow:
    host: str
    path: str
    subject: str
    issuer: str
    not_after: str   # ISO 8601, UTC
    days_left: int
    on_host: str     # matches, differs, missing, unreachable

    def as_dict(self) -> dict:
        return asdict(self)


def _cn(name: x509.Name) -> str:
    cns = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else name.rfc4514_string()


def local_rows(pki: ClusterPKI, host, now: dt.datetime) -> list[tuple[CertRow, str]]:
    """(row, sha256 of the expected file) for each certificate `host` should have."""
    out = []
    for f in pki.files_for(host):
        if not f.path.endswith((".crt", ".pem")) or b"BEGIN CERTIFICATE" not in f.content:
            continue
        cert = x509.load_pem_x509_certificate(f.content)
        end = cert.not_valid_after_utc
        out.append((CertRow(host.name, f.path, _cn(cert.subject), _cn(cert.issuer), end.isoformat(),
                            (end - now).days, "unknown"), hashlib.sha256(f.content).hexdigest()))
    return out


async def gather_certs(loaded: Loaded) -> list[CertRow]:
    topo = derive(loaded.cluster)
    sdir = state.cluster_dir(topo.name, create=False)
    try:
        pki = ClusterPKI.load_existing(sdir, topo, ExistingEtcd.read(loaded))
    except FileNotFoundError:
        raise HakubeError(f"cluster {topo.name} has no certificates in {sdir} yet; run `hakube up` first") from None
    now = dt.datetime.now(dt.timezone.utc)
    targets = {t.name: t for t in ssh_targets(loaded)}

    async def one(h) -> list[CertRow]:
        try:
            expected = local_rows(pki, h, now)
        except FileNotFoundError as e:  # a host added to the spec whose certificates are not issued yet
            return [CertRow(h.name, str(e.filename or "?"), "-", "-", "-", 0, "not issued yet: run hakube up")]
        try:
            conn = await asyncio.wait_for(SSHConnector.open(targets[h.name], None), 10)
        except Exception:
            for row, _ in expected:
                row.on_host = "unreachable"
            return [row for row, _ in expected]
        try:
            have = await file_states(conn, [row.path for row, _ in expected])
        finally:
            await conn.close()
        for row, digest in expected:
            got = have.get(row.path)
            row.on_host = "missing" if got is None else "matches" if got.sha256 == digest else "differs"
        return [row for row, _ in expected]

    rows = await asyncio.gather(*(one(h) for h in topo.hosts))
    return [r for rs in rows for r in rs]
