"""Pure decisions about a lab: its subnet, machine addresses and every name it creates.

No side effects here, so each rule is a unit test away (tests/unit/test_lab_logic.py).
Every host object a lab owns is named from the lab's name or its subnet index, exactly,
so that `lab down` removes precisely what `lab up` created and nothing of anyone else's.

Address plan of a lab's /24 (10.213.N.0/24):
    .1        this host (the bridge's address)
    .11-.49   servers      server-1 = .11
    .51-.149  agents       agent-1  = .51
    .151-.189 loadbalancers lb-1    = .151
    .190-.198 etcd hosts    etcd-1  = .190
    .200-.249 reserved for virtual IPs (the API VIP is .200; MetalLB pools fit here too)
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

POOL = ipaddress.IPv4Network("10.213.0.0/16")
PREFIX = 24
DEFAULT_NAME = "hakube"
# Lab names become parts of container, volume and netns names: keep them short and plain.
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")

ROLE_PREFIX = {"server": "server", "agent": "agent", "loadbalancer": "lb", "etcd": "etcd"}
# First host number and how many fit, per role (see the address plan above).
ROLE_RANGE = {"server": (11, 39), "agent": (51, 99), "loadbalancer": (151, 39), "etcd": (190, 9)}
VIP_FIRST, VIP_LAST = 200, 249
HOST_NUMBER = 1


@dataclass(frozen=True)
class MachinePlan:
    name: str
    role: str
    address: ipaddress.IPv4Address


def check_name(name: str) -> str | None:
    """Why `name` is not a usable lab name, or None when it is."""
    if not NAME_RE.match(name):
        return (f"lab name {name!r} must be 1-32 lowercase letters, digits or '-', "
                "starting and ending with a letter or digit")
    return None


def subnet_count() -> int:
    return 2 ** (PREFIX - POOL.prefixlen)


def preferred_index(name: str) -> int:
    """Where a lab's subnet search starts: derived from its name, so a lab usually gets
    the same subnet each time it is created (stable addresses across down/up)."""
    digest = hashlib.sha256(name.encode()).digest()
    return 1 + int.from_bytes(digest[:4], "big") % (subnet_count() - 2)


def allocate_index(name: str, used: set[int]) -> int | None:
    """The first free subnet index at or after the name's preferred one (1..254), or None.

    Index 0 and 255 are never used: 10.213.0.0/24 and 10.213.255.0/24 look like
    network and broadcast blocks and confuse people reading addresses.
    """
    usable = subnet_count() - 2
    start = preferred_index(name)
    for i in range(usable):
        index = 1 + (start - 1 + i) % usable
        if index not in used:
            return index
    return None


def subnet(index: int) -> ipaddress.IPv4Network:
    return list(POOL.subnets(new_prefix=PREFIX))[index]


def index_of(network: ipaddress.IPv4Network) -> int | None:
    """The pool index of a /24 inside the pool, or None when outside it."""
    if network.prefixlen < PREFIX or not network.subnet_of(POOL):
        return None
    return (int(network.network_address) - int(POOL.network_address)) >> (32 - PREFIX)


def host_address(net: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    return net.network_address + HOST_NUMBER


def vip_range(net: ipaddress.IPv4Network) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    return net.network_address + VIP_FIRST, net.network_address + VIP_LAST


def api_vip(net: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    return vip_range(net)[0]


def machines(net: ipaddress.IPv4Network, servers: int, agents: int,
             loadbalancers: int, etcd: int = 0) -> list[MachinePlan]:
    """Every machine of a lab with its name and address. Raises ValueError on bad counts."""
    out: list[MachinePlan] = []
    for role, count in (("server", servers), ("agent", agents), ("loadbalancer", loadbalancers),
                        ("etcd", etcd)):
        first, limit = ROLE_RANGE[role]
        if not 0 <= count <= limit:
            raise ValueError(f"{role}s must be between 0 and {limit}, not {count}")
        for i in range(1, count + 1):
            out.append(MachinePlan(f"{ROLE_PREFIX[role]}-{i}", role,
                                   net.network_address + first + i - 1))
    if not out:
        raise ValueError("a lab needs at least one machine")
    return out


# ---- names of host objects ---------------------------------------------------------------
# Linux interface names are at most 15 characters, so they use the subnet index (unique
# among live labs on this host) instead of the lab name: "hk254-server-39" is 15.


def bridge(index: int) -> str:
    return f"hk{index}-br"


def veth(index: int, machine: str) -> str:
    name = f"hk{index}-{machine}"
    assert len(name) <= 15, name
    return name


def container(lab: str, machine: str) -> str:
    return f"hakube-{lab}-{machine}"


def netns(lab: str, machine: str) -> str:
    return f"hakube-{lab}-{machine}"


def volume(lab: str, machine: str, purpose: str) -> str:
    return f"hakube-{lab}-{machine}-{purpose}"


def nft_table(lab: str) -> str:
    return f"hakube-lab-{lab}"


def link_alias(lab: str, machine: str | None = None) -> str:
    """A description set on the lab's interfaces, so `ip link` tells whose they are."""
    return f"hakube lab {lab}" + (f" machine {machine}" if machine else "")
