"""`hakube restore`'s refusals (pure) and the checks it makes of a backup before anything
changes (no host is contacted for these)."""

from __future__ import annotations

import asyncio
import json

import pytest

from hakube.backup import api as backups
from hakube.engine import restore
from hakube.errors import HakubeError
from hakube.spec import load

from .conftest import FIXTURES

HA3 = load(FIXTURES / "specs" / "ha3.yaml")


@pytest.mark.parametrize("healthy,force,refused", [
    (set(), False, None),                        # quorum lost for good: the case it is for
    ({"server-1"}, False, None),
    ({"server-1", "server-2"}, False, "etcd still has quorum (2/3 members healthy: server-1, server-2)"),
    ({"server-1", "server-2", "server-3"}, True, None),   # --force: going back on purpose
])
def test_restore_is_refused_while_etcd_has_quorum_unless_forced(healthy, force, refused) -> None:
    why = restore.refusal(HA3, healthy, force)
    assert (why is None) == (refused is None), why
    if refused:
        assert why.startswith(refused) and "--force" in why and "hakube up" in why


def test_a_member_that_knows_a_leader_on_its_host_refuses_what_this_machine_cannot_see() -> None:
    # from here nothing answers (a firewall, a partition), but server-3 still follows a leader
    why = restore.refusal(HA3, set(), False, led={"server-3"})
    assert why and why.startswith("etcd still has quorum (server-3 serves reads that need quorum, asked on its host; from this "
                                  "machine 0/3 answered healthy: check the network")
    assert restore.refusal(HA3, set(), True, led={"server-3"}) is None
    assert restore.refusal(HA3, {"server-1"}, False, led=set()) is None


def test_restore_is_for_hakubes_own_etcd() -> None:
    k3s = load(FIXTURES / "specs" / "k3s3.yaml")
    assert "hakube's own etcd" in restore.refusal(k3s, set(), False)


def _backup(tmp_path, cluster: str, content: bytes = b"snapshot") -> None:
    (tmp_path / "snapshot.db").write_bytes(content)
    backups.write_manifest(tmp_path, {"format": backups.FORMAT, "cluster": cluster, "takenAt": "now", "member": "s",
                                      "snapshot": {"file": "snapshot.db", "bytes": 8,
                                                   "sha256": backups.sha256(tmp_path / "snapshot.db")},
                                      "inventory": {"revision": 5, "keys": 1, "namespaces": {}, "resources": {}},
                                      "verification": {"ok": True, "problems": [], "how": ""}, "secrets": None})


def test_a_backup_of_another_cluster_or_a_changed_snapshot_is_refused_first(tmp_path) -> None:
    _backup(tmp_path, "another")
    with pytest.raises(HakubeError, match="is a backup of cluster 'another', not of 'demo'; nothing was changed"):
        asyncio.run(restore.restore(HA3, tmp_path))
    _backup(tmp_path, HA3.cluster.name)
    (tmp_path / "snapshot.db").write_bytes(b"changed!")
    with pytest.raises(HakubeError, match="does not have the sha256 its manifest records.*nothing was changed"):
        asyncio.run(restore.restore(HA3, tmp_path))
    assert json.loads((tmp_path / "manifest.json").read_text())["cluster"] == HA3.cluster.name
