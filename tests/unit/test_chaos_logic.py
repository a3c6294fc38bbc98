"""Chaos arithmetic from fixed histories: outages, classification, percentiles, timeline."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from hakube.chaos.api import applicable
from hakube.chaos.probes import History, Op, _classify
from hakube.chaos.report import percentile, summarize, timeline_svg
from hakube.chaos.runner import Event, TrialResult
from hakube.chaos.scenarios import longest_failure
from hakube.spec import load

from .conftest import FIXTURES


def history(points: list[tuple[float, str]]) -> History:
    h = History("t", 0.0)
    h.ops = [Op("write", i, t - 0.05, t, outcome) for i, (t, outcome) in enumerate(points)]
    return h


def test_longest_gap_counts_only_successes() -> None:
    h = history([(1.0, "ok"), (1.1, "ok"), (2.0, "failed"), (3.0, "indeterminate"), (4.6, "ok"), (5.0, "ok")])
    assert round(h.longest_gap("write", 0.0, 5.0), 2) == 3.5
    assert [(round(a, 2), round(b, 2)) for a, b in h.outages("write", 0.0, 5.0, min_gap=0.9)] == [(0.0, 1.0), (1.1, 4.6)]


def test_no_success_at_all_is_the_whole_window() -> None:
    assert history([(1.0, "failed")]).longest_gap("write", 0.0, 7.0) == 7.0


def test_classification_of_write_answers() -> None:
    req = httpx.Request("POST", "https://x")
    assert _classify(httpx.Response(201, request=req)) == ("ok", "")
    assert _classify(httpx.Response(409, request=req))[0] == "failed"  # rejected: not applied
    assert _classify(httpx.Response(500, request=req))[0] == "indeterminate"  # etcd may commit later
    assert _classify(httpx.Response(504, request=req))[0] == "indeterminate"
    assert _classify(httpx.Response(429, request=req))[0] == "failed"  # throttled, not processed
    assert _classify(httpx.Response(408, request=req))[0] == "indeterminate"


def test_percentiles_are_nearest_rank() -> None:
    v = [float(i) for i in range(1, 11)]
    assert (percentile(v, 50), percentile(v, 95), percentile(v, 100)) == (5.0, 10.0, 10.0)
    assert percentile([3.0], 95) == 3.0


def trial(n: int, downtime: float, lost: int = 0) -> TrialResult:
    return TrialResult(scenario="crash-vip-holder", trial=n, ok=lost == 0, verdict="x", lost=lost, phantom=0,
                       indeterminate=1, failed_but_present=0, acknowledged=100, attempted=120,
                       write_downtime_s=downtime, read_downtime_s=downtime, vip_moved_s=3.0, leader_elected_s=1.0,
                       backend_down_s=2.0, recovered_s=20.0, fault_at_s=3.0,
                       events=[Event(3.0, "fault", "crash server-1"), Event(6.0, "vip-moved", "VIP on server-2")],
                       write_outages=[(3.0, 3.0 + downtime)],
                       ops=[("write", 1.0, 1.1, "ok", 1), ("write", 3.5, 5.5, "indeterminate", 2),
                            ("read", 4.0, 4.1, "failed", 2)])


def test_summary_gives_the_distribution_and_the_verdict() -> None:
    s = summarize([trial(1, 2.0), trial(2, 3.0), trial(3, 4.0)])
    assert s["write_downtime_s"] == {"p50": 3.0, "p95": 4.0, "max": 4.0}
    assert s["verdict"] == "passed" and s["lost"] == 0
    assert summarize([trial(1, 2.0, lost=1)])["verdict"] == "FAILED"


def test_timeline_marks_every_event_and_outcome() -> None:
    svg = timeline_svg(trial(1, 3.0))
    assert svg.startswith("<svg") and 'id="timeline"' in svg
    assert "fault (3.00s)" in svg and "vip-moved (6.00s)" in svg
    assert "#2e9d48" in svg and "#f0a020" in svg and "#d6453d" in svg  # ok, indeterminate, failed
    assert "no successful write for 3.00 s" in svg


def test_stop_makes_the_history_final_before_read_back() -> None:
    """A write queued behind hung requests is never sent after stop(), and one cut off
    mid-flight is recorded as indeterminate, so read-back cannot see a false "lost"."""
    import asyncio

    from hakube.chaos.probes import Prober

    async def scenario():
        # a real peer that accepts connections and never answers, as a frozen machine does
        async def silent(reader, writer):
            await asyncio.sleep(60)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with server, httpx.AsyncClient() as client:
            p = Prober(url, client, "t", rate=50, write_timeout=60, max_in_flight=2)
            p.grace = 0.2  # stop() waits only a moment before cutting requests off
            task = asyncio.create_task(p.run_until_stopped())
            await asyncio.sleep(0.3)
            await p.stop()
            task.cancel()
            server.close()
        return p

    p = asyncio.run(scenario())
    writes = p.history.of("write")
    assert writes and all(o.outcome == "indeterminate" and o.detail == "cancelled" for o in writes)
    assert {o.n for o in writes} == p.attempted, "only writes that were sent count as attempted"
    assert len(p.attempted) <= 2, "queued writes were never sent"


def test_windows_that_touch_are_one_outage() -> None:
    """A lone success in the middle of an outage does not split it in two (issue 16: 14.60-15.90
    and 15.90-16.57 s were reported as two windows; a client saw one)."""
    h = history([(14.5, "ok"), (14.6, "ok"), (15.9, "ok"), (16.57, "ok"), (16.6, "ok"), (17.0, "ok")])
    assert [(round(a, 2), round(b, 2)) for a, b in h.outages("write", 14.5, 17.0)] == [(14.6, 16.57)]


def test_windows_apart_stay_apart() -> None:
    h = history([(1.0, "ok"), (2.5, "ok"), (2.6, "ok"), (4.0, "ok")])
    assert [(round(a, 2), round(b, 2)) for a, b in h.outages("write", 1.0, 4.0)] == [(1.0, 2.5), (2.6, 4.0)]


def test_summary_and_timeline_carry_the_rejoin() -> None:
    t = trial(1, 1.5)
    t.total_write_outage_s, t.rejoin_outage_s, t.undone_at_s = 2.7, 1.2, 15.0
    t.write_outages = [(3.0, 4.5), (15.2, 16.4)]
    s = summarize([t])
    assert s["total_write_outage_s"]["max"] == 2.7 and s["rejoin_outage_s"]["max"] == 1.2
    svg = timeline_svg(t)
    assert "rejoin: no successful write for 1.20 s" in svg
    assert "rejoin: no successful write for 1.50 s" not in svg  # the failover window is not the rejoin


APPLY_SPECS = sorted(p.stem for p in (FIXTURES / "specs").glob("*.yaml"))


@pytest.mark.parametrize("spec", APPLY_SPECS)
def test_which_scenarios_apply_matches_fixture(spec: str) -> None:
    """Per layout, each scenario applies or says why not (golden: fixtures/chaos/applies/)."""
    got = {r["scenario"]: "applies" if r["applies"] else r["why"]
           for r in applicable(load(FIXTURES / "specs" / f"{spec}.yaml"))}
    text = json.dumps(got, indent=2, sort_keys=True) + "\n"
    golden = FIXTURES / "chaos" / "applies" / f"{spec}.json"
    if os.environ.get("HAKUBE_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"{golden} is missing: regenerate with HAKUBE_UPDATE_GOLDEN=1 and review"
    assert text == golden.read_text()


def test_which_scenarios_apply_follows_the_topology() -> None:
    def table(spec: str) -> dict[str, bool]:
        return {r["scenario"]: r["applies"] for r in applicable(load(FIXTURES / "specs" / f"{spec}.yaml"))}

    stacked = table("ha3")  # etcd on the servers, the VIP among them
    only_elsewhere = ("crash-lb-host", "crash-two-servers", "crash-server-agents-local")
    assert all(v for k, v in stacked.items() if k not in only_elsewhere)
    assert not any(stacked[k] for k in only_elsewhere)
    dedicated = table("nginx-dedicated")  # the VIP on load-balancer hosts, etcd on the servers
    assert dedicated["crash-vip-holder"] and dedicated["crash-lb-host"] and dedicated["crash-etcd-leader"]
    assert not dedicated["crash-vip-holder-follower"] and dedicated["partition-server"]
    split = table("etcd-hosts")  # etcd on hosts of its own: two servers may go
    assert split["crash-two-servers"] and split["crash-etcd-leader"] and split["crash-lb-host"]
    assert not split["lose-quorum"] and not split["partition-server"]
    existing = table("existing-etcd")  # hakube does not run this etcd: nothing to crash in it
    assert existing["crash-two-servers"] and not existing["crash-etcd-leader"]
    local = table("agents-local")  # proxies on the agents
    assert not local["stop-lb-on-vip-holder"] and local["crash-agent"] and local["crash-server-agents-local"]
    reasons = {r["scenario"]: r["why"] for r in applicable(load(FIXTURES / "specs" / "nginx-dedicated.yaml"))}
    assert "etcd leader" in reasons["crash-vip-holder-follower"]


def test_longest_failure_runs_from_the_first_failure_to_the_next_success() -> None:
    assert longest_failure([]) == 0.0
    assert longest_failure([(0.0, True), (0.2, True)]) == 0.0
    # two windows: 0.4 -> 1.0 (0.6 s) and 1.4 -> 1.6 (0.2 s)
    samples = [(0.0, True), (0.4, False), (0.6, False), (1.0, True), (1.4, False), (1.6, True)]
    assert round(longest_failure(samples), 3) == 0.6
    # still failing at the end: counted to the last sample, not dropped
    assert round(longest_failure([(0.0, True), (0.5, False), (2.5, False)]), 3) == 2.0
