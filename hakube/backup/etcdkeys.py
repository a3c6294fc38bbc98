"""etcd's keyspace and snapshots, from this machine.

Keys are read through etcd's JSON gateway (`/v3/kv/range`, keys only, in pages) at a given
revision, so a live cluster and a restored snapshot are compared at the same point in
history. Snapshots are taken and inspected with this machine's etcdctl (Debian's
etcd-client), the tool etcd documents for them: `snapshot save` streams the member's
database and appends its sha256, which `snapshot restore` checks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..errors import HakubeError

PAGE = 2000
ZERO = base64.b64encode(b"\0").decode()


@dataclass(frozen=True)
class Tls:
    """The files etcdctl and the gateway client use to reach a TLS etcd."""
    ca: Path
    cert: Path
    key: Path

    def etcdctl_args(self) -> list[str]:
        return [f"--cacert={self.ca}", f"--cert={self.cert}", f"--key={self.key}"]


async def keys_at(client: httpx.AsyncClient, url: str, revision: int) -> list[str]:
    """Every key of the keyspace at `revision` (sorted), through the gateway at `url`."""
    keys: list[str] = []
    start = ZERO
    while True:
        try:
            r = await client.post(f"{url}/v3/kv/range", json={
                "key": start, "range_end": ZERO, "keys_only": True, "limit": PAGE, "revision": revision,
                "sort_order": "ASCEND", "sort_target": "KEY"})
        except httpx.HTTPError as e:
            raise HakubeError(f"etcd at {url} did not answer while listing its keys at revision {revision}: "
                              f"{type(e).__name__} {e}; is it up and reachable from this machine?") from None
        if r.status_code != 200:
            raise HakubeError(f"etcd at {url} did not list its keys at revision {revision}: "
                              f"HTTP {r.status_code} {_message(r)}")
        doc = r.json()
        page = [base64.b64decode(kv["key"]) for kv in doc.get("kvs", [])]
        keys.extend(k.decode("utf-8", "backslashreplace") for k in page)
        if not doc.get("more") or not page:
            return keys
        start = base64.b64encode(page[-1] + b"\0").decode()


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json().get("message") or r.json().get("error") or "")
    except ValueError:
        return r.text[:200]


def etcdctl() -> str:
    path = shutil.which("etcdctl")
    if not path:
        raise HakubeError("etcdctl is not installed on this machine: install Debian's etcd-client "
                          "(scripts/setup.sh does)")
    return path


async def run_etcdctl(*args: str, timeout: float = 120) -> str:
    """etcdctl with `args`; its stdout, or a HakubeError with what it said."""
    proc = await asyncio.create_subprocess_exec(
        etcdctl(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "ETCDCTL_API": "3"})
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise HakubeError(f"etcdctl {args[0]} {args[1] if len(args) > 1 else ''} took over {timeout:.0f} s") from None
    if proc.returncode != 0:
        said = (err or out).decode(errors="replace").strip().splitlines()
        raise HakubeError(f"etcdctl {' '.join(a for a in args if not a.startswith('--'))}: "
                          f"{said[-1] if said else f'exit code {proc.returncode}'}")
    return out.decode(errors="replace")


async def save_snapshot(url: str, tls: Tls | None, dest: Path) -> None:
    """The member at `url` streams its database into `dest` (created 0600)."""
    old = os.umask(0o077)  # etcdctl writes `<dest>.part` and renames it: private from the start
    try:
        await run_etcdctl(f"--endpoints={url}", *(tls.etcdctl_args() if tls else ()), "--dial-timeout=5s",
                          "snapshot", "save", str(dest))
    finally:
        os.umask(old)
    dest.chmod(0o600)


@dataclass(frozen=True)
class SnapshotStatus:
    revision: int
    keys: int
    size: int
    hash: int


async def snapshot_status(path: Path) -> SnapshotStatus:
    """`etcdctl snapshot status`: the revision and key count the file holds."""
    doc = json.loads(await run_etcdctl("snapshot", "status", str(path), "-w", "json"))
    return SnapshotStatus(int(doc["revision"]), int(doc["totalKey"]), int(doc["totalSize"]), int(doc["hash"]))
