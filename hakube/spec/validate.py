"""Rules that relate fields to each other. Each returns problems; none raises.

`validate()` runs every rule and returns all problems (errors and warnings), so that a user
fixes a spec in one round instead of one error at a time.
"""

from __future__ import annotations

import ipaddress
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .model import FLAG_NAME, Cluster
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
    if not c.etcd_on_servers:
        # The servers hold no quorum: any one of them can carry the API alone.
        if n == 1:
            yield Problem("spec.hosts", "1 server is a single point of failure for the API",
                          "use 2 or more servers", severity="warning")
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


def etcd_hosts(c: Cluster, base: Path) -> Iterator[Problem]:
    """Hosts with the role etcd: only etcd on them, an odd number, and hakube's own etcd."""
    hosts = c.etcd_hosts
    if not hosts:
        return
    for i, h in _hosts(c):
        if h.has("etcd") and len(h.roles) > 1:
            others = ", ".join(r for r in h.roles if r != "etcd")
            yield Problem(f"spec.hosts[{i}].roles",
                          f"a host with the role etcd runs only etcd, and {h.name} is also {others}",
                          "give etcd hosts of their own, or drop the role etcd to run etcd on the servers")
    if c.spec.distribution.name == "k3s":
        yield Problem("spec.hosts", "k3s runs its etcd inside the servers; hosts with the role etcd are "
                      "for the kubernetes distribution", "drop the role etcd, or use distribution kubernetes")
    if c.spec.datastore.type == "external":
        yield Problem("spec.datastore.type", "hosts have the role etcd, but the datastore is external",
                      "use type: etcd for hakube to run etcd on them, or drop the role etcd")
    n = len(hosts)
    if n % 2 == 0:
        yield Problem("spec.hosts",
                      f"{n} etcd hosts tolerate {tolerated_failures(n)} failure(s), no more than {n - 1} would, "
                      f"and each of them must answer for a write",
                      f"use {n - 1} or {n + 1} hosts with the role etcd")
    elif n == 1:
        yield Problem("spec.hosts", "1 etcd host is a single point of failure: the cluster stops with it",
                      "use 3 hosts with the role etcd", severity="warning")


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
        # each node's range follows from its address (Network.node_pod_cidr): two nodes
        # whose addresses land on one range cannot share it
        taken: dict[str, str] = {}
        for i, h in _hosts(c):
            if not (h.has("server") or h.has("agent")) or h.address not in n.node_cidr:
                continue
            cidr = n.node_pod_cidr(h.address)
            if cidr in taken:
                yield Problem(f"spec.hosts[{i}].address",
                              f"{h.name} ({h.address}) gets the pod range {cidr}, as {taken[cidr]} does: a node's "
                              f"range follows from its address in nodeCIDR {n.node_cidr}, and {n.pod_cidr} holds "
                              f"{2 ** (n.node_pod_cidr_size - n.pod_cidr.prefixlen)} ranges of /{n.node_pod_cidr_size}",
                              "use a larger podCIDR (or a smaller nodePodCIDRSize: more ranges), or a nodeCIDR "
                              "no larger than the number of ranges")
            else:
                taken[cidr] = f"{h.name} ({h.address})"


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
    if s.backup is not None and (s.distribution.name != "kubernetes" or s.datastore.type == "external"):
        yield Problem("spec.backup", "scheduled backups are of hakube's own etcd (the kubernetes distribution, "
                      "datastore etcd)", "remove spec.backup: k3s and an existing etcd keep their own snapshots")


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
    """Local files and folders the spec names exist and are of the right kind."""

    def local(p: Path) -> Path:
        q = p.expanduser()
        return q if q.is_absolute() else base / q

    def check(path: str, p: Path | None, kind: str, what: str, fix: str) -> Iterator[Problem]:
        if p is None:
            return
        q = local(p)
        what_q = f"{what} {q}" if what else str(q)
        try:
            exists, is_dir = q.exists(), q.is_dir()
        except (OSError, ValueError) as e:  # e.g. a name too long for the file system
            yield Problem(path, f"cannot look at {q}: {e}", fix)
            return
        if not exists:
            yield Problem(path, f"{what or kind.replace('dir', 'directory')} {q} does not exist", fix)
        elif kind == "file" and is_dir:
            yield Problem(path, f"{what_q} is a directory, not a file", fix)
        elif kind == "file" and not q.is_file():
            yield Problem(path, f"{what_q} is not a regular file", fix)
        elif kind == "dir" and not is_dir:
            yield Problem(path, f"{what_q} is a file, not a directory", fix)
        elif not os.access(q, os.R_OK | (os.X_OK if kind == "dir" else 0)):
            yield Problem(path, f"{what_q} cannot be read by this user", f"{fix} (check its permissions)")

    s = c.spec
    yield from check("spec.ssh.keyFile", s.ssh.key_file, "file", "SSH key file",
                     "give the path of an existing private key, or remove keyFile to use the SSH agent")
    kh = local(s.ssh.known_hosts)
    if kh.is_dir():
        yield Problem("spec.ssh.knownHosts", f"known-hosts file {kh} is a directory, not a file",
                      "give the path of a known_hosts file (it may not exist yet)")
    for i, h in _hosts(c):
        if h.ssh:
            yield from check(f"spec.hosts[{i}].ssh.keyFile", h.ssh.key_file, "file", "SSH key file",
                             "give the path of an existing private key")
    for f in ("binaries", "images"):
        yield from check(f"spec.distribution.{f}", getattr(s.distribution, f), "dir", "",
                         "give an existing directory, or remove the field to download")
    if s.datastore.type == "external":
        for f in ("ca_file", "cert_file", "key_file"):
            yield from check(f"spec.datastore.{_camel(f)}", getattr(s.datastore, f), "file", "",
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


# ---- ports ---------------------------------------------------------------------------------
#
# Every TCP port a hakube component listens on, per host. The fixed ones mirror the
# components (hakube/components: etcd, kube_apiserver, kubelet, haproxy, monitoring, k3s);
# tests/unit/test_spec.py checks that they agree. Which hosts run what mirrors
# hakube.topology.derive, which cannot be used here: it assumes a valid spec.

ETCD_CLIENT_PORT, ETCD_PEER_PORT = 2379, 2380
CONTROLLER_MANAGER_PORT, SCHEDULER_PORT = 10257, 10259
KUBELET_PORT, KUBELET_HEALTHZ_PORT = 10250, 10248
KUBE_PROXY_METRICS_PORT, KUBE_PROXY_HEALTHZ_PORT = 10249, 10256
K3S_AGENT_LB_PORT = 6444  # k3s agent's client load balancer (lb-server-port), 127.0.0.1
HAPROXY_HEALTH_PORT, HAPROXY_METRICS_PORT = 8404, 8405
NODE_EXPORTER_PORT, PROMETHEUS_PORT, BLACKBOX_PORT = 9100, 9090, 9115
ALERTMANAGER_PORT, ALERTMANAGER_CLUSTER_PORT = 9093, 9094


@dataclass(frozen=True)
class Listener:
    port: int
    what: str  # who listens
    field: str | None = None  # the spec field that sets the port; None: fixed by hakube
    soft: bool = False  # may not be a real listener on the host (SSH through NAT)


def apiserver_port(c: Cluster) -> int:
    """The port each apiserver listens on (as hakube.topology.derive computes it)."""
    cp = c.spec.control_plane
    placement = cp.load_balancer.placement
    lb_on_server = placement == "servers" or (
        placement == "dedicated" and any(h.has("server") for h in c.loadbalancers))
    default = 6444 if lb_on_server and cp.endpoint.port == 6443 else 6443
    return cp.apiserver_port or default


def listeners(c: Cluster) -> dict[int, list[Listener]]:
    """Host index -> the TCP ports hakube's components listen on there."""
    s = c.spec
    cp = s.control_plane
    placement = cp.load_balancer.placement
    k3s = s.distribution.name == "k3s"
    api = Listener(apiserver_port(c), "k3s (supervisor and API)" if k3s else "kube-apiserver",
                   "spec.controlPlane.apiserverPort" if cp.apiserver_port else None)
    lb = cp.load_balancer.provider
    lb_hosts = {"servers": c.servers, "dedicated": c.loadbalancers, "agents-local": c.agents}[placement]
    lb_names = {h.name for h in lb_hosts}
    mon = s.addons.monitoring
    mon_names = set(mon.hosts) if mon.hosts is not None else {h.name for h in c.servers}
    ingress = s.addons.ingress
    out: dict[int, list[Listener]] = {}
    for i, h in _hosts(c):
        ls: list[Listener] = []
        node = h.has("server") or h.has("agent")
        if h.has("etcd"):
            ls += [Listener(ETCD_CLIENT_PORT, "etcd (clients)"), Listener(ETCD_PEER_PORT, "etcd (peers)")]
        if h.has("server"):
            ls.append(api)
            if c.etcd_on_servers:
                ls += [Listener(ETCD_CLIENT_PORT, "etcd (clients)"), Listener(ETCD_PEER_PORT, "etcd (peers)")]
            ls += [Listener(CONTROLLER_MANAGER_PORT, "kube-controller-manager"),
                   Listener(SCHEDULER_PORT, "kube-scheduler")]
        elif h.has("agent") and k3s:
            ls.append(Listener(K3S_AGENT_LB_PORT, "the k3s agent's load balancer"))
        if node:
            ls += [Listener(KUBELET_PORT, "kubelet"), Listener(KUBELET_HEALTHZ_PORT, "kubelet (healthz)"),
                   Listener(KUBE_PROXY_METRICS_PORT, "kube-proxy (metrics)"),
                   Listener(KUBE_PROXY_HEALTHZ_PORT, "kube-proxy (healthz)")]
            if ingress.enabled:
                ls += [Listener(ingress.http_node_port, "the ingress NodePort for http",
                                "spec.addons.ingress.httpNodePort"),
                       Listener(ingress.https_node_port, "the ingress NodePort for https",
                                "spec.addons.ingress.httpsNodePort")]
        if h.name in lb_names:
            ls.append(Listener(cp.endpoint.port, f"the load balancer {lb}", "spec.controlPlane.endpoint.port"))
            if lb == "haproxy":
                ls.append(Listener(HAPROXY_HEALTH_PORT, "haproxy (health)"))
                if mon.enabled and placement != "agents-local":
                    ls.append(Listener(HAPROXY_METRICS_PORT, "haproxy (metrics)"))
        if mon.enabled:
            ls.append(Listener(NODE_EXPORTER_PORT, "node exporter"))
            if h.name in mon_names:
                ls += [Listener(PROMETHEUS_PORT, "Prometheus"), Listener(ALERTMANAGER_PORT, "Alertmanager"),
                       Listener(ALERTMANAGER_CLUSTER_PORT, "Alertmanager (gossip)"),
                       Listener(BLACKBOX_PORT, "blackbox exporter")]
        ssh_port, ssh_field = s.ssh.port, "spec.ssh.port"
        if h.ssh and h.ssh.port is not None:
            ssh_port, ssh_field = h.ssh.port, f"spec.hosts[{i}].ssh.port"
        ls.append(Listener(ssh_port, "sshd", ssh_field, soft=True))
        out[i] = ls
    return out


def port_clashes(c: Cluster, base: Path) -> Iterator[Problem]:
    """Two components on one host may not listen on one port."""
    per_host = listeners(c)
    taken = {ls.port for lss in per_host.values() for ls in lss}
    found: dict[tuple, list[str]] = {}
    for i, lss in per_host.items():
        by_port: dict[int, list[Listener]] = {}
        for ls in lss:
            by_port.setdefault(ls.port, []).append(ls)
        for port, who in sorted(by_port.items()):
            if len({(w.what, w.field) for w in who}) > 1:
                found.setdefault((port, tuple(dict.fromkeys(who))), []).append(c.spec.hosts[i].name)
    for (port, who), hosts in found.items():
        names = " and ".join(f"{w.what} (port from {w.field})" if w.field else w.what for w in who)
        fields = [w.field for w in who if w.field]
        movable = [w for w in who if w.field and not w.soft] or [w for w in who if w.field]
        where = hosts[0] if len(hosts) == 1 else f"{len(hosts)} hosts ({', '.join(hosts)})"
        if movable:
            fix = f"give {movable[0].field} another port, e.g. {_free(c, movable[0], taken)}"
        else:
            fix = "this is a bug in hakube, please report it"
        soft = all(w.soft or not w.field for w in who) and any(w.soft for w in who)
        if soft:  # only sshd against a fixed port: sshd may sit behind a port forward
            yield Problem(fields[0], f"port {port} on {where} is the SSH port and taken by "
                          f"{' and '.join(w.what for w in who if not w.soft)}: if sshd listens on it "
                          "there, that component cannot start", "move sshd to another port, or "
                          "ignore this if the SSH port is forwarded", severity="warning")
            continue
        yield Problem(fields[0] if fields else "spec.hosts", f"port {port} on {where} is taken by both {names}", fix)


def _free(c: Cluster, ls: Listener, taken: set[int]) -> int:
    """A port no component takes, near the clashing one (in the NodePort range for NodePorts)."""
    if "NodePort" in ls.what:
        first, last = (int(x) for x in c.spec.network.node_port_range.split("-"))
    else:
        first, last = ls.port + 1, 65535
    return next((p for p in range(first, last + 1) if p not in taken and p != ls.port), 1024)


def node_ports(c: Cluster, base: Path) -> Iterator[Problem]:
    """NodePorts lie in the NodePort range; host ports outside it."""
    s = c.spec
    first, last = (int(x) for x in s.network.node_port_range.split("-"))
    ing = s.addons.ingress
    if ing.enabled:
        for f, port in (("httpNodePort", ing.http_node_port), ("httpsNodePort", ing.https_node_port)):
            if not first <= port <= last:
                yield Problem(f"spec.addons.ingress.{f}",
                              f"{port} is outside spec.network.nodePortRange {first}-{last}: the "
                              "apiserver refuses the ingress Service", f"use a port in {first}-{last}")
        if ing.http_node_port == ing.https_node_port:
            yield Problem("spec.addons.ingress.httpsNodePort",
                          f"{ing.https_node_port} is the http NodePort too", "give http and https their own ports")
    nodes = {i for i, h in _hosts(c) if h.has("server") or h.has("agent")}
    reported = set()
    for i, lss in listeners(c).items():
        for ls in lss:
            if (i in nodes and ls.field and "NodePort" not in ls.what and not ls.soft
                    and first <= ls.port <= last and ls.field not in reported):
                reported.add(ls.field)
                yield Problem(ls.field, f"port {ls.port} of {ls.what} is inside spec.network.nodePortRange "
                              f"{first}-{last}: kube-proxy sends that port to a Service once one is given "
                              "it as NodePort", f"use a port outside {first}-{last}", severity="warning")


# ---- extra arguments ------------------------------------------------------------------------
#
# Settings hakube hardens, per component, with what hakube sets ("" when it sets nothing and
# the flag opens another way in). Changing one needs `securityOverrides: [COMPONENT:FLAG]`.

_TLS = {"tls-cert-file": "its own certificate", "tls-private-key-file": "its own key",
        "tls-cipher-suites": "", "tls-min-version": "", "client-ca-file": "the cluster CA"}
SECURITY_FLAGS: dict[str, dict[str, str]] = {
    "kube-apiserver": {
        **_TLS, "anonymous-auth": "false", "authorization-mode": "Node,RBAC", "authorization-config": "",
        "authorization-policy-file": "", "authorization-webhook-config-file": "",
        "authentication-config": "", "authentication-token-webhook-config-file": "",
        "token-auth-file": "", "basic-auth-file": "", "enable-bootstrap-token-auth": "",
        "insecure-port": "0", "insecure-bind-address": "", "port": "", "address": "",
        "profiling": "false", "enable-admission-plugins": "NodeRestriction",
        "disable-admission-plugins": "", "admission-control": "",
        "etcd-cafile": "the etcd CA", "etcd-certfile": "its own etcd client certificate",
        "etcd-keyfile": "its own etcd client key", "tls-sni-cert-key": "",
        "kubelet-certificate-authority": "the cluster CA",
        "kubelet-client-certificate": "its own kubelet client certificate",
        "kubelet-client-key": "its own kubelet client key",
        "proxy-client-cert-file": "its own front-proxy certificate",
        "proxy-client-key-file": "its own front-proxy key",
        "requestheader-client-ca-file": "the front-proxy CA",
        "requestheader-allowed-names": "front-proxy-client", "requestheader-username-headers": "X-Remote-User",
        "requestheader-group-headers": "X-Remote-Group",
        "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "service-account-key-file": "its own key", "service-account-signing-key-file": "its own key",
        "service-account-issuer": "", "kubelet-https": "",
        "encryption-provider-config": "its own config (Secrets encrypted at rest)",
        "audit-policy-file": "its own audit policy", "audit-log-path": "/var/log/kubernetes/audit.log",
    },
    "kubelet": {
        **_TLS, "anonymous-auth": "false", "authentication-token-webhook": "true",
        "authorization-mode": "Webhook", "read-only-port": "0", "address": "the node's address",
        "healthz-bind-address": "127.0.0.1",
        "rotate-certificates": "false", "rotate-server-certificates": "false",
        "kubeconfig": "its own kubeconfig", "bootstrap-kubeconfig": "", "config": "its own config file",
        "enable-server": "", "enable-debugging-handlers": "",
    },
    "kube-controller-manager": {
        **_TLS, "profiling": "false", "bind-address": "127.0.0.1", "port": "0", "address": "",
        "secure-port": "", "kubeconfig": "its own kubeconfig", "authentication-kubeconfig": "its own kubeconfig",
        "authorization-kubeconfig": "its own kubeconfig", "authorization-always-allow-paths": "",
        "use-service-account-credentials": "true", "service-account-private-key-file": "its own key",
        "root-ca-file": "the cluster CA", "cluster-signing-cert-file": "the cluster CA",
        "cluster-signing-key-file": "the cluster CA key", "requestheader-client-ca-file": "",
    },
    "kube-scheduler": {
        **_TLS, "profiling": "false", "bind-address": "127.0.0.1", "port": "0", "address": "",
        "secure-port": "", "kubeconfig": "its own kubeconfig", "authentication-kubeconfig": "its own kubeconfig",
        "authorization-kubeconfig": "its own kubeconfig", "authorization-always-allow-paths": "",
        "requestheader-client-ca-file": "",
    },
    "kube-proxy": {"kubeconfig": "its own kubeconfig", "healthz-bind-address": "127.0.0.1:10256",
                   "metrics-bind-address": "127.0.0.1:10249"},
    "etcd": {
        "client-cert-auth": "true", "peer-client-cert-auth": "true", "cert-file": "", "key-file": "",
        "trusted-ca-file": "", "peer-cert-file": "", "peer-key-file": "", "peer-trusted-ca-file": "",
        "auto-tls": "false", "peer-auto-tls": "false", "listen-client-urls": "", "listen-peer-urls": "",
        "enable-pprof": "false", "cipher-suites": "", "tls-min-version": "",
    },
    "k3s": {
        "write-kubeconfig-mode": "", "write-kubeconfig": "",  # the admin kubeconfig, root-only
    },
}
# Flags hakube derives from spec fields (or must own): never overridden, set the field.
MANAGED_FLAGS: dict[str, dict[str, str]] = {
    "kube-apiserver": {
        "secure-port": "spec.controlPlane.apiserverPort", "advertise-address": "spec.hosts[].address",
        "service-cluster-ip-range": "spec.network.serviceCIDR",
        "service-node-port-range": "spec.network.nodePortRange", "feature-gates": "spec.kubernetes.featureGates",
        "etcd-servers": "spec.datastore.endpoints", "bind-address": "",
    },
    "kubelet": {
        "hostname-override": "spec.hosts[].name", "node-ip": "spec.hosts[].address",
        "node-labels": "spec.hosts[].labels", "register-with-taints": "spec.hosts[].taints",
        "feature-gates": "spec.kubernetes.featureGates", "cluster-dns": "spec.network.clusterDNS",
        "cluster-domain": "spec.network.clusterDomain", "pod-cidr": "spec.network.podCIDR",
        "cgroup-driver": "", "container-runtime-endpoint": "", "container-runtime": "",
    },
    "k3s": {
        "https-listen-port": "spec.controlPlane.apiserverPort", "cluster-cidr": "spec.network.podCIDR",
        "service-cidr": "spec.network.serviceCIDR", "cluster-dns": "spec.network.clusterDNS",
        "cluster-domain": "spec.network.clusterDomain", "service-node-port-range": "spec.network.nodePortRange",
        "flannel-backend": "spec.k3s.flannelBackend", "flannel-iface": "spec.hosts[].interface",
        "node-name": "spec.hosts[].name", "node-ip": "spec.hosts[].address",
        "datastore-endpoint": "spec.datastore.endpoints", "datastore-cafile": "spec.datastore.caFile",
        "datastore-certfile": "spec.datastore.certFile", "datastore-keyfile": "spec.datastore.keyFile",
        "server": "spec.controlPlane.endpoint", "cluster-init": "", "cluster-reset": "",
        "cluster-reset-restore-path": "", "token": "", "token-file": "", "agent-token": "",
        "agent-token-file": "", "config": "",
    },
    "etcd": {"heartbeat-interval": "spec.datastore.etcd.heartbeatIntervalMs",
             "election-timeout": "spec.datastore.etcd.electionTimeoutMs"},
}
# k3s flags whose value is `FLAG=VALUE` for an embedded component.
K3S_COMPONENT_ARGS = {"kube-apiserver-arg": "kube-apiserver", "kubelet-arg": "kubelet",
                      "kube-controller-manager-arg": "kube-controller-manager",
                      "kube-scheduler-arg": "kube-scheduler", "kube-proxy-arg": "kube-proxy",
                      "etcd-arg": "etcd"}


def _weakens(component: str, flag: str, value: str | None) -> bool:
    if component == "kube-apiserver" and flag == "enable-admission-plugins" and value is not None:
        return "NodeRestriction" not in value.split(",")  # adding plugins is fine
    return flag in SECURITY_FLAGS.get(component, {})


def extra_args(c: Cluster, base: Path) -> Iterator[Problem]:
    """Extra arguments may not silently undo hakube's hardening or its derived settings."""
    s = c.spec
    blocks = []
    if s.kubernetes is not None:
        k = s.kubernetes
        flags = []
        for field, comp in (("apiserver_extra_args", "kube-apiserver"), ("kubelet_extra_args", "kubelet")):
            for name, value in getattr(k, field).items():
                flags.append((f"spec.kubernetes.{_camel(field)}.{name}", comp, name.removeprefix("--"), value))
        blocks.append(("spec.kubernetes", k.security_overrides, flags, []))
    if s.k3s is not None:
        k3 = s.k3s
        flags, problems = [], []
        for field in ("extra_server_args", "extra_agent_args"):
            f, p = _k3s_flags(f"spec.k3s.{_camel(field)}", getattr(k3, field))
            flags += f
            problems += p
        blocks.append(("spec.k3s", k3.security_overrides, flags, problems))
    for block, allowed, flags, problems in blocks:
        yield from problems
        used: set[str] = set()
        seen: dict[tuple[str, str], str] = {}
        for path, comp, flag, value in flags:
            key = f"{comp}:{flag}"
            shown = f"--{flag}" + (f"={value}" if value is not None else "")
            if (comp, flag) in seen and not path.startswith("spec.k3s"):
                yield Problem(path, f"--{flag} is given twice ({seen[(comp, flag)]} too)", "keep one of them")
            seen.setdefault((comp, flag), path)
            if flag in MANAGED_FLAGS.get(comp, {}):
                field = MANAGED_FLAGS[comp][flag]
                if field:
                    yield Problem(path, f"{comp} --{flag} is set by hakube from {field}",
                                  f"set {field} instead, and remove this argument")
                else:
                    yield Problem(path, f"{comp} --{flag} is set by hakube, which depends on its value",
                                  "remove this argument")
            elif _weakens(comp, flag, value):
                sets = SECURITY_FLAGS[comp][flag]
                now = "" if not sets else (f" (hardened: --{flag}={sets})" if " " not in sets
                                           else f" (hakube sets it to {sets})")
                if key in allowed:
                    used.add(key)
                    yield Problem(path, f"{comp} {shown} overrides a security setting{now}; allowed by "
                                  f"{block}.securityOverrides", "remove the override to keep hakube's "
                                  "hardening", severity="warning")
                else:
                    yield Problem(path, f"{comp} {shown} changes a security setting{now}",
                                  f"remove it, or allow it knowingly: {block}.securityOverrides: [{key}]")
        for i, key in enumerate(allowed):
            comp, _, flag = key.partition(":")
            if flag not in SECURITY_FLAGS.get(comp, {}):
                yield Problem(f"{block}.securityOverrides[{i}]",
                              f"{key} is not a setting hakube guards; it needs no override", "remove it",
                              severity="warning")
            elif key not in used:
                yield Problem(f"{block}.securityOverrides[{i}]", f"no extra argument in {block} changes {key}",
                              "remove it", severity="warning")


def _k3s_flags(field: str, args: list[str]) -> tuple[list, list[Problem]]:
    """k3s arguments -> (path, component, flag, value) for each flag, and syntax problems.

    `--name=value` or `--name` followed by its value; `--kubelet-arg=max-pods=200` and the
    like are judged as the inner component's flag (kubelet --max-pods).
    """
    flags, problems = [], []
    pending = None
    for i, a in enumerate(args):
        path = f"{field}[{i}]"
        if not a.startswith("-"):
            if pending is None:
                problems.append(Problem(path, f"{a!r} is no flag and follows no flag that takes a value",
                                        "write each flag as --name=value"))
                continue
            flags.remove(pending)
            _, comp, flag, _ = pending
            flags.append((path, comp, flag, a))
            pending = None
            continue
        name, eq, value = a.lstrip("-").partition("=")
        entry = (path, "k3s", name, value if eq else None)
        flags.append(entry)
        pending = None if eq else entry
    out = []
    for path, comp, flag, value in flags:
        inner = K3S_COMPONENT_ARGS.get(flag)
        out.append((path, comp, flag, value))
        if inner is None:
            continue
        if value is None:
            problems.append(Problem(path, f"--{flag} needs a value FLAG=VALUE", f"e.g. --{flag}=v=2"))
            continue
        iname, ieq, ivalue = value.removeprefix("--").partition("=")
        if not FLAG_NAME.fullmatch(iname):
            problems.append(Problem(path, f"{iname!r} in --{flag} is not a flag name",
                                    f"write --{flag}=NAME=VALUE, e.g. --kubelet-arg=max-pods=200"))
            continue
        out.append((path, inner, iname, ivalue if ieq else None))
    return out, problems


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
    etcd_hosts,
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
    port_clashes,
    node_ports,
    extra_args,
]
