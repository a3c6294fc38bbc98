"""`hakube restore`: disaster recovery from a `hakube backup`, without a fork.

For a cluster that lost etcd's quorum for good (two of three members' data gone), every
member is rebuilt from one snapshot as a new etcd cluster: new cluster ID, the same
member names and addresses, so every apiserver, certificate and `etcd.conf.yml` stays as
it is and `hakube up` afterwards changes nothing.

1. refuse while the cluster still has quorum (the restore throws away every write since
   the backup) unless --force, judged twice: from this machine through etcd's client port
   and on every etcd host over SSH (a member that serves a linearizable read there is in a
   cluster with quorum), so a network between here and the servers cannot make a live cluster look
   lost; check the backup's sha256 here before anything changes;
2. copy the snapshot to every etcd host, checked by its sha256 there, and prepare each
   member's new data beside the old (`etcdctl snapshot restore` into `<data>.restoring`,
   every member in `--initial-cluster`, a token of this restore so the cluster ID is new):
   until here nothing of the running cluster has changed, and a failure leaves it as it was;
3. stop the control plane on every server, then etcd on every etcd host: nothing may
   write into the old data, and no old member may keep running beside the new cluster;
4. on every etcd host swap the prepared data in (the old is removed: none stays behind
   that could form a second cluster); start all members together (each needs the others
   for quorum) and gate on every one healthy and on one cluster ID;
5. start the control plane one server at a time, each apiserver gated on /readyz; then
   the nodes' kubelets, which reconnect by themselves, are awaited Ready.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from ..backup import api as backups
from ..components import etcd as etcd_component
from ..errors import HakubeError
from ..facts import etcd as etcd_facts
from ..hashing import file_sha256
from ..spec import Loaded
from ..topology import derive
from .context import Deploy, GateError, session
from .gates import wait_apiserver_ready, wait_etcd_healthy, wait_nodes_ready
from .plan import Action, execute
from .remove import healthy_members
from .ui import Reporter

STAGED = f"{paths.STATE_DIR}/restore/snapshot.db"
CONTROL_PLANE = ("kube-scheduler", "kube-controller-manager", "kube-apiserver")


@dataclass
class Restored:
    backup: str = ""
    revision: int = 0
    cluster_id: str = ""
    members: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"backup": self.backup, "revision": self.revision, "clusterId": self.cluster_id,
                "members": self.members}


def refusal(loaded: Loaded, healthy: set[str], force: bool, led: set[str] = frozenset()) -> str | None:
    """Why not to restore now (None: go). Pure. `healthy`: the members that answer healthy
    from this machine; `led`: the members that, asked on their own host, serve a
    linearizable read.
    Either view showing quorum refuses: the one that sees more is right."""
    topo = derive(loaded.cluster)
    if topo.distribution != "kubernetes" or topo.datastore.type == "external":
        return "restore rebuilds hakube's own etcd (the kubernetes distribution, datastore etcd)"
    if force:
        return None
    n, quorum = len(topo.etcd_hosts), len(topo.etcd_hosts) // 2 + 1
    if len(healthy) >= quorum:
        seen = f"{len(healthy)}/{n} members healthy: {', '.join(sorted(healthy))}"
    elif led:
        # one member that serves a linearizable read is enough: only quorum confirms one
        seen = (f"{', '.join(sorted(led))} {'serves' if len(led) == 1 else 'serve'} reads that need quorum, asked on "
                f"{'its host' if len(led) == 1 else 'their hosts'}; from this machine "
                f"{len(healthy)}/{n} answered healthy: check the network between here and the servers")
    else:
        return None
    return (f"etcd still has quorum ({seen}); a restore throws away every write since the backup. Replace lost "
            "members with `hakube up` instead, or give --force if going back to the backup is what you want")


async def restore(loaded: Loaded, backup: Path, force: bool = False, dry_run: bool = False,
                  ui: Reporter | None = None) -> Restored:
    ui = ui or Reporter()
    folder = backup if backup.is_dir() else backup.parent
    manifest = backups.read_manifest(folder)
    if manifest.get("cluster") != loaded.cluster.name:
        raise HakubeError(f"{folder} is a backup of cluster {manifest.get('cluster')!r}, not of "
                          f"{loaded.cluster.name!r}; nothing was changed")
    snap = folder / manifest["snapshot"]["file"]
    if not snap.exists() or file_sha256(snap) != manifest["snapshot"]["sha256"]:
        raise HakubeError(f"{snap} is missing or does not have the sha256 its manifest records (`hakube backup "
                          f"{loaded.source} --verify {folder}` says more); nothing was changed")
    topo = derive(loaded.cluster)
    if why := refusal(loaded, await healthy_members(topo), force):
        raise HakubeError(f"refusing to restore: {why}. Nothing was changed")
    done = Restored(str(folder), int(manifest["inventory"]["revision"]))
    token = f"hakube-{topo.name}-restore-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}"
    async with session(loaded, dry_run, ui, "restore") as d:
        members = list(topo.etcd_hosts)
        if why := refusal(loaded, set(), force, await _members_with_quorum(d, members)):
            raise HakubeError(f"refusing to restore: {why}. Nothing was changed")
        initial = ",".join(f"{m}={etcd_component.peer_url(topo.address(m))}" for m in members)
        with ui.phase("restore: copy the snapshot and prepare each member's data") as report:
            await execute(d, report, [Action(m, f"upload {snap.name} (revision {done.revision}), checked by its "
                                                f"sha256 here", lambda m=m: _stage(d, m, snap)) for m in members])
            await execute(d, report, [Action(m, "restore it beside the member's data (nothing running changes)",
                                             lambda m=m: _prepare_member(d, m, initial, token)) for m in members])
        with ui.phase("restore: stop the control plane and etcd") as report:
            # What they hold is thrown away: an apiserver without quorum waits for its
            # requests to time out (a minute) before it exits, so each gets a short grace,
            # then SIGKILL; all servers at once, then etcd everywhere.
            await asyncio.gather(*(execute(d, report, [Action(s, f"stop {', '.join(reversed(CONTROL_PLANE))}",
                                                              lambda s=s: _stop(d, s, CONTROL_PLANE))])
                                   for s in topo.servers))
            await asyncio.gather(*(execute(d, report, [Action(m, "stop etcd", lambda m=m: _stop(d, m, ("etcd",)))])
                                   for m in members))
        with ui.phase("restore: etcd from the snapshot") as report:
            await execute(d, report, [Action(m, "swap the prepared data in (the old data is removed)",
                                             lambda m=m: _swap_member(d, m)) for m in members])

            async def start_all() -> None:
                # Type=notify: each start returns once its member serves, which needs quorum
                await asyncio.gather(*(d.conns[m].run("systemctl start etcd", timeout=300, what="starting etcd")
                                       for m in members))
                for m in members:
                    await wait_etcd_healthy(d, m)
                done.cluster_id = await _one_cluster_id(d, members)
            await execute(d, report, [Action(members[0], f"start etcd on {', '.join(members)} together, as a new "
                                                         "cluster", start_all, announce=True)])
        with ui.phase("restore: control plane, one server at a time") as report:
            for s in topo.servers:
                async def up_one(s: str = s) -> None:
                    await d.conns[s].run(f"systemctl start {' '.join(reversed(CONTROL_PLANE))}", timeout=180,
                                         what="starting the control plane")
                    await wait_apiserver_ready(d, s)
                await execute(d, report, [Action(s, "start kube-apiserver, kube-controller-manager, kube-scheduler, "
                                                    "gated on /readyz", up_one)])
            await execute(d, report, [Action(m, f"remove the staged copy {STAGED}",
                                             lambda m=m: d.conns[m].run(f"rm -f {STAGED}", timeout=30))
                                      for m in members])
            if not dry_run:
                await wait_nodes_ready(d, [h.name for h in topo.hosts if h.is_node])
        done.members = members
    return done


async def _stop(d: Deploy, host: str, units: tuple[str, ...], grace: int = 15) -> None:
    names = " ".join(units)
    await d.conns[host].run(f"timeout {grace} systemctl stop {names} || systemctl kill --signal=SIGKILL {names}; "
                            f"systemctl stop {names}", timeout=grace + 120, what=f"stopping {names}")


async def _stage(d: Deploy, host: str, snap: Path) -> None:
    await d.conns[host].run(f"install -d -m 0700 {shlex.quote(str(Path(STAGED).parent))}", timeout=30)
    await d.conns[host].put_file(STAGED, snap, mode=0o600)


async def _members_with_quorum(d: Deploy, members: list[str]) -> set[str]:
    """The members that, asked on their own host, serve a linearizable read (read-only; dry
    runs too). Only a member whose cluster has quorum can: its own idea of a leader is no
    proof, since a member keeps it for an election timeout after the others died. The read
    is given twice the election timeout (5 s at least), so an election that a cluster with
    quorum is holding right now ends within it and the read is served."""
    async def one(m: str) -> bool:
        member = etcd_component.member_for(d.topo, d.host(m))
        wait = max(5, math.ceil(2 * member.election_ms / 1000))
        r = await d.conns[m].run(f"{etcd_facts.ETCDCTL} {etcd_facts.LOCAL} --command-timeout {wait}s endpoint health",
                                 check=False, timeout=wait + 30)
        return r.ok
    return {m for m, yes in zip(members, await asyncio.gather(*(one(m) for m in members))) if yes}


async def _prepare_member(d: Deploy, host: str, initial: str, token: str) -> None:
    member = etcd_component.member_for(d.topo, d.host(host))
    q = shlex.quote
    new = q(f"{member.data_dir}.restoring")
    await d.conns[host].run(
        f"set -e; rm -rf {new}; "
        f"ETCDCTL_API=3 etcdctl snapshot restore {STAGED} --name {q(host)} --data-dir {new} "
        f"--initial-cluster {q(initial)} --initial-cluster-token {q(token)} "
        f"--initial-advertise-peer-urls {q(member.peer_url)} >/dev/null; "
        f"chown -R etcd:etcd {new}; chmod 0700 {new}",
        timeout=300, what="restoring the snapshot beside the member's data")


async def _swap_member(d: Deploy, host: str) -> None:
    data = shlex.quote(etcd_component.member_for(d.topo, d.host(host)).data_dir)
    await d.conns[host].run(f"set -e; test -d {data}.restoring/member; rm -rf {data}; mv {data}.restoring {data}",
                            timeout=120, what="swapping the restored data in")


async def _one_cluster_id(d: Deploy, members: list[str]) -> str:
    ids = {}
    for m in members:
        r = await d.conns[m].run(f"{etcd_facts.ETCDCTL} {etcd_facts.LOCAL} endpoint status -w json", timeout=30)
        ids[m] = etcd_facts.hex_id(json.loads(r.stdout)[0]["Status"]["header"]["cluster_id"])
    if len(set(ids.values())) != 1:
        raise GateError(members[0], "every member in one new cluster",
                        ", ".join(f"{m}: cluster {i}" for m, i in ids.items()))
    return next(iter(ids.values()))
