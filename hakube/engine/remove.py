"""`hakube remove`: take hosts out of a running cluster without losing quorum or a write.

First the decision (engine/removal.py): refused, with the reason, before anything changes,
when what stays would not keep quorum, would tolerate nothing more, or would not be a
valid cluster.yaml. Then, one leaving host at a time:
1. hand off what it serves: keepalived stops there (a VIP it holds moves at once, on the
   priority-0 advert), etcd leadership moves to a member that stays, its apiserver is
   drained on every HAProxy;
2. a node is drained: cordoned, its pods evicted through the Eviction API (every
   PodDisruptionBudget honoured; engine/drain.py);
3. its kubelet and control plane stop (a running kubelet would register the node again),
   its etcd member is removed through a member that stays, its node object deleted.
Then the hosts that stay converge on the spec without the leaving ones, through the
deploy's own pipeline: each load balancer's backends and each VIP peer list lose them,
one host at a time, certificates follow. Last, the leaving hosts are reset
(engine/reset.py). The user then deletes them from cluster.yaml; `hakube up` with them
gone changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import state
from ..components import etcd as etcd_component
from ..errors import HakubeError
from ..facts import etcd as etcd_facts
from ..pki import ClusterPKI, ExistingEtcd
from ..render import render
from ..spec import Loaded
from ..spec.validate import validate
from ..transport import CommandError
from ..topology import Topology, derive
from ..verify.clients import api_client, etcd_client
from ..verify.status import etcd_endpoints, etcd_members
from . import drain, handoff, removal
from .changes import PhaseReport
from .context import Deploy, session
from .deploy import PIPELINE
from .gates import wait_vip_single_holder
from .plan import Action, execute
from .reset import HostReset, reset_hosts
from .steps.etcd import member_remove
from .ui import Reporter


@dataclass
class Removed:
    """What `remove` did: the hosts, the pods each drain moved, the resets."""

    hosts: list[str]
    evicted: dict[str, list[str]] = field(default_factory=dict)
    resets: list[HostReset] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"removed": self.hosts, "evicted": self.evicted, "resets": [r.as_dict() for r in self.resets]}


def without(loaded: Loaded, hosts: list[str]) -> Loaded:
    """The spec with `hosts` taken out (what cluster.yaml says once the user deletes them)."""
    return loaded.only(lambda h: h.name not in hosts)


async def healthy_members(topo: Topology) -> set[str]:
    """The etcd members (by host) that answer healthy now, read from this machine."""
    sdir = state.cluster_dir(topo.name, create=False)
    if topo.datastore.type == "external" or not (sdir / "pki").exists():
        return set()
    async with etcd_client(sdir) as client:
        return {m.name for m in await etcd_members(etcd_endpoints(topo), client) if m.healthy}


async def remove(loaded: Loaded, hosts: list[str], dry_run: bool = False, ui: Reporter | None = None) -> Removed:
    """Take `hosts` out of the cluster (see the module's docstring). HakubeError when refused."""
    ui = ui or Reporter()
    hosts = loaded.named(hosts, "name the hosts to remove as the spec does, and keep them in it until remove "
                                "is done")
    now = derive(loaded.cluster)
    rest = without(loaded, hosts)
    problems = [f"{p.path}: {p.message}" for p in validate(rest.cluster, base=loaded.source.parent)
                if p.severity == "error"]
    after = derive(rest.cluster)
    no = removal.refusals(now, after, await healthy_members(now), problems)
    if no:
        raise HakubeError(f"refusing to remove {', '.join(hosts)}: " + "; ".join(no) + ". Nothing was changed")
    done = Removed(hosts)
    async with session(loaded, dry_run, ui, "remove") as d:
        with ui.phase("hand off") as report:
            for h in hosts:
                done.evicted[h] = await _leave(d, report, h, avoid=tuple(hosts))
        # the hosts that stay: the deploy's pipeline on the spec without the leaving ones
        stay = {h: c for h, c in d.conns.items() if h not in hosts}
        d2 = Deploy(rest, after, ClusterPKI.load_or_create(d.state_dir, after, ExistingEtcd.read(rest)), stay,
                    ui, d.log, dry_run, d.state_dir, render(after, state.secrets(after.name)))
        for phase in PIPELINE:
            await phase(d2)
        done.resets = await reset_hosts(d, hosts)
    if not dry_run:
        state.record_converged(now.name, [h.name for h in after.hosts])
    return done


async def _leave(d: Deploy, report: PhaseReport, host: str, avoid: tuple[str, ...]) -> list[str]:
    """Steps 1-3 of the module's docstring for one host; returns the pods its drain moved."""
    h = d.host(host)
    conn = d.conns[host]
    first: list[Action] = []
    if h.runs("keepalived"):
        first.append(Action(host, "stop keepalived (a VIP held here moves to another host at once)",
                            lambda: conn.run("systemctl stop keepalived", what="stopping keepalived")))
    member = None
    if host in d.topo.etcd_hosts and h.runs("etcd"):
        data_dir = etcd_component.member_for(d.topo, h).data_dir
        view = await etcd_facts.etcd_view(conn, data_dir)
        member = view.member_id
        first += handoff.move_etcd_leader(d, host, view, why="leaves next", avoid=avoid)
    if h.runs("kube-apiserver"):
        first += handoff.drain_backend(d, host, why="it leaves the cluster")[0]
    await execute(d, report, first)
    if h.runs("keepalived") and not d.dry_run:
        holder = await wait_vip_single_holder(d)
        d.ui.ok(holder, f"holds the VIP {d.topo.endpoint_host}")
    moved: list[str] = []
    if h.is_node:
        moved = await drain.drain_node(d, report, host, "remove")
    units = [u for u in ("kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager", "kube-apiserver")
             if h.runs(u)]
    last: list[Action] = []
    if units:
        last.append(Action(host, f"stop {', '.join(units)}",
                           lambda: conn.run(f"systemctl stop {' '.join(units)}", what="stopping the node",
                                            timeout=120)))
    if member:
        source = next((s for s in d.topo.etcd_hosts if s not in avoid), None)
        if source is None:
            raise HakubeError(f"no etcd member stays to remove {host}'s member through")

        async def leave_etcd(member=member, source=source) -> None:
            try:
                await member_remove(d, source, member, f"removing {host}'s etcd member")
            except CommandError as e:
                raise HakubeError(f"{source}: etcd refused to remove {host}'s member {member}: "
                                  f"{e.result.stderr.strip() or e.result.stdout.strip()}; run `hakube remove` "
                                  "again once `hakube status` is healthy") from None
            await conn.run("systemctl stop etcd", check=False, timeout=60)
        last.append(Action(host, f"remove its etcd member {member} (through {source})", leave_etcd,
                           announce=True))
    if h.is_node:
        last.append(Action(host, f"delete the node {host}", lambda: _delete_node(d, host)))
    await execute(d, report, last)
    return moved


async def _delete_node(d: Deploy, host: str) -> None:
    async with api_client(d.state_dir, timeout=10.0) as api:
        r = await api.delete(f"{d.topo.api_url}/api/v1/nodes/{host}")
        if r.status_code not in (200, 202, 404):
            raise HakubeError(f"deleting the node {host} failed: HTTP {r.status_code} {r.text[:200]}")
