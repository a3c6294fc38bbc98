#!/usr/bin/env python3
"""Benchmark of the lab: cold and warm `hakube lab up`, and the machines' idle memory.

    sudo python3 bench/lab_up.py               # measures cold when the caches are missing
    sudo python3 bench/lab_up.py --skip-cold   # never builds; prints the recorded cold build

Cold means the node image and the Kubernetes binaries are built first. Those caches are
shared (other labs run on the same image), so this script never deletes them: when they
exist, the cold figures printed are the ones each build recorded when it ran (its timing
record), and the warm figures are measured now. Memory is read from each machine's cgroup
after the machines have been idle for --settle seconds: `usage` counts page cache too,
`working set` subtracts inactive file cache (what kubelet reports).
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import time

from hakube.lab import binaries, image, labstate, lifecycle, machines

MiB = 1024 * 1024


def lab_cli(*args: str) -> float:
    """Run `hakube lab ARGS` as a user would; return its wall time in seconds."""
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "hakube.lab", *args], capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if res.returncode != 0:
        sys.exit(f"hakube lab {' '.join(args)} failed:\n{res.stdout}{res.stderr}")
    return elapsed


def recorded_cold() -> dict:
    """The cold build timings the image and binaries builds wrote, if they exist."""
    out = {}
    rec = image.record_path(image.name())
    if rec.exists():
        data = json.loads(rec.read_text())
        out["image"] = {"seconds": data["seconds"], "builtAt": data["builtAt"], "phases": data["phases"]}
    k8s = binaries.cached()
    if k8s:
        data = k8s.build_record
        out["binaries"] = {"seconds": data["seconds"], "builtAt": data["builtAt"], "phases": data["phases"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-cold", action="store_true",
                    help="do not build; print the cold build as recorded by the caches")
    ap.add_argument("--settle", type=float, default=30, help="idle seconds before reading memory")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args()

    figures: dict = {}
    cached = image.exists(image.name()) and binaries.cached() is not None
    if not cached:
        if args.skip_cold:
            sys.exit("caches are missing: run without --skip-cold (or `hakube lab prepare`) first")
        started = time.monotonic()
        lifecycle.prepare()
        figures["cold_build_measured_s"] = round(time.monotonic() - started, 1)
    figures["cold_build_recorded"] = recorded_cold()

    name = f"hkbench-{secrets.token_hex(3)}"
    try:
        figures["warm_up_s"] = round(lab_cli("up", "--name", name, "--servers", "3", "--agents", "2"), 1)
        figures["second_up_s"] = round(lab_cli("up", "--name", name, "--servers", "3", "--agents", "2"), 1)
        time.sleep(args.settle)
        lab = labstate.require(name)
        mem = {m.name: machines.memory(m) for m in lab.machines}
        figures["idle_memory"] = mem
    finally:
        figures["down_s"] = round(lab_cli("down", "--name", name), 1)

    rec = figures["cold_build_recorded"]
    print("hakube lab benchmark (3 servers + 2 agents)")
    if "cold_build_measured_s" in figures:
        print(f"  cold build (image + binaries), measured now: {figures['cold_build_measured_s']:7.1f} s")
    for what in ("image", "binaries"):
        if what in rec:
            phases = ", ".join(f"{k} {v:.0f} s" for k, v in rec[what]["phases"].items())
            print(f"  cold {what:8} build as recorded {rec[what]['builtAt']}: "
                  f"{rec[what]['seconds']:7.1f} s ({phases})")
    if "image" in rec and "binaries" in rec:
        total = rec["image"]["seconds"] + rec["binaries"]["seconds"] + figures["warm_up_s"]
        print(f"  cold lab up = image + binaries + warm up:            {total:7.1f} s")
    print(f"  warm lab up (machines created, booted, SSH + systemd ready): {figures['warm_up_s']:5.1f} s")
    print(f"  second lab up (nothing to change):                            {figures['second_up_s']:5.1f} s")
    print(f"  lab down:                                                     {figures['down_s']:5.1f} s")
    print(f"  idle memory after {args.settle:.0f} s (cgroup):      usage   working set")
    tot_u = tot_w = 0
    for m, v in figures["idle_memory"].items():
        if v:
            tot_u += v["usage"]
            tot_w += v["working_set"]
            print(f"    {m:10} {v['usage'] / MiB:24.1f} MiB {v['working_set'] / MiB:8.1f} MiB")
    print(f"    {'total':10} {tot_u / MiB:24.1f} MiB {tot_w / MiB:8.1f} MiB")
    if args.json:
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
