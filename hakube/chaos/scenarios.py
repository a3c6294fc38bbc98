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

from .. import paths
from ..components.containerd import pause_image
from ..timeouts import scale
from ..topology import Topology
from ..transport.targets import run_once
from ..verify.status import gather
from .errors import ScenarioFailed
from .probes import NAMESPACE
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


def three_etcd_members(topo: Topology) -> str | None:
    if not topo.etcd_hosts:
        return "needs etcd run by hakube; this cluster uses an existing etcd given by endpoints"
    if len(topo.etcd_hosts) < 3:
        return (f"needs 3 or more etcd members to keep quorum while one is down; this cluster has "
                f"{len(topo.etcd_hosts)}")
    return None


def vip_failover(topo: Topology) -> str | None:
    """The VIP can move, and losing its holder keeps whatever quorum it is part of."""
    if len(topo.vip_hosts) < 2:
        return "needs a VIP that can move between 2 or more hosts"
    if any(topo.host(h).runs("etcd") for h in topo.vip_hosts):
        return three_etcd_members(topo)
    return None


def dedicated_lbs(topo: Topology) -> str | None:
    if topo.cluster.spec.control_plane.load_balancer.placement != "dedicated" or len(topo.lb_hosts) < 2:
        return "needs 2 or more hosts of their own for the load balancer (role loadbalancer)"
    return None


def etcd_off_servers(topo: Topology) -> str | None:
    if topo.etcd_on_servers:
        return "needs etcd outside the servers (hosts with the role etcd, or an existing etcd); here it runs on them"
    if len(topo.servers) < 3:
        return f"needs 3 or more servers; this cluster has {len(topo.servers)}"
    return None


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


def agents_local(topo: Topology) -> str | None:
    if topo.cluster.spec.control_plane.load_balancer.placement != "agents-local" or not topo.agents:
        return "needs a proxy on every agent (loadBalancer.placement: agents-local) and an agent"
    return None


def longest_failure(samples: list[tuple[float, bool]]) -> float:
    """The longest time from a failed sample to the next good one (to the last sample when
    none follows): how long a client saw nothing but failures."""
    longest, since = 0.0, None
    for t, ok in samples:
        if not ok and since is None:
            since = t
        elif ok and since is not None:
            longest, since = max(longest, t - since), None
    if since is not None and samples:
        longest = max(longest, samples[-1][0] - since)
    return longest


def two_agents(topo: Topology) -> str | None:
    return None if len(topo.agents) >= 2 else f"needs 2 or more agents; this cluster has {len(topo.agents)}"


def server_loss_tolerated(topo: Topology) -> str | None:
    """One server may go: 3 servers with etcd on them, or 2 with etcd elsewhere."""
    return three_servers(topo) if topo.etcd_on_servers else (
        None if len(topo.servers) >= 2 else "needs 2 or more servers")


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
    if run.topo.host(holder).runs("etcd"):
        if leader_case:
            await run.move_etcd_leader(holder)
        else:
            other = next(s for s in run.topo.etcd_hosts if s != holder)
            await run.move_etcd_leader(other)
    leader, term = run.etcd_leader()
    what = "server" if holder in run.topo.servers else "load-balancer host"
    run.event("note", f"{holder} ({what}) holds the VIP" + (" and is the etcd leader" if leader == holder
                                                           else f"; the etcd leader is {leader}"))
    await run.fault("crash", holder)
    await run.expect_vip_moved(holder, within=15)
    if holder in run.topo.servers:  # an apiserver went with it: the load balancers must notice
        await run.expect_backend_down(holder, within=15)
    if leader == holder:
        await run.expect_leader_elected(holder, term, within=15)
    await run.expect_degraded(f"{holder} was down")
    await run.observe(3)
    await run.fault("start", holder)
    await run.wait_healthy()


@scenario("crash-vip-holder", "crash the host holding the VIP (a server: also the etcd leader; or a "
          "load-balancer host): the VIP and the load balancer move together", vip_failover)
async def crash_vip_holder(run: Run) -> None:
    await _crash_vip_holder(run, leader_case=True)


@scenario("crash-lb-host", "crash the load-balancer host holding the VIP: the other one takes over",
          dedicated_lbs, vip_failover)
async def crash_lb_host(run: Run) -> None:
    await _crash_vip_holder(run, leader_case=False)


@scenario("crash-two-servers", "crash two of three servers while etcd lives elsewhere: writes keep succeeding",
          etcd_off_servers)
async def crash_two_servers(run: Run) -> None:
    holder = (run.monitor.vip.last() or (None,))[0] if run.topo.vip_hosts else None
    victims = [s for s in run.topo.servers if s != holder][:2]
    run.event("note", f"crashing {' and '.join(victims)}; {len(run.topo.servers) - 2} apiserver(s) stay")
    await run.fault("crash", victims[0])
    await run.fault("crash", victims[1])
    for v in victims:
        await run.expect_backend_down(v, within=15)
    await run.expect_degraded(f"{' and '.join(victims)} were down")
    since = run.now()
    await run.observe(5)
    acked = [o for o in run.prober.history.of("write") if o.outcome == "ok" and o.start >= since]
    if not acked:
        raise ScenarioFailed(f"no write succeeded with {' and '.join(victims)} down, although etcd runs elsewhere")
    run.check(f"{len(acked)} writes acknowledged in 5 s with two of {len(run.topo.servers)} servers down")
    for v in victims:
        await run.fault("start", v)
    await run.wait_healthy()


@scenario("crash-vip-holder-follower", "crash the server holding the VIP while another server leads etcd",
          three_servers, vip_on_etcd_servers)
async def crash_vip_holder_follower(run: Run) -> None:
    await _crash_vip_holder(run, leader_case=False)


@scenario("crash-etcd-leader", "crash the etcd leader, wherever etcd runs, while the VIP is on another host",
          three_etcd_members, a_vip)
async def crash_etcd_leader(run: Run) -> None:
    holder = await run.vip_holder()
    target = next(s for s in run.topo.etcd_hosts if s != holder)
    await run.move_etcd_leader(target)
    leader, term = run.etcd_leader()
    run.event("note", f"{target} leads etcd; the VIP stays on {holder}")
    await run.fault("crash", target)
    await run.expect_leader_elected(target, term, within=15)
    if target in run.topo.servers:
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


async def _api(run: Run, method: str, path: str, within: float = 30, **kw):
    """A request through the front door, retried while the fault makes it fail."""
    deadline = asyncio.get_running_loop().time() + within * scale()
    while True:
        try:
            r = await run.prober.client.request(method, f"{run.topo.api_url}{path}", timeout=5, **kw)
            if r.status_code < 500:
                return r
        except Exception:  # the front door is moving: try again
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise ScenarioFailed(f"{method} {path} through {run.topo.api_url} kept failing for {within:.0f} s")
        await asyncio.sleep(0.5)


@scenario("crash-server-and-agent", "crash the first server and an agent together; a new Deployment then "
          "gets Running pods on the surviving agents", server_loss_tolerated, two_agents)
async def crash_server_and_agent(run: Run) -> None:
    server, agent = run.topo.servers[0], run.topo.agents[run.trial % len(run.topo.agents)]
    survivors = [a for a in run.topo.agents if a != agent]
    await run.fault("crash", server)
    await run.fault("crash", agent)
    await run.expect_degraded(f"{server} and {agent} were down")
    # A pod scheduled onto the dead agent before Kubernetes notices it would wait there for
    # minutes: first wait until the node is NotReady (tainted unreachable), as a user would see.
    deadline = asyncio.get_running_loop().time() + 120 * scale()
    while not any(n.name == agent and not n.ready for n in (await _status(run)).nodes):
        if asyncio.get_running_loop().time() > deadline:
            raise ScenarioFailed(f"{agent} never showed as not Ready in status")
        await asyncio.sleep(3)
    run.check(f"status reported {agent} as not Ready")
    name = f"after-crash-{run.trial}-{int(run.now())}"
    labels = {"hakube.dev/chaos": name}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": len(survivors), "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 0,
                     "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                         {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}]}},
                     # the pause image: on every node already (containerd's sandbox), no registry needed
                     "containers": [{"name": "pause", "image": pause_image(run.topo.minor),
                                     "imagePullPolicy": "IfNotPresent"}]}}}}
    base = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
    created = await _api(run, "POST", base, json=deployment)
    if created.status_code != 201:
        raise ScenarioFailed(f"creating Deployment {name}: HTTP {created.status_code} {created.text[:200]}")
    t = run.now()
    run.event("note", f"created Deployment {name} ({len(survivors)} replicas)", t)
    try:
        deadline = asyncio.get_running_loop().time() + 120 * scale()
        placed: list[str] = []
        while len(placed) < len(survivors):
            if asyncio.get_running_loop().time() > deadline:
                raise ScenarioFailed(f"Deployment {name}: {len(placed)} of {len(survivors)} pods Running "
                                     f"on the surviving agents after 120 s ({', '.join(placed) or 'none'})")
            await asyncio.sleep(2)
            r = await _api(run, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods",
                           params={"labelSelector": f"hakube.dev/chaos={name}"})
            placed = sorted(p["spec"].get("nodeName", "") for p in r.json().get("items", [])
                            if p["status"].get("phase") == "Running" and p["spec"].get("nodeName") in survivors)
        run.check(f"Deployment {name} Running on {', '.join(placed)} {run.now() - t:.1f} s after it was created")
    finally:
        await _api(run, "DELETE", f"{base}/{name}")
    await run.fault("start", agent)
    await run.fault("start", server)
    await run.wait_healthy()


@scenario("crash-server-agents-local", "with a proxy on every agent, crash the first server: every agent stays "
          "Ready, and the longest window an agent's proxy served nothing is measured",
          agents_local, server_loss_tolerated)
async def crash_server_agents_local(run: Run) -> None:
    target, agents = run.topo.servers[0], run.topo.agents
    port = run.topo.agent_endpoint_port
    # what the kubelet does through its proxy, once every 0.2 s on every agent (over SSH)
    cmd = (f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 1 --cacert {paths.CA_CRT} "
           f"--cert {paths.LB_CHECK_CRT} --key {paths.LB_CHECK_KEY} https://127.0.0.1:{port}/readyz")
    samples: dict[str, list[tuple[float, bool]]] = {a: [] for a in agents}
    stop = asyncio.Event()

    async def probe(agent: str) -> None:
        conn = run.monitor.conns[agent]
        while not stop.is_set():
            t = run.now()
            try:
                r = await asyncio.wait_for(conn.run(cmd, check=False), 2.0)
                ok = r.stdout.strip() == "200"
            except (asyncio.TimeoutError, OSError):
                ok = False
            samples[agent].append((t, ok))
            await asyncio.sleep(0.2)

    tasks = [asyncio.create_task(probe(a)) for a in agents]
    try:
        await asyncio.sleep(2)
        await run.fault("crash", target)
        await run.expect_backend_down(target, within=15)
        await run.expect_degraded(f"{target} was down")
        # past the node-monitor grace period (40 s): an agent cut off from the API turns NotReady in it
        until = run.now() + 50
        while run.now() < until:
            lost = [n.name for n in (await _status(run)).nodes if n.name in agents and not n.ready]
            if lost:
                raise ScenarioFailed(f"{', '.join(lost)} turned NotReady with {target} down")
            await asyncio.sleep(5)
        run.check(f"every agent stayed Ready for 50 s with {target} down")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    windows = {a: longest_failure(v) for a, v in samples.items()}
    if not all(samples.values()):
        raise ScenarioFailed("an agent's proxy could not be probed")
    run.check("longest window an agent's local proxy answered nothing: "
              + ", ".join(f"{a} {w:.2f} s" for a, w in windows.items()))
    run.marks["proxy_outage"] = max(windows.values())
    await run.fault("start", target)
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
