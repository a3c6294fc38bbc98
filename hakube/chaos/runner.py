"""Running a scenario: probes and monitors around a runbook, then the verdict.

A `Run` is what a scenario works with: it injects faults, waits for what must happen
(each wait has a limit and fails loudly), records events on one clock, and at the end
reads every probe object back to count lost and phantom writes.
"""

from __future__ import annotations

import asyncio
import secrets as _random
import time
from dataclasses import asdict, dataclass, field

from .. import state
from ..spec import Loaded
from ..timeouts import scale
from ..topology import derive
from ..transport import SSHConnector
from ..transport.targets import ssh_targets
from ..verify.clients import api_client, etcd_client
from ..verify.status import gather
from .errors import ScenarioFailed
from .faults import FaultDriver
from .monitor import Monitor
from .probes import Prober
from .undo import UNDO_ACTIONS

# One knob for slow machines (STYLE.md 9): every "within N s" is multiplied by it.


@dataclass
class Event:
    t: float
    kind: str  # fault, vip-moved, leader-elected, backend-down, recovered, note, status
    detail: str


@dataclass
class TrialResult:
    scenario: str
    trial: int
    ok: bool
    verdict: str
    lost: int
    phantom: int
    indeterminate: int
    failed_but_present: int
    acknowledged: int
    attempted: int
    write_downtime_s: float
    read_downtime_s: float
    vip_moved_s: float | None
    leader_elected_s: float | None
    backend_down_s: float | None
    recovered_s: float | None
    fault_at_s: float
    events: list[Event] = field(default_factory=list)
    write_outages: list[tuple[float, float]] = field(default_factory=list)
    status_during_fault: str = ""
    healthy_during_fault: bool | None = None
    ops: list[tuple[str, float, float, str, int]] = field(default_factory=list)  # kind, start, end, outcome, n
    lost_writes: list[int] = field(default_factory=list)  # numbers of acknowledged writes found absent
    phantom_writes: list[int] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    # the honest sums (issue 16): every write window added up, and the longest one that
    # began once the fault was undone (a machine coming back must not cost a second outage)
    total_write_outage_s: float = 0.0
    rejoin_outage_s: float | None = None
    undone_at_s: float | None = None
    # agents-local: the longest time any agent's own proxy answered nothing (crash-server-agents-local)
    proxy_outage_s: float | None = None

    def as_dict(self, with_ops: bool = False) -> dict:
        d = asdict(self)
        if not with_ops:
            d.pop("ops")
        return d


class Run:
    def __init__(self, loaded: Loaded, driver: FaultDriver, scenario: str, trial: int):
        self.loaded = loaded
        self.topo = derive(loaded.cluster)
        self.driver = driver
        self.scenario = scenario
        self.trial = trial
        self.sdir = state.cluster_dir(self.topo.name, create=False)
        self.events: list[Event] = []
        self.checks: list[str] = []
        self.fault_at: float | None = None
        self.undone_at: float | None = None  # when the last fault was undone (start, heal, resume)
        self.marks: dict[str, float | None] = {"vip_moved": None, "leader_elected": None, "backend_down": None,
                                                "recovered": None, "proxy_outage": None}
        self.status_during_fault = ""
        self.healthy_during_fault: bool | None = None

    # -- clock and log -----------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.t0

    def event(self, kind: str, detail: str, t: float | None = None) -> None:
        self.events.append(Event(round(self.now() if t is None else t, 3), kind, detail))
        if self.on_event:
            self.on_event(self.events[-1])

    def check(self, text: str) -> None:
        """A sentence that held: it goes into the report."""
        self.checks.append(text)
        self.event("check", text)

    # -- facts -----------------------------------------------------------------------------

    async def vip_holder(self) -> str:
        holders = self.monitor.vip.last() or ()
        if len(holders) != 1:
            raise ScenarioFailed(f"the VIP is held by {len(holders)} hosts ({', '.join(holders) or 'none'}); "
                                 "start from a healthy cluster")
        return holders[0]

    def etcd_leader(self) -> tuple[str | None, int]:
        return self.monitor.leader.last() or (None, 0)

    async def move_etcd_leader(self, to: str) -> None:
        """Make `to` the etcd leader (etcdctl move-leader), to set up a scenario's case."""
        leader, term = self.etcd_leader()
        if leader == to:
            return
        st = await self.etcd.post(f"https://{self.topo.address(to)}:2379/v3/maintenance/status", json={})
        target = st.json()["header"]["member_id"]
        r = await self.etcd.post(f"https://{self.topo.address(leader)}:2379/v3/maintenance/transfer-leadership",
                                 json={"targetID": target}, timeout=10)
        if r.status_code != 200:
            raise ScenarioFailed(f"could not move the etcd leader to {to}: HTTP {r.status_code} {r.text[:200]}")
        await self.wait_for(f"{to} leads etcd", lambda: self.etcd_leader()[0] == to, 10)
        await asyncio.sleep(1)

    # -- actions ---------------------------------------------------------------------------

    async def fault(self, action: str, machine: str, other: str | None = None) -> None:
        # The fault takes effect as the call begins (a crash cuts the link first); the call
        # returns only once it is confirmed, which can be a second later.
        t = self.now()
        text = await self.driver.apply(action, machine, other)
        self.event("fault", f"{action} {machine}" + (f" {other}" if other else "") + f": {text}", t)
        if action in UNDO_ACTIONS:
            self.undone_at = t
        elif self.fault_at is None:
            self.fault_at = t

    async def wait_for(self, what: str, pred, within: float) -> float:
        deadline = time.monotonic() + within * scale()
        while time.monotonic() < deadline:
            if pred():
                return self.now()
            await asyncio.sleep(0.1)
        raise ScenarioFailed(f"{self.scenario}: expected {what} within {within * scale():.0f} s; it did not happen")

    async def expect_vip_moved(self, old: str, within: float) -> None:
        await self.wait_for(f"the VIP to move away from {old}",
                            lambda: self.monitor.vip_moved_after(self.fault_at, old) is not None, within)
        t = self.monitor.vip_moved_after(self.fault_at, old)
        self.marks["vip_moved"] = t - self.fault_at
        self.event("vip-moved", f"VIP on {self.monitor.vip.last()[0]}", t)

    async def expect_leader_elected(self, old: str | None, old_term: int, within: float) -> None:
        await self.wait_for("etcd to elect a new leader",
                            lambda: self.monitor.leader_elected_after(self.fault_at, old, old_term) is not None, within)
        t = self.monitor.leader_elected_after(self.fault_at, old, old_term)
        self.marks["leader_elected"] = t - self.fault_at
        self.event("leader-elected", f"etcd leader {self.etcd_leader()[0]}", t)

    async def expect_backend_down(self, server: str, within: float) -> None:
        lbs = [h for h in self.topo.lb_hosts if h != server]
        if not lbs or self.loaded.cluster.spec.control_plane.load_balancer.provider != "haproxy":
            return
        await self.wait_for(f"the load balancers to mark {server} down",
                            lambda: self.monitor.backend_down_after(self.fault_at, server, lbs) is not None, within)
        t = self.monitor.backend_down_after(self.fault_at, server, lbs)
        self.marks["backend_down"] = t - self.fault_at
        self.event("backend-down", f"{server} down on {', '.join(lbs)}", t)

    async def snapshot_status(self) -> None:
        """Record what `hakube status` says while the fault is active."""
        st = await gather(self.loaded)
        self.status_during_fault = st.verdict
        self.healthy_during_fault = st.healthy
        self.event("status", st.verdict)

    async def expect_degraded(self, because: str) -> None:
        """`hakube status`, read while the fault lasts, must not call the cluster healthy."""
        await self.snapshot_status()
        if self.healthy_during_fault:
            raise ScenarioFailed(f"{self.scenario}: status said healthy while {because}")

    async def observe(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_healthy(self, within: float = 240, readings: int = 3) -> None:
        """The whole cluster healthy again, as `hakube status` judges it, `readings` times
        in a row: one healthy reading right after a reboot can be followed by a node that
        flaps while its kubelet settles. Recovery is timed at the first of the run."""
        deadline = time.monotonic() + within * scale()
        last, streak, first_ok = "", 0, None
        while time.monotonic() < deadline:
            st = await gather(self.loaded)
            if st.healthy:
                streak += 1
                first_ok = first_ok if first_ok is not None else self.now()
                if streak >= readings:
                    if self.fault_at is not None:
                        self.marks["recovered"] = first_ok - self.fault_at
                    self.event("recovered", st.verdict, first_ok)
                    return
            else:
                streak, first_ok, last = 0, None, st.verdict
            await asyncio.sleep(1)
        raise ScenarioFailed(f"{self.scenario}: the cluster was not healthy {within * scale():.0f} s after "
                             f"the faults were undone; last status: {last}")

    # -- the frame around a scenario ---------------------------------------------------------

    async def execute(self, body, on_event=None) -> TrialResult:
        self.on_event = on_event
        self.t0 = time.monotonic()
        run_id = f"{int(time.time())}-{_random.token_hex(2)}"
        targets = {t.name: t for t in ssh_targets(self.loaded)}
        hosts = sorted(set(self.topo.vip_hosts) | set(self.topo.lb_hosts))
        conns = {}
        for h in hosts:
            conns[h] = await SSHConnector.open(targets[h], None)
        # Probes open a new connection per request, as a new client would: an unreachable
        # VIP then shows as a failed connect (certainly not applied), and a connection left
        # hanging to a crashed holder cannot hide later successes.
        async with api_client(self.sdir, timeout=2.0, keepalive=False) as api, etcd_client(self.sdir) as etcd:
            self.etcd = etcd
            before = await gather(self.loaded)
            waited = time.monotonic()
            while not before.healthy and time.monotonic() - waited < 90 * scale():
                await asyncio.sleep(2)  # e.g. a node still settling after the previous trial
                before = await gather(self.loaded)
            if not before.healthy:
                raise ScenarioFailed(f"{self.scenario} starts from a healthy cluster, and this one is not: "
                                     f"{before.verdict}")
            self.monitor = Monitor(self.topo, conns, etcd, self.t0)
            self.monitor.start()
            self.prober = Prober(self.topo.api_url, api, run_id)
            self.prober.history.t0 = self.t0
            await self.prober.ensure_namespace()
            probe_task = asyncio.create_task(self.prober.run_until_stopped())
            error: Exception | None = None
            try:
                await asyncio.sleep(2.0)  # a baseline before anything breaks
                await body(self)
                await asyncio.sleep(2.0)  # and after it has healed
            except BaseException as e:  # Ctrl-C too: keep the evidence, undo the faults, then report
                error = e
            finally:
                await self.prober.stop()
                probe_task.cancel()
                await self.monitor.stop()
                for c in conns.values():
                    await c.close()
            end = self.now()
            if error is not None:
                await _undo_all(self)
                if not isinstance(error, Exception):
                    raise error  # interrupted: the cluster is whole again, stop here
            counts = await _read_back(self.prober)
            left = await self.prober.cleanup()
            if left:
                self.checks.append(left)
        h = self.prober.history
        start = self.fault_at if self.fault_at is not None else 0.0
        # outages are counted from the first probe on: before it, nothing was being asked
        first = min((o.start for o in h.ops), default=0.0)
        windows = h.outages("write", first, end)
        w_gap = max([h.longest_gap("write", first, end)] + [b - a for a, b in windows])
        r_gap = max([h.longest_gap("read", first, end)] + [b - a for a, b in h.outages("read", first, end)])
        after = [b - a for a, b in windows if self.undone_at is not None and a >= self.undone_at]
        ok = error is None and not counts["lost"] and not counts["phantom"] and not counts["failed_but_present"]
        verdict = ("passed" if ok else "FAILED") + (f": {error}" if error else "") + \
            f"; {len(counts['lost'])} lost, {len(counts['phantom'])} phantom, {counts['indeterminate']} indeterminate"
        return TrialResult(
            scenario=self.scenario, trial=self.trial, ok=ok, verdict=verdict,
            lost=len(counts["lost"]), phantom=len(counts["phantom"]), indeterminate=counts["indeterminate"],
            failed_but_present=len(counts["failed_but_present"]), acknowledged=counts["acknowledged"],
            attempted=counts["attempted"], write_downtime_s=round(w_gap, 3), read_downtime_s=round(r_gap, 3),
            vip_moved_s=_r(self.marks["vip_moved"]), leader_elected_s=_r(self.marks["leader_elected"]),
            backend_down_s=_r(self.marks["backend_down"]), recovered_s=_r(self.marks["recovered"]),
            fault_at_s=round(start, 3), events=self.events,
            write_outages=[(round(a, 3), round(b, 3)) for a, b in windows],
            total_write_outage_s=round(sum(b - a for a, b in windows), 3),
            rejoin_outage_s=round(max(after), 3) if after else (0.0 if self.undone_at is not None else None),
            undone_at_s=_r(self.undone_at), proxy_outage_s=_r(self.marks["proxy_outage"]),
            status_during_fault=self.status_during_fault, healthy_during_fault=self.healthy_during_fault,
            ops=[(o.kind, round(o.start, 3), round(o.end, 3), o.outcome, o.n) for o in h.ops], checks=self.checks,
            lost_writes=counts["lost"], phantom_writes=counts["phantom"])


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


async def _read_back(prober: Prober) -> dict:
    """Read back once the API answers again (it may take a moment after a heal)."""
    last: Exception | None = None
    for _ in range(60):
        try:
            return await prober.read_back()
        except Exception as e:
            last = e
            await asyncio.sleep(2)
    raise ScenarioFailed(f"could not read the probe objects back: {last}")


async def _undo_all(run: Run) -> None:
    """After a failed scenario: heal and start everything, so the cluster is left whole."""
    try:
        await run.driver.undo_all()
    except Exception as e:
        run.event("note", f"undoing faults failed: {e}")
