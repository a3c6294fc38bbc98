"""Probes: numbered writes and quorum reads through the API endpoint, on a fixed clock.

A write is a ConfigMap with a unique number. Each attempt is classified the way Jepsen
and etcd's failure documentation do:
  ok             the API acknowledged it (201)
  failed         it certainly did not happen: the request never reached an apiserver
                 (connection refused or no route), or the API rejected it outright (4xx)
  indeterminate  it may or may not have happened: a timeout after sending, a dropped
                 connection, or a 5xx (etcd may commit a request whose reply was lost)
Afterwards every probe object is read back: lost = acknowledged but absent (must be 0);
phantom = present but never attempted (must be 0); a write classified failed that is
present anyway is counted too, as a check on the classification itself.

Requests are started on a clock (not one after the other), so a hung connection to a dead
server does not stop the probe: the gaps in the results are the outage.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx

NAMESPACE = "hakube-chaos"


@dataclass
class Op:
    kind: str  # write / read
    n: int
    start: float  # seconds since the probe's t0
    end: float
    outcome: str  # ok / failed / indeterminate
    detail: str = ""


@dataclass
class History:
    run: str
    t0: float  # monotonic clock of time zero
    ops: list[Op] = field(default_factory=list)

    def of(self, kind: str) -> list[Op]:
        return [o for o in self.ops if o.kind == kind]

    def longest_gap(self, kind: str, start: float, end: float) -> float:
        """Longest time within [start, end] with no successful op of `kind` completing."""
        times = sorted(o.end for o in self.of(kind) if o.outcome == "ok" and start <= o.end <= end)
        points = [start] + times + [end]
        return max((b - a for a, b in zip(points, points[1:])), default=end - start)

    def outages(self, kind: str, start: float, end: float, min_gap: float = 0.5) -> list[tuple[float, float]]:
        """Every window longer than `min_gap` with no success: the shape of the failover.

        Windows that touch (one lone success between two of them) are one outage: a
        client saw a single answer in the middle of it, not the end of it."""
        times = sorted(o.end for o in self.of(kind) if o.outcome == "ok" and start <= o.end <= end)
        points = [start] + times + [end]
        merged: list[tuple[float, float]] = []
        for a, b in ((a, b) for a, b in zip(points, points[1:]) if b - a > min_gap):
            if merged and a - merged[-1][1] <= 1e-9:
                merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        return merged


class Prober:
    """Writes and reads at `rate` per second each, through `api_url`, until stopped."""

    def __init__(self, api_url: str, client: httpx.AsyncClient, run: str, rate: float = 10.0,
                 write_timeout: float = 2.0, max_in_flight: int = 64):
        self.api = api_url
        self.client = client
        self.run = run
        self.rate = rate
        self.timeout = write_timeout
        self.grace = write_timeout + 5  # how long stop() lets requests finish before cutting them off
        self.sem = asyncio.Semaphore(max_in_flight)
        self.history = History(run, time.monotonic())
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self.attempted: set[int] = set()

    def now(self) -> float:
        return time.monotonic() - self.history.t0

    async def ensure_namespace(self) -> None:
        r = await self.client.post(f"{self.api}/api/v1/namespaces",
                                   json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        if r.status_code not in (201, 409):
            raise RuntimeError(f"cannot create namespace {NAMESPACE}: HTTP {r.status_code} {r.text[:200]}")

    def name(self, n: int) -> str:
        return f"probe-{self.run}-{n:06d}"

    async def _write(self, n: int) -> None:
        async with self.sem:
            if self._stop.is_set():
                return  # queued behind hung requests until after the stop: never sent
            self.attempted.add(n)
            start = self.now()
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": self.name(n), "labels": {"hakube.dev/probe": self.run}},
                    "data": {"n": str(n)}}
            try:
                r = await self.client.post(f"{self.api}/api/v1/namespaces/{NAMESPACE}/configmaps", json=body,
                                           timeout=self.timeout)
                outcome, detail = _classify(r)
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                # never reached a server: certainly not applied
                outcome, detail = "failed", type(e).__name__
            except httpx.HTTPError as e:
                outcome, detail = "indeterminate", type(e).__name__
            except asyncio.CancelledError:
                # cut off by stop(): it may have been sent, so it may have been applied
                self.history.ops.append(Op("write", n, start, self.now(), "indeterminate", "cancelled"))
                raise
            self.history.ops.append(Op("write", n, start, self.now(), outcome, detail))

    async def _read(self, n: int) -> None:
        async with self.sem:
            if self._stop.is_set():
                return
            start = self.now()
            try:
                # a quorum read (no resourceVersion): it needs etcd, as a real client's read does
                r = await self.client.get(f"{self.api}/api/v1/namespaces/{NAMESPACE}/configmaps",
                                          params={"limit": "1"}, timeout=self.timeout)
                outcome = "ok" if r.status_code == 200 else "failed"
                detail = "" if outcome == "ok" else f"HTTP {r.status_code}"
            except httpx.HTTPError as e:
                outcome, detail = "failed", type(e).__name__
            self.history.ops.append(Op("read", n, start, self.now(), outcome, detail))

    async def run_until_stopped(self) -> None:
        period = 1.0 / self.rate
        n = 0
        next_tick = time.monotonic()
        while not self._stop.is_set():
            n += 1
            for coro in (self._write(n), self._read(n)):
                t = asyncio.create_task(coro)
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
            next_tick += period
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))

    async def stop(self) -> None:
        """Stop probing and make the history final: the read-back must not race a write
        that is still on its way (it would look acknowledged-but-absent: a false "lost")."""
        self._stop.set()
        pending = list(self._tasks)
        if pending:
            _, still = await asyncio.wait(pending, timeout=self.grace)
            for t in still:
                t.cancel()
            await asyncio.gather(*still, return_exceptions=True)

    async def read_back(self) -> dict:
        """List every probe object of this run (paginated) and compare with the history.
        Call after stop(): the history is then final."""
        assert not any(not t.done() for t in self._tasks), "read_back() before stop() finished"
        writes = list(self.history.of("write"))
        present: set[int] = set()
        cont = None
        while True:
            params = {"labelSelector": f"hakube.dev/probe={self.run}", "limit": "500"}
            if cont:
                params["continue"] = cont
            r = await self.client.get(f"{self.api}/api/v1/namespaces/{NAMESPACE}/configmaps", params=params,
                                      timeout=30)
            r.raise_for_status()
            body = r.json()
            for item in body["items"]:
                present.add(int(item["data"]["n"]))
            cont = body["metadata"].get("continue")
            if not cont:
                break
        acked = {o.n for o in writes if o.outcome == "ok"}
        failed = {o.n for o in writes if o.outcome == "failed"}
        indeterminate = {o.n for o in writes if o.outcome == "indeterminate"}
        return {
            "attempted": len(self.attempted),
            "acknowledged": len(acked),
            "failed": len(failed),
            "indeterminate": len(indeterminate),
            "indeterminate_committed": len(indeterminate & present),
            "lost": sorted(acked - present),
            "phantom": sorted(present - self.attempted),
            "failed_but_present": sorted(failed & present),
        }

    async def cleanup(self) -> str:
        """Delete this run's probe objects once they were read back; "" when done, else a
        sentence saying what is left and how to delete it. (Housekeeping: a slow API, a
        few thousand objects on 2 busy cores, must not turn a finished run into a failure.)"""
        selector = f"hakube.dev/probe={self.run}"
        try:
            r = await self.client.delete(f"{self.api}/api/v1/namespaces/{NAMESPACE}/configmaps",
                                         params={"labelSelector": selector}, timeout=120)
            if r.status_code < 300:
                return ""
            why = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            why = f"{type(e).__name__} {e}".strip()
        return (f"the probe objects were not deleted ({why}); delete them with `kubectl -n {NAMESPACE} delete "
                f"configmaps -l {selector}`")


def _classify(r: httpx.Response) -> tuple[str, str]:
    if r.status_code == 201:
        return "ok", ""
    # 4xx: refused before anything was stored (429 included: throttled, not processed);
    # 408 is a timeout, which like a 5xx says nothing about whether etcd committed it.
    if 400 <= r.status_code < 500 and r.status_code != 408:
        return "failed", f"HTTP {r.status_code}"
    return "indeterminate", f"HTTP {r.status_code}"
