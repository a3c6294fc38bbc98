"""A throw-away etcd on this machine's loopback, restored from a snapshot.

`etcdctl snapshot restore` checks the sha256 that `snapshot save` appended (a file
changed by one byte does not restore), then this machine's etcd (Debian's etcd-server)
serves the restored data on unix sockets inside a 0700 temporary folder, plain HTTP because
nothing but root and this process can reach them: no TCP port is opened, so another local
user cannot read the snapshot's keyspace while it is being compared. (etcd names a unix
listener `unix://NAME:PORT` and creates the socket `NAME:PORT` in its working directory.)
The folder and the process are removed on exit, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import AsyncIterator

import httpx

from ..errors import HakubeError
from ..timeouts import scale
from .etcdkeys import run_etcdctl


CLIENT, PEER = "scratch:2379", "scratch:2380"  # socket files, in the private folder
URL = "http://scratch-etcd"  # what the client's requests name; the socket carries them


@contextlib.asynccontextmanager
async def restored(snapshot: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of an etcd restored from `snapshot` (requests to URL), for the
    duration of the block."""
    etcd = shutil.which("etcd")
    if not etcd:
        raise HakubeError("etcd is not installed on this machine, so the backup cannot be verified: install "
                          "Debian's etcd-server (scripts/setup.sh does)")
    with tempfile.TemporaryDirectory(prefix="hakube-verify-") as tmp:  # created 0700
        data = Path(tmp) / "data"
        client, peer = f"unix://{CLIENT}", f"unix://{PEER}"
        try:
            await run_etcdctl("snapshot", "restore", str(snapshot), f"--data-dir={data}", "--name=scratch",
                              f"--initial-cluster=scratch={peer}", f"--initial-advertise-peer-urls={peer}")
        except HakubeError as e:
            why = str(e)
            if "expected sha256" in why:  # etcdctl prints both digests as lists of bytes
                why = "its content does not match the sha256 etcd appended when it took the snapshot (damaged)"
            raise HakubeError(f"{snapshot} does not restore: {why}") from None
        log = Path(tmp) / "etcd.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                etcd, "--name=scratch", f"--data-dir={data}", f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}", f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}", f"--initial-cluster=scratch={peer}",
                "--logger=zap", "--log-level=warn", stdout=out, stderr=out, cwd=tmp)
        transport = httpx.AsyncHTTPTransport(uds=str(Path(tmp) / CLIENT))
        try:
            async with httpx.AsyncClient(transport=transport, timeout=30) as c:
                await _until_healthy(c, proc, log)
                yield c
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()


async def _until_healthy(c: httpx.AsyncClient, proc, log: Path) -> None:
    limit = 30 * scale()
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        if proc.returncode is not None:
            said = log.read_text(errors="replace").strip().splitlines()
            raise HakubeError(f"the scratch etcd exited ({proc.returncode}): {said[-1] if said else 'no output'}")
        try:
            r = await c.get(f"{URL}/health", timeout=2)
            if r.status_code == 200 and r.json().get("health") == "true":
                return
        except (httpx.HTTPError, ValueError):
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise HakubeError(f"the scratch etcd did not become healthy within {limit:.0f} s")
        await asyncio.sleep(0.2)
