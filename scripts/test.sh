#!/usr/bin/env bash
# The README's test command: set up this machine, then run every test tier.
#   unit: pure logic and the real config validators (no root, seconds)
#   lab:  real machines on this host (root; builds the node image and the offline
#         Kubernetes binaries once, cached under /var/cache/hakube)
# Extra arguments go to pytest, e.g. scripts/test.sh -k keepalived
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "== unit tests"
python3 -m pytest -m "not lab" -q "$@"
if [ "$(id -u)" != 0 ]; then
  echo "== lab tests skipped: they need root (real machines as podman containers)"
  exit 0
fi
echo "== preparing the lab (node image, offline Kubernetes binaries; cached)"
hakube lab prepare
echo "== lab tests"
# the slowest tests are listed at the end (with the time per module): the budget stays visible
python3 -m pytest -m lab -q -p no:cacheprovider --durations=15 "$@"
