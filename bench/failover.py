#!/usr/bin/env python3
"""Failover figures: `crash-vip-holder` (the VIP holder is also the etcd leader, crashed
for real) repeated N times on a fresh lab cluster; prints p50/p95/max of the write and
read downtime, VIP move, etcd election, backend-down and recovery times, and the lost /
phantom counts (both must be 0).

Run as root after `scripts/setup.sh`:
    python3 bench/failover.py [--trials 10] [--scenario crash-vip-holder] [--report DIR]
Prints plain `name: value` lines, then removes the lab it made.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil

from hakube import state
from hakube.chaos.api import run_scenario
from hakube.chaos.report import FIGURES, summarize, write_html
from hakube.engine.deploy import up
from hakube.engine.ui import Reporter
from hakube.lab import lifecycle
from hakube.spec import load

NAME = "hkbench-failover"


def tuned(path, args):
    """A copy of the lab's cluster.yaml with the timers given on the command line."""
    import yaml

    doc = yaml.safe_load(path.read_text())
    cp, ds = doc["spec"]["controlPlane"], doc["spec"].setdefault("datastore", {})
    if args.advert_interval is not None:
        cp.setdefault("vip", {})["advertInterval"] = args.advert_interval
    if args.lb_check_ms is not None:
        cp.setdefault("loadBalancer", {})["checkIntervalMs"] = args.lb_check_ms
    if args.etcd_election_ms is not None:
        ds.setdefault("etcd", {})["electionTimeoutMs"] = args.etcd_election_ms
    if args.etcd_heartbeat_ms is not None:
        ds.setdefault("etcd", {})["heartbeatIntervalMs"] = args.etcd_heartbeat_ms
    out = path.with_name("cluster-bench.yaml")
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def settings(loaded) -> str:
    s = loaded.cluster.spec
    return (f"vrrp advert {s.control_plane.vip.advert_interval} s, track script every "
            f"{s.control_plane.vip.check_interval} s fall {s.control_plane.vip.check_fall}, haproxy check "
            f"{s.control_plane.load_balancer.check_interval_ms} ms fall {s.control_plane.load_balancer.check_fall}, "
            f"connect timeout {s.control_plane.load_balancer.connect_timeout_ms} ms, etcd heartbeat "
            f"{s.datastore.etcd.heartbeat_interval_ms} ms election {s.datastore.etcd.election_timeout_ms} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--scenario", default="crash-vip-holder")
    ap.add_argument("--agents", type=int, default=0)
    ap.add_argument("--report", default=None, help="also write the HTML report here")
    ap.add_argument("--keep", action="store_true", help="keep the lab afterwards")
    ap.add_argument("--lab", default=None, help="use this existing lab (it is redeployed with the settings "
                                                "given, and kept) instead of making a fresh one")
    ap.add_argument("--advert-interval", type=float, default=None, help="spec.controlPlane.vip.advertInterval")
    ap.add_argument("--lb-check-ms", type=int, default=None, help="spec.controlPlane.loadBalancer.checkIntervalMs")
    ap.add_argument("--etcd-election-ms", type=int, default=None, help="spec.datastore.etcd.electionTimeoutMs")
    ap.add_argument("--etcd-heartbeat-ms", type=int, default=None, help="spec.datastore.etcd.heartbeatIntervalMs")
    args = ap.parse_args()
    name = args.lab or NAME
    if args.lab:
        args.keep = True
    else:
        lifecycle.down(NAME)
        shutil.rmtree(state.cluster_dir(NAME, create=False), ignore_errors=True)
    lab = lifecycle.up(name, servers=3, agents=args.agents).lab if not args.lab else lifecycle.labstate.require(name)
    try:
        spec_path = tuned(lab.cluster_yaml, args)
        loaded = load(spec_path)
        asyncio.run(up(loaded, ui=Reporter(quiet=True)))
        print(f"settings: {settings(loaded)}", flush=True)

        def on_trial(t) -> None:
            print(f"trial {t.trial}: write {t.write_downtime_s:.2f} s (total {t.total_write_outage_s:.2f} s, "
                  f"rejoin {t.rejoin_outage_s} s), read {t.read_downtime_s:.2f} s, "
                  f"vip {t.vip_moved_s} s, leader {t.leader_elected_s} s, lost {t.lost}, phantom {t.phantom}",
                  flush=True)

        trials = asyncio.run(run_scenario(loaded, args.scenario, args.trials, name, on_trial=on_trial))
        s = summarize(trials)
        print(f"scenario: {s['scenario']}")
        print(f"trials: {s['trials']} ({s['passed']} passed)")
        for f in FIGURES:
            v = s[f]
            if v:
                print(f"{f}: p50 {v['p50']:.2f}  p95 {v['p95']:.2f}  max {v['max']:.2f}")
        print(f"lost: {s['lost']}")
        print(f"phantom: {s['phantom']}")
        print(f"indeterminate: {s['indeterminate']}")
        if args.report:
            print(f"report: {write_html(trials, __import__('pathlib').Path(args.report))}")
    finally:
        if not args.keep:
            lifecycle.down(NAME)
            shutil.rmtree(state.cluster_dir(NAME, create=False), ignore_errors=True)


if __name__ == "__main__":
    main()
