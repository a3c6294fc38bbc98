#!/usr/bin/env python3
"""Day-2 figures: each operation of a cluster's life under the write probes, on one lab of
5 servers and 2 agents (the cluster starts with 3 servers and both agents).

    sudo python3 bench/day2.py            # lab hkbench-day2, removed afterwards
    sudo python3 bench/day2.py --keep     # keep it
    sudo python3 bench/day2.py --only rolling,reboot

In order (each starts from what the one before left):
    rolling   `up` with a new etcd election timeout, an apiserver flag and VRRP interval
    grow      `up` with server-4 and server-5 added (etcd learners, promoted one at a time)
    remove    `remove server-4 server-5` (hand-off, member removal, the others converge)
    reboot    `reboot` of every machine, one at a time
    replace   server-3 crashed with its etcd data gone; `up` with server-4 in its place
For each, plain lines: its wall time, the probes' longest write and read outage, the total
write outage, acknowledged / lost / phantom writes (lost and phantom must be 0):
    rolling_s: 61.2
    rolling_write_outage_s: 0.52 (windows over 0.5 s add up to 0.98)
    ...
The lab's node image and binaries are built first if they are not cached.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time

import yaml

from hakube import state
from hakube.chaos.around import probe_around
from hakube.engine.deploy import up
from hakube.engine.reboot import reboot
from hakube.engine.remove import remove
from hakube.engine.ui import Reporter
from hakube.lab import faults, lifecycle
from hakube.lab.ssh import run as lab_ssh
from hakube.spec import load

NAME = "hkbench-day2"
OPERATIONS = ("rolling", "grow", "remove", "reboot", "replace")
CHANGED = {"datastore": {"etcd": {"electionTimeoutMs": 1200}},
           "kubernetes": {"apiserverExtraArgs": {"event-ttl": "2h"}},
           "vip": {"advertInterval": 0.4}}


def spec_of(full, name: str, hosts: list[str], changed: bool):
    """The lab's cluster.yaml with only `hosts` (in the lab's order), and the changed settings."""
    doc = yaml.safe_load(full.read_text())
    doc["spec"]["hosts"] = [h for h in doc["spec"]["hosts"] if h["name"] in hosts]
    if changed:
        for key, value in CHANGED.items():
            section = doc["spec"]["controlPlane"] if key == "vip" else doc["spec"]
            section[key] = {**section.get(key, {}), **value}
    out = full.with_name(f"cluster-{name}.yaml")
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def measured(label: str, spec, operation) -> None:
    """Run `operation(loaded, ui)` under the probes and print its figures."""
    loaded = load(spec)
    started = time.monotonic()
    result, _ = asyncio.run(probe_around(loaded, lambda step: operation(loaded, Reporter(quiet=True, on_step=step)),
                                         name=label))
    wall = time.monotonic() - started
    print(f"{label}_s: {wall:.1f}")
    print(f"{label}_write_outage_s: {result.write_downtime_s:.2f} (windows over 0.5 s add up to "
          f"{result.total_write_outage_s:.2f})")
    print(f"{label}_read_outage_s: {result.read_downtime_s:.2f}")
    print(f"{label}_writes: {result.acknowledged} acknowledged, lost {result.lost}, phantom {result.phantom}, "
          f"indeterminate {result.indeterminate}", flush=True)
    if result.write_outages:  # where the longest window was: the step just before it
        a, b = max(result.write_outages, key=lambda w: w[1] - w[0])
        before = [e for e in result.events if e.kind == "step" and e.t <= a]
        print(f"{label}_longest_window: {b - a:.2f} s at {a:.1f} s, after "
              f"{before[-1].detail if before else 'no step'!r}", flush=True)
    if not result.ok:
        print(f"{label}_verdict: {result.verdict}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the lab afterwards")
    ap.add_argument("--only", default=",".join(OPERATIONS),
                    help=f"comma-separated operations to measure, of {', '.join(OPERATIONS)} (the others are "
                         "still done, unmeasured, where a later one needs them)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if only - set(OPERATIONS):
        ap.error(f"unknown operation(s): {', '.join(sorted(only - set(OPERATIONS)))}")

    lifecycle.down(NAME)
    shutil.rmtree(state.cluster_dir(NAME, create=False), ignore_errors=True)
    lab = lifecycle.up(NAME, servers=5, agents=2).lab
    try:
        full = lab.cluster_yaml
        three = ["server-1", "server-2", "server-3", "agent-1", "agent-2"]
        base = spec_of(full, "three", three, changed=False)
        asyncio.run(up(load(base), ui=Reporter(quiet=True)))
        rolled = spec_of(full, "rolled", three, changed=True)
        five = spec_of(full, "five", three + ["server-4", "server-5"], changed=True)

        def run_up(loaded, ui):
            return up(loaded, ui=ui)

        def step(label, spec, operation):
            if label in only:
                measured(label, spec, operation)
            else:
                asyncio.run(operation(load(spec), Reporter(quiet=True)))

        step("rolling", rolled, run_up)
        step("grow", five, run_up)
        step("remove", five, lambda loaded, ui: remove(loaded, ["server-4", "server-5"], ui=ui))
        step("reboot", rolled, lambda loaded, ui: reboot(loaded, ui=ui))
        if "replace" in only:
            # server-3 dies for good; server-4 (reset by the removal) is the new machine
            lab_ssh(lab, lab.machine("server-3"), f"rm -rf /var/lib/etcd/{NAME}", check=False)
            faults.crash(NAME, "server-3")
            replaced = spec_of(full, "replaced", ["server-1", "server-2", "server-4", "agent-1", "agent-2"],
                               changed=True)
            measured("replace", replaced, run_up)
    finally:
        if not args.keep:
            lifecycle.down(NAME)
            shutil.rmtree(state.cluster_dir(NAME, create=False), ignore_errors=True)


if __name__ == "__main__":
    main()
