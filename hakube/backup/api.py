"""Take, verify and list backups.

A backup is a folder (0700) under `<state dir>/backups/` or where `-o` says:

    manifest.json     what was taken, from which member, at which revision, what it holds,
                      how it was verified
    snapshot.db       etcd's snapshot (0600; Secrets in it are encrypted by the apiservers)
    secrets.tar.enc   with --with-secrets: the CAs, keys and hakube's secrets, sealed

Example:
    >>> m = asyncio.run(take_backup(load("cluster.yaml")))            # doctest: +SKIP
    >>> m["verification"]["ok"], m["inventory"]["revision"]          # doctest: +SKIP
    (True, 48213)
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Callable

import httpx

from .. import state
from ..errors import HakubeError
from ..hashing import file_sha256 as sha256
from ..spec import Loaded
from ..topology import derive
from ..verify.clients import etcd_client
from ..verify.status import etcd_endpoints, etcd_members
from . import inventory, scratch, vault
from .etcdkeys import Tls, keys_at, save_snapshot, snapshot_status
from .scratch import restored

FORMAT = "hakube-backup-v1"
SNAPSHOT, MANIFEST, SECRETS = "snapshot.db", "manifest.json", "secrets.tar.enc"


def default_dir(loaded: Loaded) -> Path:
    return state.cluster_dir(loaded.cluster.name, create=False) / "backups"


def _refusal(loaded: Loaded) -> str | None:
    topo = derive(loaded.cluster)
    if topo.datastore.type == "external":
        return ("this cluster's etcd is not hakube's (spec.datastore type external): back it up where it is "
                "run, with its own tooling")
    if topo.distribution != "kubernetes":
        return f"backup works on the kubernetes distribution; {topo.distribution} keeps its own etcd snapshots"
    return None


async def _verify_snapshot(snapshot: Path, revision: int, expected_keys: list[str] | None,
                           expected: inventory.Inventory | None) -> tuple[inventory.Inventory, list[str]]:
    """Restore `snapshot` into a scratch etcd and compare what it holds at `revision` with
    the live keys (when given) or a manifest's inventory. (its inventory, problems)"""
    async with restored(snapshot) as c:
        keys = await keys_at(c, scratch.URL, revision)
    got = inventory.of_keys(keys, revision)
    if expected_keys is not None:
        mine, theirs = set(keys), set(expected_keys)
        live = inventory.of_keys(expected_keys, revision)
        return got, inventory.differences(got, live, sorted(mine - theirs), sorted(theirs - mine))
    return got, inventory.differences(got, expected, other="in the manifest") if expected else []


async def take_backup(loaded: Loaded, out_dir: Path | None = None, secret: str | None = None,
                      say: Callable[[str], None] = lambda s: None) -> dict:
    """Snapshot the etcd leader, verify the snapshot against the live keyspace at its
    revision, and (with `secret`) seal the state directory's secrets beside it. Returns
    the manifest; the folder is removed again when anything before the manifest fails."""
    if why := _refusal(loaded):
        raise HakubeError(why)
    topo = derive(loaded.cluster)
    sdir = state.cluster_dir(topo.name, create=False)
    pki = sdir / "pki"
    tls = Tls(pki / "etcd-ca.crt", pki / "etcd-healthcheck-client.crt", pki / "etcd-healthcheck-client.key")
    if not tls.key.exists():
        raise HakubeError(f"cluster {topo.name} has no etcd client certificate in {pki}: run `hakube up` first")
    async with etcd_client(sdir, timeout=30) as client:
        members = await etcd_members(etcd_endpoints(topo), client)
        leaders = [m for m in members if m.leader and m.healthy]
        healthy = sum(m.healthy for m in members)
        if not leaders or healthy < len(members) // 2 + 1:
            down = ", ".join(f"{m.name} ({m.error or 'not healthy'})" for m in members if not m.healthy)
            raise HakubeError(f"etcd has no healthy leader with quorum ({healthy}/{len(members)} healthy; {down}): "
                              "a snapshot now could miss acknowledged writes. `hakube status` says why; if quorum "
                              "is lost for good, restore an earlier backup")
        leader = leaders[0]
        stamp = dt.datetime.now(dt.timezone.utc)
        folder = (out_dir or default_dir(loaded)) / f"{topo.name}-{stamp:%Y%m%dT%H%M%SZ}"
        if folder.exists():
            raise HakubeError(f"{folder} exists already; wait a second or give another -o")
        try:
            if not folder.parent.exists():  # the folder of backups is private too
                folder.parent.mkdir(parents=True, mode=0o700)
            folder.mkdir(mode=0o700)
        except OSError as e:
            raise HakubeError(f"cannot make the backup folder {folder}: {e.strerror}; give -o a folder "
                              "this user can write") from None
        try:
            say(f"snapshot from {leader.name}, the etcd leader")
            taken = await capture(leader.endpoint, tls, client, folder, say)
            sealed = None
            if secret is not None:
                say("sealing the certificate authorities and secrets")
                plain = vault.bundle(sdir)
                (folder / SECRETS).touch(mode=0o600)
                (folder / SECRETS).write_bytes(vault.seal(plain, secret))
                sealed = {"file": SECRETS, "sha256": sha256(folder / SECRETS), "files": vault.members(plain),
                          "cipher": f"AES-256-GCM, key from the passphrase by scrypt (n={vault.SCRYPT_N}, r=8, p=1)"}
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    manifest = {
        "format": FORMAT, "cluster": topo.name, "name": folder.name, "takenAt": stamp.isoformat(timespec="seconds"),
        "member": leader.name, "endpoint": leader.endpoint, **taken, "secrets": sealed,
        "note": None if sealed else ("Secrets in the snapshot are encrypted with the key in "
                                     f"{sdir / 'secrets.yaml'}: keep that folder, or back up with --with-secrets"),
    }
    write_manifest(folder, manifest)
    return manifest | {"path": str(folder)}


async def capture(url: str, tls: Tls | None, client: httpx.AsyncClient, folder: Path,
                  say: Callable[[str], None] = lambda s: None) -> dict:
    """Snapshot the member at `url` into `folder`, read the live keys at the snapshot's
    revision through `client`, restore the snapshot into a scratch etcd and compare: the
    manifest's snapshot, inventory and verification parts."""
    snap = folder / SNAPSHOT
    await save_snapshot(url, tls, snap)
    status = await snapshot_status(snap)
    digest = sha256(snap)
    say(f"reading the live keyspace at revision {status.revision}")
    live = await keys_at(client, url, status.revision)
    say("restoring into a scratch etcd on this machine to compare")
    got, problems = await _verify_snapshot(snap, status.revision, live, None)
    return {
        "snapshot": {"file": SNAPSHOT, "bytes": snap.stat().st_size, "sha256": digest},
        "inventory": got.as_dict(),
        "verification": {"ok": not problems, "problems": problems,
                         "how": f"restored into a scratch etcd on this machine; its {got.keys} keys at revision "
                                f"{status.revision} compared one by one with the live cluster's at that revision"},
    }


def write_manifest(folder: Path, manifest: dict) -> None:
    path = folder / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(path)


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST if folder.is_dir() else folder
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise HakubeError(f"{folder} is not a hakube backup: it has no {MANIFEST}") from None
    except ValueError as e:
        raise HakubeError(f"{path} is not valid JSON ({e}): the backup's manifest was changed") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise HakubeError(f"{path} is not a hakube backup manifest (format "
                          f"{doc.get('format') if isinstance(doc, dict) else None!r})")
    missing = [".".join(f) for f in REQUIRED if not _has(doc, f)]
    if missing:
        raise HakubeError(f"{path} lacks {', '.join(missing)}: the backup's manifest was changed or cut short")
    return doc


# what every reader of a manifest relies on (list, verify, restore)
REQUIRED = (("cluster",), ("takenAt",), ("member",), ("snapshot", "file"), ("snapshot", "sha256"),
            ("snapshot", "bytes"), ("inventory", "revision"), ("inventory", "keys"), ("verification", "ok"))


def _has(doc: dict, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return False
        doc = doc[key]
    return True


async def verify_backup(folder: Path, secret: str | None = None) -> dict:
    """Check a backup again: the files' sha256, that the snapshot restores, and that it
    holds what its manifest says. {"ok", "problems", "checks"}"""
    folder = folder if folder.is_dir() else folder.parent
    m = read_manifest(folder)
    problems, checks = [], []
    snap = folder / m["snapshot"]["file"]
    if not snap.exists():
        problems.append(f"{snap} is missing")
    else:
        digest = sha256(snap)
        if digest != m["snapshot"]["sha256"]:
            problems.append(f"{snap.name}'s sha256 is {digest[:16]}…, the manifest says "
                            f"{m['snapshot']['sha256'][:16]}…: the file changed after the backup")
        else:
            checks.append(f"{snap.name} sha256 matches the manifest")
        want = inventory.Inventory.from_dict(m["inventory"])
        try:
            got, diff = await _verify_snapshot(snap, want.revision, None, want)
            problems += diff
            if not diff:
                checks.append(f"restores in a scratch etcd with the manifest's {got.keys} keys at revision "
                              f"{got.revision}")
        except HakubeError as e:
            problems.append(str(e))
    if m.get("secrets"):
        sf = folder / m["secrets"]["file"]
        if not sf.exists() or sha256(sf) != m["secrets"]["sha256"]:
            problems.append(f"{sf.name} is missing or changed after the backup")
        elif secret is not None:
            try:
                names = vault.members(vault.open_sealed(sf.read_bytes(), secret, sf.name))
                checks.append(f"{sf.name} opens with the passphrase: {len(names)} files")
            except HakubeError as e:
                problems.append(str(e))
        else:
            checks.append(f"{sf.name} sha256 matches (give the passphrase to open it too)")
    return {"path": str(folder), "ok": not problems, "problems": problems, "checks": checks}


def list_backups(directory: Path) -> list[dict]:
    """The backups in `directory`, oldest first: name, time, size, revision, verification."""
    rows = []
    for d in sorted(p for p in directory.glob("*") if (p / MANIFEST).exists()) if directory.is_dir() else ():
        try:
            m = read_manifest(d)
        except HakubeError as e:
            rows.append({"name": d.name, "path": str(d), "error": str(e)})
            continue
        rows.append({"name": d.name, "path": str(d), "takenAt": m["takenAt"], "member": m["member"],
                     "bytes": m["snapshot"]["bytes"], "revision": m["inventory"]["revision"],
                     "keys": m["inventory"]["keys"], "verified": m["verification"]["ok"],
                     "secrets": bool(m.get("secrets"))})
    return rows


def unseal_backup(folder: Path, secret: str, state_dir: Path) -> dict:
    """Open a backup's sealed secrets into the cluster's state directory (see
    vault.unseal_into): what a new machine needs, beside the snapshot, to restore and
    manage the cluster again."""
    m = read_manifest(folder)
    if not m.get("secrets"):
        raise HakubeError(f"{folder} holds no secrets (it was taken without --with-secrets)")
    sf = folder / m["secrets"]["file"]
    if not sf.exists() or sha256(sf) != m["secrets"]["sha256"]:
        raise HakubeError(f"{sf} is missing or changed after the backup; nothing was written")
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    written, same = vault.unseal_into(vault.open_sealed(sf.read_bytes(), secret, sf.name), state_dir)
    return {"path": str(folder), "stateDir": str(state_dir), "written": written, "alreadyThere": same}
