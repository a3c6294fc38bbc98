#!/usr/bin/env python3
"""Benchmark: how long two agents take to join a running cluster and become Ready.

    sudo python3 bench/agents_join.py            # lab hk5-bench: 3 servers, 2 agents
    sudo python3 bench/agents_join.py --keep     # keep the lab afterwards

First `hakube up` deploys the 3 servers from a cluster.yaml without the agents (not
timed); then the timed `hakube up` of the full cluster.yaml, which adds both agents and
returns once every node is Ready (it waits for that itself; the script checks it again
through the API). The lab's node image and binaries must be built already (they are
cached; `hakube lab up` builds them).

Prints plain lines, e.g.:
    servers_up_s: 95.3
    agents_join_s: 42.1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time

import yaml

from hakube import state
from hakube.engine.deploy import up
from hakube.engine.ui import Reporter
from hakube.lab import lifecycle
from hakube.spec import load


def deploy(spec) -> tuple[float, list[str]]:
    """Run `hakube up`; its wall time and the changes it reported."""
    started = time.monotonic()
    report = asyncio.run(up(load(spec), ui=Reporter(quiet=True)))
    return time.monotonic() - started, [c for p in report.phases for c in p.changes]


def nodes_ready(lab, name: str) -> dict[str, bool]:
    kubeconfig = state.cluster_dir(name, create=False) / "kubeconfig"
    r = subprocess.run([f"{lab.kubernetes}/bin/kubectl", "--kubeconfig", str(kubeconfig), "get", "nodes",
                        "-o", "json"], capture_output=True, text=True, timeout=60, check=True)
    return {n["metadata"]["name"]: any(c["type"] == "Ready" and c["status"] == "True"
                                       for c in n["status"]["conditions"])
            for n in json.loads(r.stdout)["items"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="hk5-bench", help="lab name (created and removed by this script)")
    ap.add_argument("--keep", action="store_true", help="keep the lab afterwards")
    args = ap.parse_args()

    lifecycle.down(args.name)
    shutil.rmtree(state.cluster_dir(args.name, create=False), ignore_errors=True)
    lab = lifecycle.up(args.name, servers=3, agents=2).lab
    try:
        full = lab.cluster_yaml
        doc = yaml.safe_load(full.read_text())
        doc["spec"]["hosts"] = [h for h in doc["spec"]["hosts"] if "agent" not in h["roles"]]
        servers_only = full.with_name("cluster-servers-only.yaml")
        servers_only.write_text(yaml.safe_dump(doc, sort_keys=False))

        servers_s, _ = deploy(servers_only)
        print(f"servers_up_s: {servers_s:.1f}", flush=True)
        join_s, changed = deploy(full)
        ready = nodes_ready(lab, args.name)
        agents = sorted(n for n in ready if n.startswith("agent-"))
        if agents != ["agent-1", "agent-2"] or not all(ready.values()):
            sys.exit(f"after the agents' up, nodes are {ready}")
        print(f"agents_join_s: {join_s:.1f}")
        print(f"agents_join_changes: {len(changed)}")
        rerun_s, rerun_changed = deploy(full)
        print(f"rerun_s: {rerun_s:.1f}")
        print(f"rerun_changes: {len(rerun_changed)}")
        for c in rerun_changed:  # a re-run should change nothing: show what it did
            print(f"  rerun changed {c}")
    finally:
        if not args.keep:
            lifecycle.down(args.name)
            shutil.rmtree(state.cluster_dir(args.name, create=False), ignore_errors=True)


if __name__ == "__main__":
    main()
