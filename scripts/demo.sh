#!/usr/bin/env bash
# The README's main job: on a fresh Debian 12 machine, as root, bring up an HA Kubernetes
# cluster on the local lab and show its health.
#   1. install what hakube needs (scripts/setup.sh)
#   2. build the lab's node image and the offline Kubernetes binaries (cached: once)
#   3. start 3 servers + 2 agents as lab machines (hakube lab up)
#   4. deploy over SSH: etcd, control plane, HAProxy + keepalived VIP, nodes (hakube up)
#   5. show HA health (hakube status) and where the kubeconfig is
# Run it again: every step is idempotent. Remove the lab: hakube lab down
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
hakube lab prepare
hakube lab up --servers 3 --agents 2
spec="$(hakube lab status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clusterYaml"])')"
hakube up "$spec"
hakube status "$spec" || true   # exit code 1 means degraded: the table says why
echo
echo "kubeconfig (VIP, TLS verified): $(hakube kubeconfig "$spec" | sed -n 's/^wrote \([^ ]*\).*/\1/p')"
echo "next: hakube chaos $spec crash-vip-holder --report chaos-report/"
