#!/usr/bin/env python3
"""Failover figures per architecture: each layout deployed on a fresh lab, then its
scenario repeated N times (`crash-vip-holder`, or the layout's equivalent); prints one
Markdown table row per layout: write downtime p50/p95/max, total and rejoin outage, VIP
moved, lost, phantom.

Run as root after `scripts/setup.sh`:
    python3 bench/layouts.py [--trials 5] [--layouts servers,dedicated,...]
One layout at a time (2 cores): each lab is removed before the next is made.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from pathlib import Path

import yaml

from hakube import state
from hakube.chaos.api import run_scenario
from hakube.chaos.report import summarize
from hakube.engine.deploy import up
from hakube.engine.ui import Reporter
from hakube.lab import lifecycle
from hakube.spec import load

NAME = "hkbench-layout"

# name: (what it is, lab machines, spec changes, scenario)
LAYOUTS = {
    "servers": ("keepalived + HAProxy on the 3 servers, etcd on them",
                dict(servers=3), {}, "crash-vip-holder"),
    "dedicated": ("keepalived + HAProxy on 2 load-balancer hosts, etcd on the servers",
                  dict(servers=3, loadbalancers=2), {"loadBalancer": {"placement": "dedicated"}}, "crash-vip-holder"),
    "nginx": ("keepalived + nginx on the servers", dict(servers=3), {"loadBalancer": {"provider": "nginx"}},
              "crash-vip-holder"),
    "pacemaker": ("pacemaker group (VIP + HAProxy) on the servers", dict(servers=3),
                  {"vip": {"provider": "pacemaker"}}, "crash-vip-holder"),
    "pacemaker-nginx": ("pacemaker group (VIP + nginx) on the servers", dict(servers=3),
                        {"vip": {"provider": "pacemaker"}, "loadBalancer": {"provider": "nginx"}},
                        "crash-vip-holder"),
    "agents-local": ("HAProxy on every agent at 127.0.0.1, the VIP on the servers for outside clients",
                     dict(servers=3, agents=2), {"loadBalancer": {"placement": "agents-local"}},
                     "crash-vip-holder"),
    "etcd-hosts": ("etcd on 3 hosts of its own, keepalived + HAProxy on 2 load-balancer hosts",
                   dict(servers=3, loadbalancers=2, etcd=3), {"loadBalancer": {"placement": "dedicated"}},
                   "crash-vip-holder"),
    "etcd-hosts-leader": ("the same, its etcd leader crashed",
                          dict(servers=3, loadbalancers=2, etcd=3), {"loadBalancer": {"placement": "dedicated"}},
                          "crash-etcd-leader"),
}


def spec_for(lab, changes: dict) -> Path:
    doc = yaml.safe_load(lab.cluster_yaml.read_text())
    cp = doc["spec"]["controlPlane"]
    for key, value in changes.items():
        cp[key] = {**cp.get(key, {}), **value}
    out = lab.cluster_yaml.with_name("cluster-layout.yaml")
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def fig(s: dict, f: str) -> str:
    v = s[f]
    return f"{v['p50']:.2f} / {v['p95']:.2f} / {v['max']:.2f}" if v else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--layouts", default=",".join(LAYOUTS), help=f"comma-separated, of: {', '.join(LAYOUTS)}")
    args = ap.parse_args()
    chosen = [x for x in args.layouts.split(",") if x]
    unknown = [x for x in chosen if x not in LAYOUTS]
    if unknown:
        sys.exit(f"unknown layout(s) {', '.join(unknown)}; choose from {', '.join(LAYOUTS)}")
    rows = []
    for name in chosen:
        what, machines, changes, scenario = LAYOUTS[name]
        lifecycle.down(NAME)
        shutil.rmtree(state.cluster_dir(NAME, create=False), ignore_errors=True)
        t0 = time.monotonic()
        try:
            lab = lifecycle.up(NAME, agents=machines.pop("agents", 0), **machines).lab
            loaded = load(spec_for(lab, changes))
            asyncio.run(up(loaded, ui=Reporter(quiet=True)))
            print(f"{name}: deployed in {time.monotonic() - t0:.0f} s; {args.trials} x {scenario}", flush=True)

            def on_trial(t) -> None:
                print(f"  trial {t.trial}: write {t.write_downtime_s:.2f} s (total {t.total_write_outage_s:.2f}, "
                      f"rejoin {t.rejoin_outage_s}), vip {t.vip_moved_s}, leader {t.leader_elected_s}, "
                      f"lost {t.lost}, phantom {t.phantom}: {t.verdict}", flush=True)

            s = summarize(asyncio.run(run_scenario(loaded, scenario, args.trials, NAME, on_trial=on_trial)))
            rows.append(f"| {what} | `{scenario}` | {s['passed']}/{s['trials']} | {fig(s, 'write_downtime_s')} | "
                        f"{fig(s, 'total_write_outage_s')} | {fig(s, 'rejoin_outage_s')} | "
                        f"{(s['vip_moved_s'] or {}).get('p50', '-')} | {s['lost']} | {s['phantom']} |")
        finally:
            lifecycle.down(NAME)
            shutil.rmtree(state.cluster_dir(NAME, create=False), ignore_errors=True)
    print()
    print("| layout | scenario | passed | write downtime p50 / p95 / max (s) | total write outage (s) | "
          "rejoin outage (s) | VIP moved p50 (s) | lost | phantom |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
