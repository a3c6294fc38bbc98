"""Whether hosts may leave the cluster: the decision `hakube remove` makes before it
touches anything. Pure (fixture tests: tests/unit/fixtures/steps/remove/).

A removal is refused, with the reason, when what stays would
- not keep etcd's quorum: the members that stay and are healthy now must be a majority of
  the members that stay (each removal is one membership change, and etcd needs that
  majority to commit it and every write after it);
- tolerate no failure while the cluster tolerates one now: 3 -> 2 members (2 tolerate
  nothing, quorum of 2 is 2) or 3 -> 1;
- have one apiserver, one VIP host, or no load balancer left where it has more now;
- not be a valid cluster.yaml (the spec's own rules, on the spec without those hosts);
and where hakube cannot do it safely yet (a pacemaker member: corosync's node list is
changed by hand today).

Example:
    >>> refusals(topo3, topo2, healthy={"server-1", "server-2", "server-3"}, spec_problems=[])  # doctest: +SKIP
    ['2 etcd members would tolerate no failure (3 tolerate 1 now): ...']
"""

from __future__ import annotations

from ..spec.validate import quorum, tolerated_failures
from ..topology import Topology


def refusals(now: Topology, after: Topology, healthy: set[str], spec_problems: list[str]) -> list[str]:
    """Why the hosts of `now` that `after` no longer has may not leave (empty: they may).
    `healthy`: the etcd members that answer healthy now (by host name); `spec_problems`:
    the errors of the spec without them (those the rules above say better are left out)."""
    gone = [h.name for h in now.hosts if h.name not in {x.name for x in after.hosts}]
    out: list[str] = []
    if now.datastore.type != "external" and now.etcd_hosts:
        n, m = len(now.etcd_hosts), len(after.etcd_hosts)
        staying_healthy = sorted(set(after.etcd_hosts) & healthy)
        if m == 0:
            out.append(f"no etcd member would be left (the members are {', '.join(now.etcd_hosts)})")
        elif len(staying_healthy) < quorum(m):
            down = sorted(set(after.etcd_hosts) - healthy)
            out.append(f"the {m} etcd members that stay would not keep quorum: {len(staying_healthy)} of them are "
                       f"healthy ({', '.join(down)} not), and {quorum(m)} must answer for each change; bring "
                       f"{', '.join(down)} back first")
        elif tolerated_failures(m) == 0 and tolerated_failures(n) > 0:
            out.append(f"{m} etcd member{'s' if m > 1 else ''} would tolerate no failure ({n} tolerate "
                       f"{tolerated_failures(n)} now): losing any one then stops the cluster; add a server "
                       "first (grow, then remove), or keep this one")
    if len(after.servers) < 2 <= len(now.servers):
        out.append(f"one server would carry the API alone (now {len(now.servers)})")
    if now.lb_hosts and not after.lb_hosts:
        out.append("no load balancer would be left in front of the apiservers")
    if len(after.vip_hosts) < 2 <= len(now.vip_hosts):
        out.append(f"the VIP would have one host left (now {len(now.vip_hosts)}): it could not move anywhere")
    provider = now.cluster.spec.control_plane.vip.provider
    if provider == "pacemaker" and set(gone) & set(now.vip_hosts):
        out.append("removing a pacemaker member is not done by hakube yet: corosync's node list must change on "
                   "every member together (`crm cluster remove`), which hakube does not do safely today")
    if now.distribution != "kubernetes":
        out.append(f"remove works on the kubernetes distribution, not {now.distribution}")
    if not out:
        out += [f"cluster.yaml without {', '.join(gone)} would not be valid: {p}" for p in spec_problems]
    return out
