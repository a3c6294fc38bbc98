"""The decisions of `hakube reboot`, before each machine goes down: in what order the
machines reboot, and whether the next one may go now. Pure (tests/unit/test_rebooting.py).

Order: the spec's order, except that the host holding the VIP and the host whose etcd
member leads go last. Every other reboot then leaves both where they are, so the VIP moves
once and leadership is handed over once, instead of at every step.

A reboot is refused, before the machine goes down, with the reason, when while it is down
- etcd would lose quorum: the members other than this one that answer healthy now must be
  a quorum of all members (a member rebooting still counts in the membership);
- nothing else would serve: no other apiserver, no other load balancer, no other host for
  the VIP (a one-server cluster cannot be rebooted without an outage; hakube will not
  pretend it can);
- or the distribution is not the one whose hand-off hakube knows (k3s runs its own etcd
  and apiserver in one process).
The check runs again before every machine, on what etcd says then: a member that did not
come back stops the reboot of the next one.

Example:
    >>> refusals(topo3, "server-2", healthy={"server-1", "server-2"})  # doctest: +SKIP
    ['etcd would lose quorum while server-2 reboots: 1 of the other members answers healthy ...']
"""

from __future__ import annotations

from ..spec.validate import quorum
from ..topology import Topology


def order(topo: Topology, hosts: list[str], vip_holder: str | None, leader: str | None) -> list[str]:
    """`hosts` (names of `topo`) in the order they reboot: spec order, the etcd leader
    second to last and the VIP holder last (see the module docstring)."""
    spec = [h.name for h in topo.hosts if h.name in hosts]
    return sorted(spec, key=lambda h: (h == vip_holder, h == leader))


def refusals(topo: Topology, host: str, healthy: set[str]) -> list[str]:
    """Why `host` may not reboot now (empty: it may). `healthy`: the etcd members (by host
    name) that answer healthy now."""
    h = topo.host(host)
    out: list[str] = []
    if topo.distribution != "kubernetes":
        out.append(f"reboot works on the kubernetes distribution, not {topo.distribution}")
    if topo.datastore.type != "external" and host in topo.etcd_hosts:
        n = len(topo.etcd_hosts)
        others = sorted(set(topo.etcd_hosts) - {host} & healthy)
        if len(others) < quorum(n):
            down = sorted(set(topo.etcd_hosts) - {host} - healthy)
            out.append(f"etcd would lose quorum while {host} reboots: {len(others)} of the other members answer "
                       f"healthy ({', '.join(down)} not) and {quorum(n)} of {n} must; bring "
                       f"{', '.join(down)} back first (`hakube status`)")
    # (a proxy on every agent serves that agent alone: it is not shared, so not counted)
    shared_lbs = () if topo.cluster.spec.control_plane.load_balancer.placement == "agents-local" else topo.lb_hosts
    for members, what in ((topo.servers, "apiserver"), (shared_lbs, "load balancer"),
                          (topo.vip_hosts, "host for the VIP")):
        if host in members and len(members) < 2:
            out.append(f"{host} is the only {what}: the API would be down while it reboots; "
                       f"reboot it by hand when an outage is acceptable")
    if not out and not h.roles:
        out.append(f"{host} has no role in the cluster")
    return out
