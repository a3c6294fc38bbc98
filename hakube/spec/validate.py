"""Rules that relate fields to each other. Each returns problems; none raises.

`validate()` runs every rule and returns all problems (errors and warnings), so that a user
fixes a spec in one round instead of one error at a time.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from pathlib import Path
from typing import Iterator

from .model import Cluster
from .problems import Problem


def validate(c: Cluster, base: Path = Path(".")) -> list[Problem]:
    out: list[Problem] = []
    for rule in RULES:
        out.extend(rule(c, base))
    return out


def quorum(servers: int) -> int:
    return servers // 2 + 1


def tolerated_failures(servers: int) -> int:
    return (servers - 1) // 2


def _hosts(c: Cluster) -> Iterator[tuple[int, object]]:
    return enumerate(c.spec.hosts)


def unique_hosts(c: Cluster, base: Path) -> Iterator[Problem]:
    for attr in ("name", "address"):
        counts = Counter(getattr(h, attr) for h in c.spec.hosts)
        for i, h in _hosts(c):
            v = getattr(h, attr)
            if counts[v] > 1:
                first = next(j for j, o in _hosts(c) if getattr(o, attr) == v)
                if i != first:
                    yield Problem(f"spec.hosts[{i}].{attr}",
                                  f"{v} is used by spec.hosts[{first}] too",
                                  f"give every host its own {attr}")


def server_count(c: Cluster, base: Path) -> Iterator[Problem]:
    n = len(c.servers)
    if n == 0:
        yield Problem("spec.hosts", "no host has the role 'server'",
                      "give 3 hosts (or 1 for a non-HA test) the role server")
        return
    if n == 2:
        msg = ("2 servers tolerate no failure: losing either one loses etcd quorum "
               "(quorum of 2 is 2)")
        if c.spec.control_plane.allow_two_servers:
            yield Problem("spec.hosts", msg, "use 3 servers", severity="warning")
        else:
            yield Problem("spec.hosts", msg,
                          "use 3 servers, or set spec.controlPlane.allowTwoServers: true")
    elif n % 2 == 0:
        yield Problem("spec.hosts",
                      f"{n} servers tolerate {tolerated_failures(n)} failure(s), no more than "
                      f"{n - 1} would; the extra server only adds load",
                      f"use {n - 1} or {n + 1} servers", severity="warning")
    elif n == 1:
        yield Problem("spec.hosts", "1 server is not highly available: it tolerates no failure",
                      "use 3 servers for HA", severity="warning")


def vip_placement(c: Cluster, base: Path) -> Iterator[Problem]:
    cp = c.spec.control_plane
    vip = cp.endpoint.vip
    addrs = {h.address: i for i, h in _hosts(c)}
    if vip in addrs:
        if cp.vip.provider != "none":
            yield Problem("spec.controlPlane.endpoint.vip",
                          f"{vip} is the address of spec.hosts[{addrs[vip]}]",
                          "pick a free address in the hosts' network for the VIP")
        elif not any(c.spec.hosts[addrs[vip]].has(r) for r in ("loadbalancer",)):
            yield Problem("spec.controlPlane.endpoint.vip",
                          f"{vip} is a single host's address: every client depends on that host",
                          "point the endpoint at an external load balancer or use a VIP provider",
                          severity="warning")
    if cp.vip.provider in ("keepalived", "pacemaker", "kube-vip"):
        if vip not in c.spec.network.node_cidr:
            yield Problem("spec.controlPlane.endpoint.vip",
                          f"{vip} is outside the hosts' network {c.spec.network.node_cidr}: "
                          "a VRRP/ARP address must be in the subnet of the hosts that carry it",
                          f"pick a free address in {c.spec.network.node_cidr}")
        elif vip in (c.spec.network.node_cidr.network_address,
                     c.spec.network.node_cidr.broadcast_address):
            yield Problem("spec.controlPlane.endpoint.vip",
                          f"{vip} is the network or broadcast address of {c.spec.network.node_cidr}",
                          "pick a host address in the network")


def hosts_in_node_network(c: Cluster, base: Path) -> Iterator[Problem]:
    net = c.spec.network.node_cidr
    for i, h in _hosts(c):
        if h.address not in net:
            yield Problem(f"spec.hosts[{i}].address", f"{h.address} is outside spec.network.nodeCIDR {net}",
                          "fix the address, or widen spec.network.nodeCIDR")


def networks_disjoint(c: Cluster, base: Path) -> Iterator[Problem]:
    n = c.spec.network
    nets = {"spec.network.podCIDR": n.pod_cidr, "spec.network.serviceCIDR": n.service_cidr,
            "spec.network.nodeCIDR": n.node_cidr}
    names = list(nets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if nets[a].overlaps(nets[b]):
                yield Problem(a, f"{nets[a]} overlaps {b} {nets[b]}",
                              "pod, service and host networks must not overlap: pick disjoint ranges")
    if n.pod_cidr.prefixlen > n.node_pod_cidr_size:
        yield Problem("spec.network.nodePodCIDRSize",
                      f"/{n.node_pod_cidr_size} per node does not fit in the pod network {n.pod_cidr}",
                      f"use a size of at least /{n.pod_cidr.prefixlen}")
    else:
        per_node = 2 ** (n.node_pod_cidr_size - n.pod_cidr.prefixlen)
        nodes = sum(1 for h in c.spec.hosts if h.has("server") or h.has("agent"))
        if nodes > per_node:
            yield Problem("spec.network.nodePodCIDRSize",
                          f"{n.pod_cidr} holds {per_node} node ranges of /{n.node_pod_cidr_size}, "
                          f"but there are {nodes} nodes", "use a larger podCIDR or a smaller per-node range")


def cluster_dns(c: Cluster, base: Path) -> Iterator[Problem]:
    n = c.spec.network
    if n.cluster_dns not in n.service_cidr:
        yield Problem("spec.network.clusterDNS",
                      f"{n.cluster_dns} is outside the service network {n.service_cidr}",
                      f"pick an address in {n.service_cidr}, e.g. {n.service_cidr.network_address + 10}")
    elif n.cluster_dns == n.service_cidr.network_address + 1:
        yield Problem("spec.network.clusterDNS",
                      f"{n.cluster_dns} is the first service address, taken by the kubernetes Service",
                      f"use another address, e.g. {n.service_cidr.network_address + 10}")
    elif n.cluster_dns in (n.service_cidr.network_address, n.service_cidr.broadcast_address):
        yield Problem("spec.network.clusterDNS", f"{n.cluster_dns} is not a usable service address",
                      f"use e.g. {n.service_cidr.network_address + 10}")


def load_balancer_placement(c: Cluster, base: Path) -> Iterator[Problem]:
    cp = c.spec.control_plane
    placement = cp.load_balancer.placement
    if placement == "dedicated" and not c.loadbalancers:
        yield Problem("spec.controlPlane.loadBalancer.placement",
                      "'dedicated' needs hosts with the role loadbalancer, and none has it",
                      "add the role loadbalancer to 2 hosts, or use placement: servers")
    if placement != "dedicated" and c.loadbalancers:
        names = ", ".join(h.name for h in c.loadbalancers)
        yield Problem("spec.controlPlane.loadBalancer.placement",
                      f"hosts with the role loadbalancer ({names}) are unused with placement '{placement}'",
                      "use placement: dedicated, or drop the role", severity="warning")
    if placement == "agents-local" and not c.agents:
        yield Problem("spec.controlPlane.loadBalancer.placement",
                      "'agents-local' puts a proxy on every agent, and there are no agents",
                      "add agents or use placement: servers", severity="warning")
    if placement == "dedicated" and len(c.loadbalancers) == 1 and cp.vip.provider != "none":
        yield Problem("spec.hosts", "1 loadbalancer host is a single point of failure",
                      "add a second host with the role loadbalancer", severity="warning")


def vip_provider(c: Cluster, base: Path) -> Iterator[Problem]:
    cp = c.spec.control_plane
    placement = cp.load_balancer.placement
    carriers = c.loadbalancers if placement == "dedicated" else c.servers
    kind = "loadbalancer hosts" if placement == "dedicated" else "servers"
    if cp.vip.provider == "pacemaker" and len(carriers) < 2:
        yield Problem("spec.controlPlane.vip.provider",
                      f"pacemaker needs at least 2 nodes to fail over between, and there are "
                      f"{len(carriers)} of the {kind}", "add hosts, or use provider: keepalived")
    if cp.vip.provider == "kube-vip" and placement == "dedicated":
        yield Problem("spec.controlPlane.vip.provider",
                      "kube-vip runs on the k3s servers, not on dedicated load-balancer hosts",
                      "use provider: keepalived with placement: dedicated")
    if cp.vip.provider == "none" and placement == "servers" and len(c.servers) > 1:
        yield Problem("spec.controlPlane.vip.provider",
                      "with provider none and placement servers, the endpoint address must be an "
                      "external load balancer in front of the servers' load balancers",
                      "make sure spec.controlPlane.endpoint.vip is such a balancer", severity="warning")


def distribution_options(c: Cluster, base: Path) -> Iterator[Problem]:
    s = c.spec
    if s.distribution.name == "kubernetes":
        if s.k3s is not None:
            yield Problem("spec.k3s", "k3s options are set but the distribution is kubernetes",
                          "remove spec.k3s, or set spec.distribution.name: k3s")
        if s.control_plane.vip.provider == "kube-vip":
            yield Problem("spec.controlPlane.vip.provider",
                          "kube-vip is supported with the k3s distribution only",
                          "use keepalived or pacemaker with kubernetes")
    else:
        if s.kubernetes is not None:
            yield Problem("spec.kubernetes",
                          "kubernetes options are set but the distribution is k3s",
                          "remove spec.kubernetes, or use spec.k3s for k3s options")
        if s.datastore.etcd.model_fields_set and s.datastore.type == "external":
            yield Problem("spec.datastore.etcd", "etcd tuning applies to embedded etcd only",
                          "remove it when the datastore is external")


def datastore(c: Cluster, base: Path) -> Iterator[Problem]:
    d = c.spec.datastore
    if d.type == "external":
        if not d.endpoints:
            yield Problem("spec.datastore.endpoints", "an external datastore needs endpoints",
                          "list e.g. https://etcd-1:2379")
        for i, e in enumerate(d.endpoints):
            if not e.startswith("https://") and c.spec.distribution.name == "kubernetes":
                yield Problem(f"spec.datastore.endpoints[{i}]", f"{e} is not an https:// URL",
                              "etcd clients must use TLS: give https:// endpoints")
        if c.spec.distribution.name == "kubernetes":
            for f in ("ca_file", "cert_file", "key_file"):
                if getattr(d, f) is None:
                    yield Problem(f"spec.datastore.{_camel(f)}",
                                  "the external etcd's TLS file is not set",
                                  "give the CA, client certificate and key of the external etcd")
    else:
        for f in ("endpoints", "ca_file", "cert_file", "key_file"):
            if f in d.model_fields_set and getattr(d, f):
                yield Problem(f"spec.datastore.{_camel(f)}", "only used with type: external",
                              "remove it, or set spec.datastore.type: external")
    t = d.etcd
    if t.election_timeout_ms < 5 * t.heartbeat_interval_ms:
        yield Problem("spec.datastore.etcd.electionTimeoutMs",
                      f"{t.election_timeout_ms} ms is less than 5 x the heartbeat "
                      f"({t.heartbeat_interval_ms} ms); etcd refuses to start",
                      "use an election timeout of about 10 x the heartbeat")


def files_exist(c: Cluster, base: Path) -> Iterator[Problem]:
    def missing(p: Path | None) -> Path | None:
        if p is None:
            return None
        q = p.expanduser()
        q = q if q.is_absolute() else base / q
        return None if q.exists() else q

    s = c.spec
    if (q := missing(s.ssh.key_file)):
        yield Problem("spec.ssh.keyFile", f"SSH key file {q} does not exist",
                      "give the path of an existing private key, or remove keyFile to use the SSH agent")
    for i, h in _hosts(c):
        if h.ssh and (q := missing(h.ssh.key_file)):
            yield Problem(f"spec.hosts[{i}].ssh.keyFile", f"SSH key file {q} does not exist",
                          "give the path of an existing private key")
    for f in ("binaries", "images"):
        if (q := missing(getattr(s.distribution, f))):
            yield Problem(f"spec.distribution.{f}", f"directory {q} does not exist",
                          "give an existing directory, or remove the field to download")
    if s.datastore.type == "external":
        for f in ("ca_file", "cert_file", "key_file"):
            if (q := missing(getattr(s.datastore, f))):
                yield Problem(f"spec.datastore.{_camel(f)}", f"file {q} does not exist",
                              "give the path of an existing file")


def addons(c: Cluster, base: Path) -> Iterator[Problem]:
    a = c.spec.addons
    names = {h.name for h in c.spec.hosts}
    if a.monitoring.hosts is not None:
        for i, n in enumerate(a.monitoring.hosts):
            if n not in names:
                yield Problem(f"spec.addons.monitoring.hosts[{i}]", f"no host is named {n}",
                              f"use one of {', '.join(sorted(names))}")
    nodes = [h for h in c.spec.hosts if h.has("server") or h.has("agent")]
    if a.coredns.enabled and a.coredns.anti_affinity == "required" and a.coredns.replicas > len(nodes):
        yield Problem("spec.addons.coredns.replicas",
                      f"{a.coredns.replicas} replicas with required anti-affinity need as many nodes; "
                      f"there are {len(nodes)}, so {len(nodes)} will run",
                      f"set replicas to at most {len(nodes)}", severity="warning")
    if a.metallb.enabled:
        if not a.metallb.addresses:
            yield Problem("spec.addons.metallb.addresses", "MetalLB is enabled with an empty pool",
                          "list a CIDR or FIRST-LAST range in the node network")
        taken = {h.address for h in c.spec.hosts} | {c.spec.control_plane.endpoint.vip}
        for i, r in enumerate(a.metallb.addresses):
            try:
                first, last = parse_range(r)
            except ValueError as e:
                yield Problem(f"spec.addons.metallb.addresses[{i}]", str(e),
                              "use a CIDR such as 192.168.1.240/28 or a range 192.168.1.240-192.168.1.250")
                continue
            clash = sorted(str(t) for t in taken if first <= t <= last)
            if clash:
                yield Problem(f"spec.addons.metallb.addresses[{i}]",
                              f"the pool contains host or VIP addresses: {', '.join(clash)}",
                              "use addresses no host and no VIP uses")
            if first not in c.spec.network.node_cidr or last not in c.spec.network.node_cidr:
                yield Problem(f"spec.addons.metallb.addresses[{i}]",
                              f"{r} is outside the node network {c.spec.network.node_cidr}",
                              "MetalLB's layer-2 mode needs addresses in the node network")


def parse_range(r: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """'10.0.0.240/28' or '10.0.0.240-10.0.0.250' -> (first, last)."""
    try:
        if "-" in r:
            a, b = (ipaddress.IPv4Address(x.strip()) for x in r.split("-", 1))
            if b < a:
                raise ValueError(f"{r}: the range ends before it starts")
            return a, b
        net = ipaddress.IPv4Network(r, strict=True)
        return net.network_address, net.broadcast_address
    except ipaddress.AddressValueError as e:
        raise ValueError(f"{r} is not an address range ({e})") from None
    except ValueError as e:
        raise ValueError(f"{r} is not an address range ({e})") from None


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(w.title() for w in rest)


RULES = [
    unique_hosts,
    server_count,
    hosts_in_node_network,
    vip_placement,
    networks_disjoint,
    cluster_dns,
    load_balancer_placement,
    vip_provider,
    distribution_options,
    datastore,
    files_exist,
    addons,
]
