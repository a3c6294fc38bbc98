"""Health gates: each waits until the cluster shows what the step just promised, or raises
GateError naming the host, what was expected, what was seen and the service's log.

Every timeout is stretched by HAKUBE_TIMEOUT_SCALE (hakube/timeouts.py).
"""

from __future__ import annotations

import asyncio
import time

import httpx

from ..timeouts import scaled
from ..verify.clients import admin_client
from .membership import strangers
from .context import Deploy, GateError
from ..facts import etcd as etcd_facts
from ..facts import apiserver, kube
from ..facts import vip as vip_facts

ETCD_JOIN_TIMEOUT = 90.0
READY_TIMEOUT = 180.0
VIP_TIMEOUT = 60.0
NODE_READY_TIMEOUT = 180.0


async def wait_etcd_healthy(d: Deploy, s: str) -> None:
    conn = d.conns[s]
    deadline = time.monotonic() + scaled(ETCD_JOIN_TIMEOUT)
    seen = ""
    with d.ui.waiting(f"{s}: waiting for the etcd member to be healthy"):
        while time.monotonic() < deadline:
            r = await conn.run(f"{etcd_facts.ETCDCTL} {etcd_facts.LOCAL} endpoint health", check=False,
                               timeout=10)
            if r.ok:  # etcdctl prints its verdict on stderr; the exit code is the answer
                return
            seen = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no answer"]
            seen = seen[0]
            await asyncio.sleep(1)
    raise GateError(s, f"etcd member healthy within {scaled(ETCD_JOIN_TIMEOUT):.0f} s", seen, await d.journal(s, "etcd"),
                    "fix what the log says, then run `hakube up` again: it continues from here")


async def wait_apiserver_ready(d: Deploy, s: str, timeout: float = READY_TIMEOUT) -> None:
    url = f"https://127.0.0.1:{d.topo.apiserver_port}/readyz"
    cmd = apiserver.readyz_command(d.topo.apiserver_port)
    deadline = time.monotonic() + scaled(timeout)
    seen = "no answer"
    with d.ui.waiting(f"{s}: waiting for kube-apiserver /readyz"):
        while time.monotonic() < deadline:
            r = await d.conns[s].run(cmd, check=False, timeout=10)
            answer = apiserver.parse_readyz(r.stdout, r.stderr)
            if answer.ready:
                return
            seen = answer.seen
            await asyncio.sleep(1)
    raise GateError(s, f"{url} answers 200 within {scaled(timeout):.0f} s", seen, await d.journal(s, "kube-apiserver"))


async def wait_pacemaker_quorum(d: Deploy, host: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        r = await d.conns[host].run("crm_mon -1 2>/dev/null | grep -q 'partition with quorum'", check=False)
        if r.ok:
            return
        await asyncio.sleep(2)
    raise GateError(host, "pacemaker partition with quorum", "no quorum", await d.journal(host, "pacemaker"))


async def vip_holders(d: Deploy) -> list[str]:
    vip = d.topo.endpoint_host

    async def holds(h: str) -> bool:
        r = await d.conns[h].run(vip_facts.holds_command(vip), check=False, timeout=10)
        return vip_facts.parse_holds(r.stdout)

    results = await asyncio.gather(*(holds(h) for h in d.topo.vip_hosts))
    return [h for h, r in zip(d.topo.vip_hosts, results) if r]


async def wait_vip_single_holder(d: Deploy, timeout: float = VIP_TIMEOUT) -> str:
    deadline = time.monotonic() + scaled(timeout)
    holders: list[str] = []
    with d.ui.waiting(f"waiting for exactly one host to hold the VIP {d.topo.endpoint_host}"):
        while time.monotonic() < deadline:
            holders = await vip_holders(d)
            if len(holders) == 1:
                return holders[0]
            await asyncio.sleep(1)
    unit = "keepalived" if d.loaded.cluster.spec.control_plane.vip.provider == "keepalived" else "pacemaker"
    host = d.topo.vip_hosts[0]
    raise GateError(host, f"the VIP {d.topo.endpoint_host} on exactly one of {', '.join(d.topo.vip_hosts)}",
                    f"held by {', '.join(holders) or 'no host'}", await d.journal(host, unit))


async def wait_endpoint_ready(d: Deploy, timeout: float = VIP_TIMEOUT) -> None:
    url = f"{d.topo.api_url}/readyz"
    deadline = time.monotonic() + scaled(timeout)
    seen = "no answer"
    with admin_client(d.state_dir) as client, d.ui.waiting(f"waiting for {url} from this machine"):
        while time.monotonic() < deadline:
            try:
                r = await asyncio.to_thread(client.get, url)
                if r.status_code == 200:
                    return
                seen = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as e:
                seen = f"{type(e).__name__}: {e}"
            await asyncio.sleep(1)
    raise GateError("local", f"{url} answers 200 with TLS verification on", seen,
                    hint="check that this machine can reach the VIP and that a load balancer holds it")


async def wait_nodes_ready(d, nodes: list[str], timeout: float = NODE_READY_TIMEOUT) -> None:
    deadline = time.monotonic() + scaled(timeout)
    seen: dict[str, str] = {}
    with admin_client(d.state_dir) as client, d.ui.waiting(f"waiting for {len(nodes)} nodes to be Ready"):
        while time.monotonic() < deadline:
            try:
                r = await asyncio.to_thread(client.get, f"{d.topo.api_url}/api/v1/nodes")
                items = kube.parse_nodes(r.json())
            except Exception as e:
                items, seen["api"] = {}, str(e)
            for n in nodes:
                seen[n] = "not registered" if n not in items else "Ready" if items[n].ready else items[n].message
            if all(seen.get(n) == "Ready" for n in nodes):
                for n in nodes:
                    d.ui.ok(n, "node Ready")
                present = {n: "Ready" if v.ready else "not Ready" for n, v in items.items()}
                for sentence in strangers("node", present, nodes,
                                          "if the machine is gone for good, `kubectl delete node` it"):
                    d.ui.warn("nodes", sentence)
                return
            await asyncio.sleep(2)
    bad = [n for n in nodes if seen.get(n) != "Ready"]
    raise GateError(bad[0], f"nodes {', '.join(nodes)} Ready within {scaled(timeout):.0f} s",
                    "; ".join(f"{n}: {seen.get(n)}" for n in bad), await d.journal(bad[0], "kubelet"))


async def wait_prometheus(d, timeout: float = 90.0) -> None:
    hosts = [h.name for h in d.topo.hosts if h.runs("prometheus")]
    deadline = time.monotonic() + scaled(timeout)
    seen = {}
    async with httpx.AsyncClient(timeout=3) as client:
        while time.monotonic() < deadline:
            for h in hosts:
                try:
                    r = await client.get(f"http://{d.topo.address(h)}:9090/-/ready")
                    seen[h] = "ready" if r.status_code == 200 else f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    seen[h] = type(e).__name__
            if all(v == "ready" for v in seen.values()):
                for h in hosts:
                    d.ui.ok(h, "Prometheus ready")
                return
            await asyncio.sleep(2)
    bad = next(h for h in hosts if seen.get(h) != "ready")
    raise GateError(bad, "Prometheus ready on :9090", seen.get(bad, "no answer"), await d.journal(bad, "prometheus"))
