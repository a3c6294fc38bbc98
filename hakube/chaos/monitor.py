"""Background observers during a scenario: who holds the VIP, who leads etcd, and what each
load balancer thinks of each backend, sampled several times a second with timestamps.

They use the same facts as `hakube status`, read in tight loops with short timeouts so
that a dead host only makes its own samples go missing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx

from ..facts import etcd as etcd_facts
from ..facts import haproxy as haproxy_facts
from ..facts import vip as vip_facts
from ..topology import Topology
from ..transport import Connector


@dataclass
class Sample:
    t: float
    value: object


@dataclass
class Series:
    name: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, t: float, value) -> None:
        self.samples.append(Sample(t, value))

    def first(self, after: float, pred) -> float | None:
        for s in self.samples:
            if s.t >= after and pred(s.value):
                return s.t
        return None

    def last(self):
        return self.samples[-1].value if self.samples else None


class Monitor:
    def __init__(self, topo: Topology, conns: dict[str, Connector], etcd: httpx.AsyncClient, t0: float,
                 period: float = 0.2):
        self.topo = topo
        self.conns = conns
        self.etcd = etcd
        self.t0 = t0
        self.period = period
        self.vip = Series("vip holders")  # value: tuple of hosts holding the VIP
        self.leader = Series("etcd leader")  # value: (leader member name or None, max term)
        self.backends = Series("backends")  # value: {lb: {server: state}}
        self.members = Series("etcd healthy")  # value: number of members answering with a leader
        self._stop = asyncio.Event()
        self._names: dict[str, str] = {}  # member id -> host name
        self._tasks: list[asyncio.Task] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> None:
        loops = [self._etcd_loop()] if self.topo.etcd_hosts else []  # an existing etcd is not watched
        if self.topo.vip_hosts:
            loops.append(self._vip_loop())
        if self.topo.lb_hosts and self.topo.cluster.spec.control_plane.load_balancer.provider == "haproxy":
            loops.append(self._backend_loop())
        self._tasks = [asyncio.create_task(c) for c in loops]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _every(self, fn) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                await fn()
            except Exception:
                pass
            await asyncio.sleep(max(0.0, self.period - (time.monotonic() - start)))

    async def _vip_loop(self) -> None:
        vip = self.topo.endpoint_host

        async def one(h: str):
            c = self.conns.get(h)
            if c is None:
                return None
            try:
                r = await asyncio.wait_for(c.run(vip_facts.holds_command(vip), check=False), 1.0)
            except asyncio.TimeoutError:
                return None
            return h if r.ok and vip_facts.parse_holds(r.stdout) else None

        async def sample():
            t = self.now()
            res = await asyncio.gather(*(one(h) for h in self.topo.vip_hosts))
            self.vip.add(t, tuple(h for h in res if h))
        await self._every(sample)

    async def _etcd_loop(self) -> None:
        async def one(s: str):
            try:
                r = await self.etcd.post(f"https://{self.topo.address(s)}:2379/v3/maintenance/status", json={},
                                         timeout=0.8)
                st = etcd_facts.parse_status(r.json())
                self._names[st.member_id] = s
                return st
            except Exception:
                return None

        async def sample():
            t = self.now()
            res = await asyncio.gather(*(one(s) for s in self.topo.etcd_hosts))
            live = [r for r in res if r and r.leader_id is not None]
            terms = [r.raft_term for r in live]
            leader = None
            if live:
                top = max(live, key=lambda r: r.raft_term)
                leader = self._names.get(top.leader_id, top.leader_id)
            self.leader.add(t, (leader, max(terms) if terms else 0))
            # members that answer at all: one between leaders (an election) still counts
            self.members.add(t, len([r for r in res if r]))
        await self._every(sample)

    async def _backend_loop(self) -> None:
        async def one(h: str):
            c = self.conns.get(h)
            if c is None:
                return h, None
            try:
                r = await asyncio.wait_for(c.run(haproxy_facts.SHOW_STAT, check=False), 1.0)
            except asyncio.TimeoutError:
                return h, None
            if not r.ok:
                return h, None
            return h, {b.server: "UP" if b.up else "DOWN" for b in haproxy_facts.parse_show_stat(r.stdout)}

        async def sample():
            t = self.now()
            res = await asyncio.gather(*(one(h) for h in self.topo.lb_hosts))
            self.backends.add(t, {h: s for h, s in res if s is not None})
        await self._every(sample)

    # -- derived moments -------------------------------------------------------------------

    def vip_moved_after(self, t: float, old: str) -> float | None:
        return self.vip.first(t, lambda v: len(v) == 1 and v[0] != old)

    def vip_back_after(self, t: float) -> float | None:
        return self.vip.first(t, lambda v: len(v) == 1)

    def leader_elected_after(self, t: float, old_leader: str | None, old_term: int) -> float | None:
        return self.leader.first(t, lambda v: v[0] is not None and v[0] != old_leader and v[1] > old_term)

    def backend_down_after(self, t: float, server: str, lbs: list[str]) -> float | None:
        def all_down(v: dict) -> bool:
            seen = [v[lb].get(server) for lb in lbs if lb in v]
            return bool(seen) and all(s == "DOWN" for s in seen)
        return self.backends.first(t, all_down)

    def min_healthy_members(self, start: float, end: float, hold: float = 1.0) -> int | None:
        """The fewest etcd members that answered between `start` and `end`, counting only
        dips that lasted `hold` seconds: one slow answer from a loaded member is not a lost
        quorum (its probe has a 0.8 s timeout), while a real loss lasts far longer."""
        samples = [s for s in self.members.samples if start <= s.t <= end]
        if not samples:
            return None
        return min(max(x.value for x in samples[i:] if x.t <= s.t + hold) for i, s in enumerate(samples))
