"""etcd facts: a member's status, health and the membership, read two ways with one parser each.

- over SSH with etcdctl on the server (the deploy: `etcd_view`), JSON from
  `endpoint status -w json` and `member list -w json`;
- over HTTPS from this machine through etcd's JSON gateway (status and chaos:
  `/v3/maintenance/status`, `/health`), where 64-bit numbers arrive as strings.

IDs are always hex strings, as etcdctl prints them, so the two readings compare.
Fixture tests: tests/unit/fixtures/facts/etcd/.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from .. import paths
from ..transport import Connector

ETCDCTL = (f"ETCDCTL_API=3 etcdctl --cacert {paths.ETCD_CA_CRT} --cert {paths.ETCD_HEALTH_CRT} "
           f"--key {paths.ETCD_HEALTH_KEY} --dial-timeout 2s --command-timeout 4s")
LOCAL = "--endpoints https://127.0.0.1:2379"


def hex_id(value) -> str:
    """An etcd ID (int, or decimal string from the gateway) as etcdctl's hex."""
    return format(int(value), "x")


@dataclass(frozen=True)
class EtcdMember:
    id: str  # hex, as etcdctl prints it
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False  # added as a learner: replicates, does not vote, not yet promoted


@dataclass(frozen=True)
class MemberStatus:
    """What one member says of itself: `endpoint status`, or the gateway's maintenance status."""

    member_id: str
    leader_id: str | None  # None: it knows no leader (an election, or no quorum)
    cluster_id: str
    raft_term: int
    raft_index: int
    db_size: int
    version: str

    @property
    def is_leader(self) -> bool:
        return self.leader_id is not None and self.leader_id == self.member_id


def parse_status(doc: dict) -> MemberStatus:
    """A status document: etcdctl's `Status` object or the gateway's answer (same fields;
    the gateway writes numbers as strings and omits zero values)."""
    header = doc["header"]
    leader = doc.get("leader")
    return MemberStatus(
        member_id=hex_id(header["member_id"]),
        leader_id=hex_id(leader) if leader not in (None, "0", 0, "") else None,
        cluster_id=hex_id(header["cluster_id"]),
        raft_term=int(doc.get("raftTerm", header.get("raft_term", 0))),
        raft_index=int(doc.get("raftIndex", 0)),
        db_size=int(doc.get("dbSize", 0)),
        version=str(doc.get("version", "")),
    )


def parse_endpoint_status(text: str) -> MemberStatus:
    """`etcdctl endpoint status -w json` for one endpoint."""
    return parse_status(json.loads(text)[0]["Status"])


def parse_member_list(text: str) -> tuple[EtcdMember, ...]:
    """`etcdctl member list -w json` (also the gateway's /v3/cluster/member/list)."""
    return tuple(EtcdMember(hex_id(x["ID"]), x.get("name", ""), tuple(x.get("peerURLs", [])),
                            tuple(x.get("clientURLs", [])), bool(x.get("isLearner", False)))
                 for x in json.loads(text).get("members", []))


def parse_cluster_health(text: str, members: tuple[EtcdMember, ...]) -> set[str]:
    """`etcdctl endpoint health --cluster -w json`: the ids of the members that answered
    healthy (matched by client URL; etcdctl exits 1 when any is unhealthy, and still prints)."""
    try:
        rows = json.loads(text or "[]")
    except ValueError:
        return set()
    ok = {r.get("endpoint") for r in rows if r.get("health") is True}
    return {m.id for m in members if set(m.client_urls) & ok}


def parse_health(doc: dict) -> tuple[bool, str]:
    """The gateway's /health: (healthy, why not)."""
    if str(doc.get("health")) == "true":
        return True, ""
    return False, doc.get("reason", "") or "unhealthy"


@dataclass(frozen=True)
class EtcdView:
    """What one server sees of etcd: whether its member is healthy, and the membership."""

    healthy: bool
    has_data: bool
    members: tuple[EtcdMember, ...]
    cluster_id: str | None
    leader_id: str | None
    member_id: str | None = None  # this member's own id


async def etcd_view(conn: Connector, data_dir: str) -> EtcdView:
    has_data = (await conn.run(f"test -d {shlex.quote(data_dir)}/member", check=False)).ok
    r = await conn.run(f"{ETCDCTL} {LOCAL} endpoint status -w json", check=False,
                       what="asking etcd for its status")
    if not r.ok:
        return EtcdView(False, has_data, (), None, None)
    status = parse_endpoint_status(r.stdout)
    m = await conn.run(f"{ETCDCTL} {LOCAL} member list -w json", check=False)
    members = parse_member_list(m.stdout) if m.ok else ()
    return EtcdView(True, has_data, members, status.cluster_id, status.leader_id, status.member_id)
