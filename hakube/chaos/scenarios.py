"""The scenarios: each starts from a healthy cluster, breaks it in one well-defined way
while the probes write and read through the front door, checks what must happen, undoes
the fault, and waits until the cluster is healthy again (or fails loudly).

Every "within N s" is a promise hakube makes about its own defaults; it is multiplied by
HAKUBE_TIMEOUT_SCALE on slow machines.
"""

from __future__ import annotations

import asyncio
import shlex

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..topology import Topology
from ..transport.targets import run_once
from ..verify.status import gather
from .errors import ScenarioFailed
from .undo import UNDO_ACTIONS

if TYPE_CHECKING:
    from .runner import Run

SCENARIOS: dict[str, tuple] = {}
# why a scenario cannot run on a cluster of this shape (None: it can), by scenario name
APPLIES: dict[str, Callable[[Topology], str | None]] = {}


def scenario(name: str, summary: str, *needs: Callable[[Topology], str | None]):
    """Register a scenario; `needs` are the topology's conditions it needs, each returning
    why it does not hold (None when it does)."""
    def register(fn):
        SCENARIOS[name] = (fn, summary)
        APPLIES[name] = lambda topo: next((why for need in needs if (why := need(topo))), None)
        return fn
    return register


def why_not(name: str, topo: Topology) -> str | None:
    """Why scenario `name` does not apply to this cluster, or None when it does."""
    return APPLIES[name](topo)


# ---- what scenarios need (pure: tests/unit/test_chaos_logic.py) ----------------------------

def three_servers(topo: Topology) -> str | None:
    if len(topo.servers) < 3:
        return f"needs 3 or more servers to keep quorum while one is down; this cluster has {len(topo.servers)}"
    return None


def a_vip(topo: Topology) -> str | None:
    return None if topo.vip_hosts else "needs a VIP (controlPlane.vip.provider keepalived or pacemaker)"


def vip_on_etcd_servers(topo: Topology) -> str | None:
    if not topo.vip_hosts or any(h not in topo.servers or not topo.host(h).runs("etcd") for h in topo.vip_hosts):
        return ("needs the VIP on servers that run etcd (it makes the VIP holder the etcd leader); here the "
                "VIP lives on " + (", ".join(topo.vip_hosts) or "no host"))
    return None


def stacked_etcd(topo: Topology) -> str | None:
    if not topo.servers or not topo.host(topo.servers[0]).runs("etcd"):
        return "needs etcd on the servers (datastore: etcd); this cluster's datastore is elsewhere"
    return None


def lb_on_vip_hosts(topo: Topology) -> str | None:
    if not topo.vip_hosts or not set(topo.vip_hosts) <= set(topo.lb_hosts):
        return "needs the load balancer on the hosts that can hold the VIP"
    return None


def an_agent(topo: Topology) -> str | None:
    return None if topo.agents else "needs an agent"


async def _service(run: Run, host: str, action: str, unit: str) -> None:
    t = run.now()
    await run_once(run.loaded, host, f"systemctl {action} {shlex.quote(unit)}")
    run.event("fault", f"{action} {unit} on {host}", t)
    if action in UNDO_ACTIONS:
        run.undone_at = t
    elif run.fault_at is None:
        run.fault_at = t


async def _crash_vip_holder(run: Run, leader_case: bool) -> None:
    holder = await run.vip_holder()
    if leader_case:
        await run.move_etcd_leader(holder)
    else:
        other = next(s for s in run.topo.servers if s != holder)
        await run.move_etcd_leader(other)
    leader, term = run.etcd_leader()
    run.event("note", f"{holder} holds the VIP" + (" and is the etcd leader" if leader == holder
                                                   else f"; the etcd leader is {leader}"))
    await run.fault("crash", holder)
    await run.expect_vip_moved(holder, within=15)
    await run.expect_backend_down(holder, within=15)
    if leader == holder:
        await run.expect_leader_elected(holder, term, within=15)
    await run.expect_degraded(f"{holder} was down")
    await run.observe(3)
    await run.fault("start", holder)
    await run.wait_healthy()


@scenario("crash-vip-holder", "crash the server holding the VIP while it is also the etcd leader",
          three_servers, vip_on_etcd_servers)
async def crash_vip_holder(run: Run) -> None:
    await _crash_vip_holder(run, leader_case=True)


@scenario("crash-vip-holder-follower", "crash the server holding the VIP while another server leads etcd",
          three_servers, vip_on_etcd_servers)
async def crash_vip_holder_follower(run: Run) -> None:
    await _crash_vip_holder(run, leader_case=False)


@scenario("crash-etcd-leader", "crash the etcd leader while the VIP is on another server",
          three_servers, stacked_etcd, a_vip)
async def crash_etcd_leader(run: Run) -> None:
    holder = await run.vip_holder()
    target = next(s for s in run.topo.servers if s != holder)
    await run.move_etcd_leader(target)
    leader, term = run.etcd_leader()
    run.event("note", f"{target} leads etcd; the VIP stays on {holder}")
    await run.fault("crash", target)
    await run.expect_leader_elected(target, term, within=15)
    await run.expect_backend_down(target, within=15)
    await run.expect_degraded(f"{target} was down")
    if (run.monitor.vip.last() or ()) != (holder,):
        raise ScenarioFailed(f"the VIP moved off {holder} although its front door was fine")
    run.check(f"the VIP stayed on {holder}")
    await run.observe(3)
    await run.fault("start", target)
    await run.wait_healthy()


@scenario("stop-lb-on-vip-holder", "stop only the load balancer on the VIP holder: the track script moves the VIP",
          a_vip, lb_on_vip_hosts)
async def stop_lb_on_vip_holder(run: Run) -> None:
    holder = await run.vip_holder()
    lb = run.loaded.cluster.spec.control_plane.load_balancer.provider
    await _service(run, holder, "stop", lb)
    await run.expect_vip_moved(holder, within=15)
    await run.expect_degraded(f"{lb} was stopped on {holder}")
    await run.observe(3)
    await _service(run, holder, "start", lb)
    await run.wait_healthy()


@scenario("crash-agent", "crash an agent: the API stays available, the node turns NotReady", an_agent)
async def crash_agent(run: Run) -> None:
    if not run.topo.agents:
        raise ScenarioFailed("crash-agent needs an agent in the cluster")
    agent = run.topo.agents[0]
    await run.fault("crash", agent)
    # kubelet's node status grace period (40 s) decides when the node turns NotReady
    deadline = asyncio.get_running_loop().time() + 90
    while True:
        await run.snapshot_status()
        if not run.healthy_during_fault and agent in run.status_during_fault:
            run.check(f"status reported {agent} as not Ready")
            break
        if asyncio.get_running_loop().time() > deadline:
            raise ScenarioFailed(f"{agent} never showed as not Ready in status")
        await asyncio.sleep(3)
    await run.fault("start", agent)
    await run.wait_healthy()


@scenario("partition-server", "isolate one server: the majority keeps serving, the isolated one accepts no write",
          three_servers, stacked_etcd, a_vip)
async def partition_server(run: Run) -> None:
    holder = await run.vip_holder()
    target = next(s for s in run.topo.servers if s != holder)
    await run.move_etcd_leader(target)  # the harder case: the isolated server was the leader
    leader, term = run.etcd_leader()
    await run.fault("isolate", target)
    await run.expect_leader_elected(target, term, within=15)
    await run.expect_degraded(f"{target} was isolated")
    # a write straight to the isolated server's apiserver must not be acknowledged
    url = f"https://{run.topo.address(target)}:{run.topo.apiserver_port}/api/v1/namespaces/hakube-chaos/configmaps"
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"isolated-{run.trial}-{int(run.now())}"}}
    try:
        r = await run.prober.client.post(url, json=body, timeout=8)
        acked = r.status_code == 201
    except Exception:
        acked = False
    if acked:
        raise ScenarioFailed(f"the isolated server {target} acknowledged a write")
    run.check(f"the isolated server {target} acknowledged no write")
    await run.observe(3)
    await run.fault("heal", target)
    await run.wait_healthy()
    idx = {m.name: m.raft_index for m in (await _status(run)).etcd}
    run.check(f"after healing, raft indexes {idx}: {target} caught up")


async def _status(run: Run):
    return await gather(run.loaded)


@scenario("lose-quorum", "crash two of three servers: writes are refused; one back and service returns",
          three_servers, stacked_etcd)
async def lose_quorum(run: Run) -> None:
    if len(run.topo.servers) < 3:
        raise ScenarioFailed("lose-quorum needs 3 servers")
    holder = await run.vip_holder()
    victims = [s for s in run.topo.servers if s != holder][:2]
    await run.fault("crash", victims[0])
    await run.fault("crash", victims[1])
    lost_at = run.now()
    await run.observe(8)
    await run.expect_degraded("two servers were down")
    acked = [o for o in run.prober.history.of("write")
             if o.outcome == "ok" and o.start > lost_at + 1.0]
    if acked:
        raise ScenarioFailed(f"{len(acked)} write(s) were acknowledged without quorum")
    run.check("no write was acknowledged without quorum")
    await run.fault("start", victims[0])
    await run.wait_for("writes to succeed again",
                       lambda: any(o.outcome == "ok" and o.start > run.now() - 2 for o in run.prober.history.of("write")),
                       120)
    run.check(f"service returned with {victims[0]} back")
    await run.fault("start", victims[1])
    await run.wait_healthy()


@scenario("full-restart", "stop and start every machine: the cluster comes back by itself")
async def full_restart(run: Run) -> None:
    for h in reversed([h.name for h in run.topo.hosts]):
        await run.fault("stop", h)
    await run.observe(3)
    for h in [h.name for h in run.topo.hosts]:
        await run.fault("start", h)
    await run.wait_healthy(within=300)


@scenario("rolling-restart", "restart each server in turn: quorum is never lost", three_servers)
async def rolling_restart(run: Run) -> None:
    start = run.now()
    for s in run.topo.servers:
        await run.fault("restart", s)
        await run.wait_healthy()
    low = run.monitor.min_healthy_members(start, run.now())
    quorum = run.topo.quorum
    if low is not None and low < quorum:
        raise ScenarioFailed(f"quorum was lost during the rolling restart ({low} members answered)")
    run.check(f"at least {low} etcd members answered throughout (quorum {quorum})")
