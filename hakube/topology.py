"""Everything the spec implies, derived once and deterministically.

The topology answers the questions every later step asks: which server bootstraps etcd,
in which order servers join, how many failures the cluster tolerates, which address every
client and agent uses to reach the API, which names the apiserver certificate must carry,
and which components run on which host. It is pure: no host is contacted.

Example:
    >>> from hakube.spec import load
    >>> topo = derive(load("cluster.yaml").cluster)
    >>> topo.api_url
    'https://192.168.56.100:6443'
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

from .spec.model import Cluster, Host
from .spec.validate import quorum, tolerated_failures


@dataclass(frozen=True)
class HostPlan:
    name: str
    address: str
    roles: tuple[str, ...]
    components: tuple[str, ...]
    interface: str
    pod_cidr: str | None  # this node's slice of the pod network (nodes only)
    labels: tuple[tuple[str, str], ...] = ()
    taints: tuple[str, ...] = ()

    def runs(self, component: str) -> bool:
        return component in self.components

    @property
    def is_node(self) -> bool:
        return "server" in self.roles or "agent" in self.roles


@dataclass(frozen=True)
class Topology:
    cluster: Cluster = field(repr=False)
    name: str
    distribution: str
    version: str
    servers: tuple[str, ...]
    agents: tuple[str, ...]
    bootstrap_server: str
    server_join_order: tuple[str, ...]  # one at a time, bootstrap first
    # Where hakube runs etcd members: the servers (stacked), the hosts with the role etcd,
    # or nowhere (an existing etcd given by endpoints). Members join in this order.
    etcd_hosts: tuple[str, ...]
    quorum: int  # etcd members that must answer for a write (0: the etcd is not hakube's)
    tolerated_failures: int  # servers that may fail while the API keeps serving
    endpoint_host: str  # the VIP or external LB address
    endpoint_port: int
    agent_endpoint_host: str  # what agents use: the endpoint, or 127.0.0.1 (agents-local)
    agent_endpoint_port: int
    apiserver_port: int
    lb_hosts: tuple[str, ...]  # where the load balancer runs
    vip_hosts: tuple[str, ...]  # where the VIP can live (keepalived/pacemaker members)
    sans: tuple[str, ...]
    first_service_ip: str
    hosts: tuple[HostPlan, ...]
    virtual_router_id: int

    # -- lookups ---------------------------------------------------------------------------

    def host(self, name: str) -> HostPlan:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def address(self, name: str) -> str:
        return self.host(name).address

    def apiserver_sans(self, server: str) -> tuple[str, ...]:
        """The SANs of `server`'s own apiserver certificate: `sans` without the other
        servers' names and addresses. Each apiserver is reached by its own name (HAProxy's
        verifyhost) or address (Prometheus, status), or through the VIP, load balancers and
        service names every certificate has; so adding or removing a server reissues no
        other server's certificate, and restarts no other apiserver."""
        others = {x for s in self.servers if s != server for x in (s, self.address(s))}
        return tuple(x for x in self.sans if x not in others or x in (server, self.address(server)))

    # ---- the spec's sections components read: Topology is their only door to the spec ----

    @property
    def network(self):
        """spec.network: node, pod and service networks, cluster DNS and domain."""
        return self.cluster.spec.network

    @property
    def addons(self):
        """spec.addons: CoreDNS, monitoring, dashboard, ingress, MetalLB."""
        return self.cluster.spec.addons

    @property
    def datastore(self):
        """spec.datastore: etcd on the servers (and its timers) or external endpoints."""
        return self.cluster.spec.datastore

    @property
    def backup(self):
        """spec.backup: scheduled etcd snapshots on the etcd hosts (None: off)."""
        return self.cluster.spec.backup

    @property
    def renew_before_days(self) -> int:
        """spec.certificates.renewBeforeDays: `up` renews a leaf certificate this close to its expiry."""
        return self.cluster.spec.certificates.renew_before_days

    @property
    def control_plane(self):
        """spec.controlPlane: endpoint, VIP and load balancer settings."""
        return self.cluster.spec.control_plane

    @property
    def minor(self) -> tuple[int, int]:
        """The Kubernetes minor version, for version-aware flags."""
        return self.cluster.spec.distribution.minor

    @property
    def images(self):
        """spec.distribution.images: OCI archives to load (air-gapped), or None."""
        return self.cluster.spec.distribution.images

    @property
    def kubernetes_options(self):
        """spec.kubernetes (options only the kubernetes distribution understands), or None."""
        return self.cluster.spec.kubernetes

    @property
    def k3s_options(self):
        """spec.k3s (options only k3s understands), or None."""
        return self.cluster.spec.k3s

    @property
    def api_url(self) -> str:
        # The address, not the DNS name: it works before anyone has set up DNS for it.
        # The name (if any) is in the certificate, so a user may switch to it later.
        return f"https://{self.endpoint_host}:{self.endpoint_port}"

    @property
    def agent_api_url(self) -> str:
        return f"https://{self.agent_endpoint_host}:{self.agent_endpoint_port}"

    @property
    def etcd_on_servers(self) -> bool:
        return bool(self.etcd_hosts) and self.etcd_hosts == self.servers

    @property
    def etcd_tolerated_failures(self) -> int:
        """etcd members hakube runs that may fail while the datastore keeps quorum."""
        return tolerated_failures(len(self.etcd_hosts)) if self.etcd_hosts else 0

    @property
    def etcd_client_urls(self) -> tuple[str, ...]:
        """Where etcd's clients connect: hakube's members, or the existing etcd's endpoints."""
        if self.datastore.type == "external":
            return tuple(self.datastore.endpoints)
        return tuple(f"https://{self.address(s)}:2379" for s in self.etcd_hosts)

    def as_dict(self) -> dict:
        """The plan as printed by `hakube plan --json`."""
        return {
            "cluster": self.name,
            "distribution": {"name": self.distribution, "version": self.version},
            "servers": list(self.servers),
            "agents": list(self.agents),
            "bootstrapServer": self.bootstrap_server,
            "serverJoinOrder": list(self.server_join_order),
            "agentJoin": "parallel",
            "etcd": {
                "placement": ("servers" if self.etcd_on_servers else "etcd hosts" if self.etcd_hosts
                              else "external"),
                "hosts": list(self.etcd_hosts),
                "joinOrder": list(self.etcd_hosts),
                "clientURLs": list(self.etcd_client_urls),
            },
            "quorum": self.quorum,
            "toleratedFailures": self.tolerated_failures,
            "apiEndpoint": self.api_url,
            "agentApiEndpoint": self.agent_api_url,
            "apiserverPort": self.apiserver_port,
            "loadBalancer": {
                "provider": self.cluster.spec.control_plane.load_balancer.provider,
                "placement": self.cluster.spec.control_plane.load_balancer.placement,
                "hosts": list(self.lb_hosts),
            },
            "vip": {
                "provider": self.cluster.spec.control_plane.vip.provider,
                "address": self.endpoint_host,
                "hosts": list(self.vip_hosts),
                "virtualRouterId": self.virtual_router_id,
            },
            "certificateSANs": list(self.sans),
            "hosts": [
                {"name": h.name, "address": h.address, "roles": list(h.roles),
                 "components": list(h.components), "podCIDR": h.pod_cidr}
                for h in self.hosts
            ],
        }


def derive(c: Cluster) -> Topology:
    s = c.spec
    cp = s.control_plane
    servers = tuple(h.name for h in c.servers)
    agents = tuple(h.name for h in c.agents)
    if s.datastore.type == "external":
        etcd_hosts: tuple[str, ...] = ()
    else:
        etcd_hosts = tuple(h.name for h in c.etcd_hosts) or servers
    placement = cp.load_balancer.placement
    vip_provider = cp.vip.provider

    # Where the load balancer and the VIP live.
    if placement == "servers":
        lb_hosts = servers
    elif placement == "dedicated":
        lb_hosts = tuple(h.name for h in c.loadbalancers)
    else:  # agents-local: a proxy on every agent, listening on 127.0.0.1
        lb_hosts = agents
    if vip_provider == "none":
        vip_hosts: tuple[str, ...] = ()
    elif placement == "dedicated":
        vip_hosts = lb_hosts
    else:
        # servers placement: VIP in front of the servers' load balancers;
        # agents-local: the VIP is for clients outside the cluster and lands on a server's
        # apiserver directly (agents use their local proxy).
        vip_hosts = servers

    # The apiserver moves off the endpoint port when a load balancer on its own host takes it.
    lb_on_server = set(lb_hosts) & set(servers) and placement != "agents-local"
    default_port = 6444 if lb_on_server and cp.endpoint.port == 6443 else 6443
    apiserver_port = cp.apiserver_port or default_port
    if placement == "agents-local" and vip_provider != "none":
        # No balancer in front of the VIP: it carries clients straight to an apiserver.
        endpoint_port = apiserver_port
    else:
        endpoint_port = cp.endpoint.port

    first_service_ip = str(s.network.service_cidr.network_address + 1)
    sans = _sans(c, lb_hosts, first_service_ip)

    hosts = []
    for h in s.hosts:
        pod_cidr = None
        if h.has("server") or h.has("agent"):
            pod_cidr = s.network.node_pod_cidr(h.address)
        hosts.append(HostPlan(
            name=h.name,
            address=str(h.address),
            roles=tuple(h.roles),
            components=_components(c, h, lb_hosts, vip_hosts),
            interface=h.interface or cp.vip.interface,
            pod_cidr=pod_cidr,
            labels=tuple(sorted(h.labels.items())),
            taints=tuple(str(t) for t in h.taints),
        ))

    return Topology(
        cluster=c,
        name=c.name,
        distribution=s.distribution.name,
        version=s.distribution.version,
        servers=servers,
        agents=agents,
        bootstrap_server=servers[0],
        server_join_order=servers,
        etcd_hosts=etcd_hosts,
        quorum=quorum(len(etcd_hosts)) if etcd_hosts else 0,
        # With etcd on the servers, their quorum decides; otherwise one apiserver suffices.
        tolerated_failures=(tolerated_failures(len(servers)) if etcd_hosts == servers
                            else max(len(servers) - 1, 0)),
        endpoint_host=str(cp.endpoint.vip),
        endpoint_port=endpoint_port,
        agent_endpoint_host="127.0.0.1" if placement == "agents-local" else str(cp.endpoint.vip),
        agent_endpoint_port=cp.endpoint.port,
        apiserver_port=apiserver_port,
        lb_hosts=lb_hosts,
        vip_hosts=vip_hosts,
        sans=sans,
        first_service_ip=first_service_ip,
        hosts=tuple(hosts),
        virtual_router_id=cp.vip.virtual_router_id or _router_id(c.name),
    )


def _router_id(name: str) -> int:
    """A stable VRRP router id per cluster, so two clusters on one LAN rarely collide."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 254 + 1


def _sans(c: Cluster, lb_hosts: tuple[str, ...], first_service_ip: str) -> tuple[str, ...]:
    s = c.spec
    names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
             f"kubernetes.default.svc.{s.network.cluster_domain}", "localhost"]
    if s.control_plane.endpoint.dns_name:
        names.append(s.control_plane.endpoint.dns_name)
    names += [h.name for h in c.servers]
    ips = [str(s.control_plane.endpoint.vip), first_service_ip, "127.0.0.1"]
    ips += [str(h.address) for h in c.servers]
    ips += [str(h.address) for h in s.hosts if h.name in lb_hosts and h.has("loadbalancer")]
    ordered_ips = sorted(set(ips), key=lambda a: ipaddress.IPv4Address(a))
    return tuple(dict.fromkeys(names)) + tuple(ordered_ips)


def _components(c: Cluster, h: Host, lb_hosts: tuple[str, ...], vip_hosts: tuple[str, ...]) -> tuple[str, ...]:
    s = c.spec
    cp = s.control_plane
    k3s = s.distribution.name == "k3s"
    out: list[str] = []
    if h.has("etcd"):
        out.append("etcd")
    if h.has("server"):
        if k3s:
            out.append("k3s-server")
        else:
            if c.etcd_on_servers:
                out.append("etcd")
            out += ["kube-apiserver", "kube-controller-manager", "kube-scheduler",
                    "containerd", "kubelet", "kube-proxy"]
    if h.has("agent") and not h.has("server"):
        out += ["k3s-agent"] if k3s else ["containerd", "kubelet", "kube-proxy"]
    if h.name in lb_hosts:
        out.append(cp.load_balancer.provider)
    if h.name in vip_hosts:
        out += {"keepalived": ["keepalived"], "pacemaker": ["corosync", "pacemaker"],
                "kube-vip": ["kube-vip"]}.get(cp.vip.provider, [])
    if s.backup is not None and "etcd" in out:
        out.append("etcd-backup")
    mon = s.addons.monitoring
    if mon.enabled:
        out.append("node-exporter")
        if h.name in (mon.hosts if mon.hosts is not None else [x.name for x in c.servers]):
            out += ["prometheus", "alertmanager", "blackbox-exporter"]
    return tuple(out)

