#!/usr/bin/env bash
# Installs everything hakube's tests and lab need on a fresh Debian 12 machine.
# Idempotent: re-running it installs nothing new. Run as root.
#
# Debian packages are installed with services held back (policy-rc.d): the host only needs
# the programs (validators such as `haproxy -c`, podman for the lab), not running daemons.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # real validators for rendered configuration (tests/unit/test_validators.py)
  haproxy keepalived nginx libnginx-mod-stream prometheus prometheus-alertmanager
  prometheus-blackbox-exporter
  corosync
  # the lab: machines are podman containers with systemd, built from debootstrap
  podman runc debootstrap iproute2 iptables openssh-client
  # lab faults: partitions are nftables rules on the lab bridge's ports
  nftables
  # offline Kubernetes binaries, built from Debian's source package
  golang-go rsync dpkg-dev gcc libc6-dev
  # probes and checks from this host; ping runs keepalived's majority check in unit tests
  etcd-client curl iputils-ping
  # `hakube backup` restores every snapshot into a scratch etcd here to verify it
  etcd-server
  # the chaos report is checked in headless Chromium
  chromium
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  trap '[ $created_policy = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # etcd-server's own service is not wanted: hakube only runs the binary, on loopback, to
  # verify backups. Keep it from starting at the next boot (no-op where systemd is not PID 1).
  if [[ " ${missing[*]} " == *" etcd-server "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now etcd.service >/dev/null 2>&1 || true
  fi
fi

echo "setup: installing hakube (pip, editable, with test extras)"
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
echo "setup: done"
