"""The lab network on this host: a bridge, and per machine a named netns with a veth.

Each machine's network namespace is created by the lab (`ip netns add`) and handed to
podman (`--network ns:/run/netns/...`), instead of letting podman create one per start.
The machine's NIC therefore exists, with its address, BEFORE systemd boots: services
bound to the node address (etcd, the apiserver) start cleanly after every reboot or
crash, as on a VM. The host end of the veth is the machine's "cable": it is down while
the machine is off or crashed, so the netns kernel cannot answer ARP or pings for a
dead machine.

No default route, no NAT, and this host's net.ipv4.ip_forward is never touched: the
lab's traffic cannot leave this machine. Podman networks are not used because they add
NAT and turn ip_forward on.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from .errors import LabError
from .labstate import Lab, Machine
from . import plan
from .plan import link_alias
from .proc import run

NETNS_DIR = Path("/run/netns")


def ip_forward() -> str:
    """This host's net.ipv4.ip_forward ("0" is what the lab requires and keeps)."""
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()


def link(name: str, netns: str | None = None) -> dict | None:
    """`ip -j link show NAME` as a dict, or None when there is no such interface."""
    cmd = ["ip", *(["-n", netns] if netns else []), "-j", "-d", "link", "show", "dev", name]
    res = run(cmd, check=False)
    if res.returncode != 0:
        return None
    data = json.loads(res.stdout or "[]")
    return data[0] if data else None


def addresses(name: str, netns: str | None = None) -> list[str]:
    """The IPv4 addresses (CIDR form) on interface `name`."""
    cmd = ["ip", *(["-n", netns] if netns else []), "-j", "-4", "addr", "show", "dev", name]
    res = run(cmd, check=False)
    if res.returncode != 0:
        return []
    return [f"{a['local']}/{a['prefixlen']}" for i in json.loads(res.stdout or "[]")
            for a in i.get("addr_info", [])]


def used_subnet_indexes() -> set[int]:
    """Pool indexes of /24s in use by any address on this host (any lab, any user)."""
    used = set()
    for iface in json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]"):
        for a in iface.get("addr_info", []):
            net = ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}").network
            for sub in (net.subnets(new_prefix=plan.PREFIX) if net.prefixlen < plan.PREFIX
                        else [net.supernet(new_prefix=plan.PREFIX)]):
                idx = plan.index_of(sub)
                if idx is not None:
                    used.add(idx)
    return used


# ---- the bridge ----------------------------------------------------------------------------


def ensure_bridge(lab: Lab) -> list[str]:
    """Create the lab's bridge with this host's address on it; return what changed."""
    changes = []
    if link(lab.bridge) is None:
        # no STP (no loops here, and STP would hold new ports back for 30 s); no multicast
        # snooping, so VRRP multicast reaches every port without an IGMP querier
        run(["ip", "link", "add", lab.bridge, "type", "bridge", "stp_state", "0",
             "mcast_snooping", "0"])
        run(["ip", "link", "set", lab.bridge, "alias", link_alias(lab.name)])
        _no_ipv6(lab.bridge)
        changes.append(f"created bridge {lab.bridge}")
    cidr = f"{lab.host_address}/{lab.subnet.prefixlen}"
    if cidr not in addresses(lab.bridge):
        run(["ip", "addr", "add", cidr, "dev", lab.bridge])
        changes.append(f"added {cidr} to {lab.bridge}")
    if "UP" not in (link(lab.bridge) or {}).get("flags", []):
        run(["ip", "link", "set", lab.bridge, "up"])
        changes.append(f"set {lab.bridge} up")
    return changes


def remove_bridge(lab: Lab) -> list[str]:
    if link(lab.bridge) is None:
        return []
    info = link(lab.bridge) or {}
    if info.get("ifalias") not in (None, link_alias(lab.name)):
        raise LabError(f"interface {lab.bridge} belongs to {info.get('ifalias')!r}, not lab "
                       f"{lab.name!r}; not removing it")
    run(["ip", "link", "del", lab.bridge])
    return [f"removed bridge {lab.bridge} and its address {lab.host_address}"]


def _no_ipv6(iface: str) -> None:
    # The host side of the lab needs no IPv6: no router solicitations, no MLD reports.
    p = Path(f"/proc/sys/net/ipv6/conf/{iface}/disable_ipv6")
    if p.exists():
        p.write_text("1")


# ---- a machine's NIC -----------------------------------------------------------------------


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def ensure_nic(lab: Lab, m: Machine) -> list[str]:
    """The machine's netns, its veth (eth0 inside, a bridge port outside) and address.

    The host end is left as it is (down when new): `cable()` plugs it in when the
    machine runs.
    """
    changes = []
    if not netns_exists(m.netns):
        run(["ip", "netns", "add", m.netns])
        changes.append(f"created netns {m.netns}")
    if link(m.veth) is None:
        if link("eth0", m.netns) is not None:  # a leftover peer whose host end was lost
            run(["ip", "-n", m.netns, "link", "del", "eth0"])
        run(["ip", "link", "add", m.veth, "type", "veth", "peer", "name", "eth0",
             "netns", m.netns])
        run(["ip", "link", "set", m.veth, "master", lab.bridge])
        run(["ip", "link", "set", m.veth, "alias", link_alias(lab.name, m.name)])
        _no_ipv6(m.veth)
        changes.append(f"created veth {m.veth} <-> {m.name}:eth0")
    cidr = f"{m.address}/{lab.subnet.prefixlen}"
    if cidr not in addresses("eth0", m.netns):
        run(["ip", "-n", m.netns, "addr", "add", cidr, "dev", "eth0"])
        changes.append(f"added {cidr} to {m.name}:eth0")
    for iface in ("lo", "eth0"):
        if "UP" not in (link(iface, m.netns) or {}).get("flags", []):
            run(["ip", "-n", m.netns, "link", "set", iface, "up"])
    return changes


def cable(m: Machine, plugged: bool) -> bool:
    """Plug (link up) or unplug (link down) the machine's bridge port; True if it changed.

    Unplugged, nothing reaches the machine's netns and nothing leaves it: that is what a
    powered-off or crashed machine looks like from the network.
    """
    info = link(m.veth)
    if info is None:
        raise LabError(f"{m.name}'s interface {m.veth} is missing; run `hakube lab up` to repair")
    up = "UP" in info.get("flags", [])
    if up == plugged:
        return False
    run(["ip", "link", "set", m.veth, "up" if plugged else "down"])
    return True


def is_plugged(m: Machine) -> bool:
    info = link(m.veth)
    return info is not None and "UP" in info.get("flags", [])


def remove_nic(m: Machine) -> list[str]:
    changes = []
    if link(m.veth) is not None:
        run(["ip", "link", "del", m.veth])
        changes.append(f"removed veth {m.veth}")
    if netns_exists(m.netns):
        run(["ip", "netns", "del", m.netns])
        changes.append(f"removed netns {m.netns}")
    return changes
