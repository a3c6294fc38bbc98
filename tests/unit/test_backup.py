"""Backups: what a keyspace holds (fixtures), the sealed secrets, and a real snapshot of a
real etcd on this machine's loopback taken, verified, corrupted and caught."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from hakube.backup import api, inventory, scratch, vault
from hakube.backup.etcdkeys import keys_at
from hakube.errors import HakubeError

FIXTURES = Path(__file__).parent / "fixtures" / "backup"


def test_inventory_counts_objects_per_namespace_and_resource() -> None:
    keys = (FIXTURES / "keys.txt").read_text().split()
    want = json.loads((FIXTURES / "inventory.json").read_text())
    assert inventory.of_keys(keys, 4821).as_dict() == want
    assert inventory.Inventory.from_dict(want) == inventory.of_keys(keys, 4821)


def test_differences_say_what_differs_and_nothing_when_equal() -> None:
    keys = (FIXTURES / "keys.txt").read_text().split()
    full = inventory.of_keys(keys, 4821)
    assert inventory.differences(full, full) == []
    less = inventory.of_keys([k for k in keys if "/pods/" not in k], 4821)
    said = inventory.differences(less, full, [], ["/registry/pods/kube-system/coredns-5d78c9869d-abcde"])
    assert "the snapshot holds 23 keys, live: 24" in said
    assert "namespace kube-system: 7 objects in the snapshot, 8 live" in said
    assert "resource pods: 0 objects in the snapshot, 1 live" in said
    assert "keys only live: /registry/pods/kube-system/coredns-5d78c9869d-abcde" in said
    later = inventory.of_keys(keys, 4822)
    assert inventory.differences(later, full)[0] == "the snapshot restores at revision 4822, live: 4821"


def test_sealed_secrets_open_only_with_the_passphrase_and_unchanged(tmp_path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.key").write_text("KEY")
    (tmp_path / "secrets.yaml").write_text("vrrp_password: x\n")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "log").write_text("not a secret, not taken")
    plain = vault.bundle(tmp_path)
    assert vault.members(plain) == ["pki/ca.key", "secrets.yaml"]
    sealed = vault.seal(plain, "correct horse battery")
    assert b"KEY" not in sealed and b"vrrp" not in sealed
    assert vault.open_sealed(sealed, "correct horse battery") == plain
    with pytest.raises(HakubeError, match="does not open with this passphrase"):
        vault.open_sealed(sealed, "wrong horse battery")
    changed = bytearray(sealed)
    changed[-5] ^= 1
    with pytest.raises(HakubeError, match="does not open"):
        vault.open_sealed(bytes(changed), "correct horse battery")
    header = bytearray(sealed)
    header[len(vault.MAGIC) + 10] ^= 1  # the salt: authenticated, so it cannot be swapped
    with pytest.raises(HakubeError, match="does not open"):
        vault.open_sealed(bytes(header), "correct horse battery")
    with pytest.raises(HakubeError, match="not a hakube secrets file"):
        vault.open_sealed(b"hello", "correct horse battery")


def test_passphrase_comes_from_a_file_or_the_environment_and_must_be_long(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(vault.ENV, raising=False)
    with pytest.raises(HakubeError, match="needs a passphrase: give --passphrase-file"):
        vault.passphrase(None)
    monkeypatch.setenv(vault.ENV, "short")
    with pytest.raises(HakubeError, match="has 5 characters; use at least 12"):
        vault.passphrase(None)
    monkeypatch.setenv(vault.ENV, "long enough passphrase")
    assert vault.passphrase(None) == "long enough passphrase"
    f = tmp_path / "pass"
    f.write_text("from the file, first line\nignored\n")
    assert vault.passphrase(f) == "from the file, first line"
    with pytest.raises(HakubeError, match="cannot read the passphrase file"):
        vault.passphrase(tmp_path / "missing")


def test_unsealed_secrets_go_into_a_state_directory_without_overwriting_anything(tmp_path) -> None:
    state = tmp_path / "state"
    (state / "pki").mkdir(parents=True)
    (state / "pki" / "ca.key").write_text("the CA key")
    (state / "secrets.yaml").write_text("vrrp: secret")
    plain = vault.bundle(state)
    fresh = tmp_path / "new-machine"
    fresh.mkdir(mode=0o700)
    assert vault.unseal_into(plain, fresh) == (["pki/ca.key", "secrets.yaml"], [])
    assert (fresh / "pki" / "ca.key").read_text() == "the CA key"
    assert (fresh / "secrets.yaml").stat().st_mode & 0o777 == 0o600
    assert (fresh / "pki").stat().st_mode & 0o777 == 0o700
    assert vault.unseal_into(plain, fresh) == ([], ["pki/ca.key", "secrets.yaml"])  # again: nothing to do
    (fresh / "secrets.yaml").write_text("another cluster's")
    (fresh / "pki" / "ca.key").unlink()
    with pytest.raises(HakubeError, match="already holds 1 file.*secrets.yaml.*nothing was written"):
        vault.unseal_into(plain, fresh)
    assert not (fresh / "pki" / "ca.key").exists()
    # a bundle with anything else in it (a link, a path out of the folder) opens nothing
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../outside")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(HakubeError, match="'../outside', which is not a file hakube puts there"):
        vault.unseal_into(buf.getvalue(), fresh)


# ---- a real etcd on loopback ----------------------------------------------------------------

needs_etcd = pytest.mark.skipif(not (shutil.which("etcd") and shutil.which("etcdctl")),
                                reason="etcd and etcdctl not installed: scripts/setup.sh installs them")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.fixture
def etcd(tmp_path):
    """A real single-member etcd on loopback with a Kubernetes-shaped keyspace."""
    client, peer = f"http://127.0.0.1:{_port()}", f"http://127.0.0.1:{_port()}"
    proc = subprocess.Popen(["etcd", "--name=live", f"--data-dir={tmp_path / 'live'}",
                             f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                             f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                             f"--initial-cluster=live={peer}", "--logger=zap", "--log-level=error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=2) as c:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if c.get(f"{client}/health").json().get("health") == "true":
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                assert time.monotonic() < deadline, "the test's etcd did not start"
                time.sleep(0.2)
            for k in (FIXTURES / "keys.txt").read_text().split():
                c.post(f"{client}/v3/kv/put", json={"key": _b64(k), "value": _b64("v")}).raise_for_status()
        yield client
    finally:
        proc.terminate()
        proc.wait(10)


def _put(url: str, key: str) -> None:
    httpx.post(f"{url}/v3/kv/put", json={"key": _b64(key), "value": _b64("later")}).raise_for_status()


@needs_etcd
def test_a_snapshot_is_verified_against_the_live_keys_and_a_changed_byte_is_caught(etcd, tmp_path) -> None:
    folder = tmp_path / "backup"
    folder.mkdir(mode=0o700)

    async def take():
        async with httpx.AsyncClient(timeout=10) as c:
            return await api.capture(etcd, None, c, folder)
    taken = asyncio.run(take())
    _put(etcd, "/registry/configmaps/default/written-after-the-snapshot")
    assert taken["verification"]["ok"], taken["verification"]["problems"]
    inv = taken["inventory"]
    assert inv["keys"] == 24 and inv["namespaces"]["kube-system"] == 8
    assert oct((folder / "snapshot.db").stat().st_mode & 0o777) == "0o600"
    api.write_manifest(folder, {"format": api.FORMAT, "cluster": "demo", "takenAt": "now", "member": "live", **taken,
                                "secrets": None})
    assert oct((folder / "manifest.json").stat().st_mode & 0o777) == "0o600"

    again = asyncio.run(api.verify_backup(folder))
    assert again["ok"], again["problems"]
    assert any("restores in a scratch etcd with the manifest's 24 keys" in c for c in again["checks"])
    [row] = api.list_backups(tmp_path)
    assert row["verified"] and row["keys"] == 24 and row["revision"] == inv["revision"]

    data = bytearray((folder / "snapshot.db").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "snapshot.db").write_bytes(bytes(data))
    broken = asyncio.run(api.verify_backup(folder))
    assert not broken["ok"]
    assert any("sha256" in p and "changed after the backup" in p for p in broken["problems"])
    assert any("does not restore" in p for p in broken["problems"]), broken["problems"]


@needs_etcd
def test_the_scratch_etcd_listens_on_no_tcp_port_another_local_user_could_reach(etcd, tmp_path) -> None:
    folder = tmp_path / "backup"
    folder.mkdir(mode=0o700)

    async def take():
        async with httpx.AsyncClient(timeout=10) as c:
            return await api.capture(etcd, None, c, folder)
    asyncio.run(take())

    def tcp_listeners() -> set[str]:
        r = subprocess.run(["ss", "-H", "-ltn"], capture_output=True, text=True, check=True)
        return {ln.split()[3] for ln in r.stdout.splitlines()}

    async def inside() -> tuple[set[str], int, list[str]]:
        async with scratch.restored(folder / "snapshot.db") as c:
            keys = await keys_at(c, scratch.URL, 0)
            folders = [p for p in Path(tempfile.gettempdir()).glob("hakube-verify-*")]
            return tcp_listeners(), folders[0].stat().st_mode & 0o777, keys
    before = tcp_listeners()
    during, mode, keys = asyncio.run(inside())
    assert during <= before, during - before   # nothing new on TCP while it serves
    assert mode == 0o700 and len(keys) == 24


@needs_etcd
def test_a_manifest_that_does_not_match_its_snapshot_is_reported(etcd, tmp_path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()

    async def take():
        async with httpx.AsyncClient(timeout=10) as c:
            return await api.capture(etcd, None, c, folder)
    taken = asyncio.run(take())
    taken["inventory"]["namespaces"]["default"] += 1
    taken["inventory"]["keys"] += 1
    api.write_manifest(folder, {"format": api.FORMAT, "cluster": "demo", "takenAt": "now", "member": "live", **taken,
                                "secrets": None})
    result = asyncio.run(api.verify_backup(folder))
    assert not result["ok"]
    assert "namespace default: 4 objects in the snapshot, 5 in the manifest" in result["problems"]


def test_a_folder_without_a_manifest_is_not_a_backup(tmp_path) -> None:
    with pytest.raises(HakubeError, match="is not a hakube backup: it has no manifest.json"):
        asyncio.run(api.verify_backup(tmp_path))
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(HakubeError, match="not valid JSON"):
        api.read_manifest(tmp_path)
    assert os.path.exists(tmp_path)


def test_a_manifest_cut_short_is_refused_with_what_it_lacks(tmp_path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"format": api.FORMAT, "cluster": "demo",
                                                        "snapshot": {"file": "snapshot.db"}}))
    with pytest.raises(HakubeError, match=r"lacks takenAt, member, snapshot.sha256, .*verification.ok: the backup's "
                                          "manifest was changed or cut short"):
        api.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(HakubeError, match="is not a hakube backup manifest"):
        api.read_manifest(tmp_path)
