"""A throw-away etcd on this machine's loopback, restored from a snapshot.

`etcdctl snapshot restore` checks the sha256 that `snapshot save` appended (a file
changed by one byte does not restore), then this machine's etcd (Debian's etcd-server)
serves the restored data on two free loopback ports, plain HTTP because nothing but this
process can reach them. The folder and the process are removed on exit, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from pathlib import Path
from typing import AsyncIterator

import httpx

from ..errors import HakubeError
from ..timeouts import scale
from .etcdkeys import run_etcdctl


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def restored(snapshot: Path) -> AsyncIterator[str]:
    """The client URL of an etcd restored from `snapshot`, for the duration of the block."""
    etcd = shutil.which("etcd")
    if not etcd:
        raise HakubeError("etcd is not installed on this machine, so the backup cannot be verified: install "
                          "Debian's etcd-server (scripts/setup.sh does)")
    with tempfile.TemporaryDirectory(prefix="hakube-verify-") as tmp:
        data = Path(tmp) / "data"
        client, peer = f"http://127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}"
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
                "--logger=zap", "--log-level=warn", stdout=out, stderr=out)
        try:
            await _until_healthy(client, proc, log)
            yield client
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()


async def _until_healthy(url: str, proc, log: Path) -> None:
    deadline = asyncio.get_running_loop().time() + 30 * scale()
    async with httpx.AsyncClient(timeout=2) as c:
        while True:
            if proc.returncode is not None:
                said = log.read_text(errors="replace").strip().splitlines()
                raise HakubeError(f"the scratch etcd exited ({proc.returncode}): {said[-1] if said else 'no output'}")
            try:
                r = await c.get(f"{url}/health")
                if r.status_code == 200 and r.json().get("health") == "true":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise HakubeError("the scratch etcd did not become healthy within 30 s")
            await asyncio.sleep(0.2)
