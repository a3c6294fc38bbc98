#!/usr/bin/env python3
"""Deploy figures on the local lab: cold `hakube up` of 3 servers (from bare machines to a
verified HA control plane) and the no-change re-run (median of several).

Run as root after `scripts/setup.sh`: python3 bench/deploy.py [--reruns 5] [--agents 0]
Prints plain `name: value` lines, then removes the lab it made.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import time

from hakube import state
from hakube.engine.deploy import up
from hakube.engine.ui import Reporter
from hakube.lab import lifecycle
from hakube.spec import load

NAME = "hkbench-deploy"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reruns", type=int, default=5)
    ap.add_argument("--agents", type=int, default=0)
    args = ap.parse_args()
    lifecycle.down(NAME)
    shutil.rmtree(state.cluster_dir(NAME, create=False), ignore_errors=True)
    lab = lifecycle.up(NAME, servers=3, agents=args.agents).lab
    try:
        loaded = load(lab.cluster_yaml)
        t = time.monotonic()
        report = asyncio.run(up(loaded, ui=Reporter(quiet=True)))
        cold = time.monotonic() - t
        print(f"cold_deploy_s: {cold:.1f}  # 3 servers{f' + {args.agents} agents' if args.agents else ''}, "
              f"{report.changed} changes")
        for p in report.phases:
            print(f"  phase_{p.name.replace(' ', '_')}_s: {p.seconds:.1f}")
        times = []
        for _ in range(args.reruns):
            t = time.monotonic()
            r = asyncio.run(up(loaded, ui=Reporter(quiet=True)))
            times.append(time.monotonic() - t)
            assert r.changed == 0, f"a re-run changed {r.changed} things"
        print(f"no_change_rerun_s: {statistics.median(times):.1f}  # median of {len(times)}, "
              f"min {min(times):.1f}, max {max(times):.1f}")
    finally:
        lifecycle.down(NAME)
        shutil.rmtree(state.cluster_dir(NAME, create=False), ignore_errors=True)


if __name__ == "__main__":
    main()
