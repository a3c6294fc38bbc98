"""K3s servers and agents (distribution k3s): config.yaml, the join token, the unit.

Keys follow the K3s CLI (`k3s server --help`, `k3s agent --help`): every flag is a key of
/etc/rancher/k3s/config.yaml, which K3s reads by default. The units are the ones the
official install script (get.k3s.io) writes.

How nodes find the cluster:
- the bootstrap server (embedded etcd) has `cluster-init: true`: it starts a new etcd;
- every other server has `server:` = the front door by address (the VIP, or the external
  balancer), never one server's address: joining works while any server is up;
- agents have `server:` = `topo.agent_api_url`: the front door, or with placement
  agents-local the proxy on 127.0.0.1 in front of every server. (The agent's own client
  load balancer listens on 127.0.0.1:6444, `lb-server-port`; it would also take 6443 only
  if the servers' supervisor and apiserver ports differed, which hakube never sets.)
- with an external datastore no server is special: all connect to `datastore-endpoint`.
A bootstrap server must not start a second cluster when it lost its data while the others
kept theirs (k3s-ansible #269/#400): the deploy passes `new_cluster=False` to
`config_for` when any server is healthy, which renders it as a joining server.

The token is never in config.yaml: it is in paths.K3S_TOKEN (0600) and named by
`token-file`. Anonymous access to the apiserver is already off in K3s (it runs
kube-apiserver with --anonymous-auth=false), so no kube-apiserver-arg is needed for it.
Settings K3s requires to be equal on all servers (CIDRs, cluster DNS and domain, disabled
components, flannel backend) are rendered from cluster-wide fields only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import paths
from ...topology import HostPlan, Topology
from ..base import File, RenderContext, Unit, systemd_quote, template
from ..kubeconfig import node_api_url
from ..kubelet import node_labels, registration_taints

BINARY = f"{paths.BIN}/k3s"
SERVER_UNIT = "/etc/systemd/system/k3s.service"
AGENT_UNIT = "/etc/systemd/system/k3s-agent.service"


@dataclass(frozen=True)
class K3sConfig:
    role: str  # "server" or "agent"
    node_name: str
    node_ip: str
    server_url: str | None  # None: the bootstrap server, or servers on an external datastore
    cluster_init: bool
    token_file: str
    node_labels: tuple[str, ...]
    node_taints: tuple[str, ...]
    flannel_iface: str | None
    extra_args: tuple[str, ...]  # topo.k3s_options.extra{Server,Agent}Args, quoted for systemd
    # server only
    https_listen_port: int | None = None
    tls_sans: tuple[str, ...] = ()
    cluster_cidr: str = ""
    service_cidr: str = ""
    cluster_dns: str = ""
    cluster_domain: str = ""
    node_port_range: str = ""
    flannel_backend: str = ""
    disable: tuple[str, ...] = ()
    etcd_args: tuple[str, ...] = ()  # embedded etcd only
    etcd_expose_metrics: bool = False
    datastore_endpoint: str | None = None
    datastore_cafile: str | None = None
    datastore_certfile: str | None = None
    datastore_keyfile: str | None = None

    @property
    def unit(self) -> str:
        return SERVER_UNIT if self.role == "server" else AGENT_UNIT


def tls_sans(topo: Topology) -> tuple[str, ...]:
    """topo.sans without the names K3s adds by itself (service names, localhost, the
    first service address): the VIP, the DNS name, every server and balancer address.
    Identical on every server, so whichever server issues a certificate includes all."""
    domain = topo.network.cluster_domain
    builtin = {"kubernetes", "kubernetes.default", "kubernetes.default.svc",
               f"kubernetes.default.svc.{domain}", "localhost", "127.0.0.1", topo.first_service_ip}
    return tuple(s for s in topo.sans if s not in builtin)


def disabled(topo: Topology) -> tuple[str, ...]:
    """spec.k3s.disable, plus K3s's own single-replica CoreDNS when hakube's HA CoreDNS
    add-on replaces it, plus servicelb when MetalLB answers for LoadBalancer Services."""
    names = list(topo.k3s_options.disable if topo.k3s_options else ["traefik", "servicelb"])
    if topo.addons.coredns.enabled:
        names.append("coredns")
    if topo.addons.metallb.enabled:
        names.append("servicelb")
    return tuple(dict.fromkeys(names))


def config_for(topo: Topology, host: HostPlan, new_cluster: bool | None = None) -> K3sConfig:
    """The K3s configuration of `host`.

    new_cluster: whether this server starts a new embedded etcd. Default: only the
    bootstrap server does. The deploy passes False when a healthy server exists.
    """
    k3s = topo.k3s_options
    server = host.runs("k3s-server")
    backend = k3s.flannel_backend if k3s else "vxlan"
    common = dict(
        node_name=host.name,
        node_ip=host.address,
        token_file=paths.K3S_TOKEN,
        node_labels=tuple(f"{k}={v}" for k, v in node_labels(host)),
        node_taints=tuple(str(t) for t in registration_taints(topo, host)),
        # Flannel otherwise picks the interface of the default route, which lab machines
        # (and some air-gapped hosts) do not have.
        flannel_iface=host.interface if backend != "none" else None,
    )
    if not server:
        return K3sConfig(role="agent", server_url=node_api_url(topo, host), cluster_init=False,
                         extra_args=tuple(systemd_quote(a, "k3s-agent.service") for a in (k3s.extra_agent_args if k3s else [])),
                         **common)

    ds = topo.datastore
    embedded = ds.type == "etcd"
    if new_cluster is None:
        new_cluster = host.name == topo.bootstrap_server
    cluster_init = embedded and new_cluster
    external_tls = dict(
        datastore_cafile=paths.ETCD_CA_CRT if ds.ca_file else None,
        datastore_certfile=paths.APISERVER_ETCD_CLIENT_CRT if ds.cert_file else None,
        datastore_keyfile=paths.APISERVER_ETCD_CLIENT_KEY if ds.key_file else None,
    ) if not embedded else {}
    return K3sConfig(
        role="server",
        server_url=None if (cluster_init or not embedded) else node_api_url(topo, host),
        cluster_init=cluster_init,
        extra_args=tuple(systemd_quote(a, "k3s.service") for a in (k3s.extra_server_args if k3s else [])),
        https_listen_port=topo.apiserver_port,
        tls_sans=tls_sans(topo),
        cluster_cidr=str(topo.network.pod_cidr),
        service_cidr=str(topo.network.service_cidr),
        cluster_dns=str(topo.network.cluster_dns),
        cluster_domain=topo.network.cluster_domain,
        node_port_range=topo.network.node_port_range,
        flannel_backend=backend,
        disable=disabled(topo),
        etcd_args=(f"heartbeat-interval={ds.etcd.heartbeat_interval_ms}",
                   f"election-timeout={ds.etcd.election_timeout_ms}") if embedded else (),
        etcd_expose_metrics=embedded and topo.addons.monitoring.enabled,
        datastore_endpoint=None if embedded else ",".join(ds.endpoints),
        **external_tls,
        **common,
    )


def render(c: K3sConfig, token: str) -> list[File]:
    data = dict(c=c, binary=BINARY)
    return [
        # 0600: an external datastore endpoint may carry a database password.
        File(paths.K3S_CONFIG, template(__file__, "config.yaml.j2", **data), 0o600),
        File(paths.K3S_TOKEN, token.strip() + "\n", 0o600),
        File(c.unit, template(__file__, "k3s.service.j2", **data)),
    ]


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    if not (host.runs("k3s-server") or host.runs("k3s-agent")):
        return []
    return render(config_for(ctx.topo, host), ctx.secrets.k3s_token)


# ---- deploy facts: what the engine needs to run this component (engine/services.py) ----

# Declared for the SSH fault driver and the unit lists; the k3s deploy steps are not written yet.
UNITS = (Unit("k3s", ("k3s",)), Unit("k3s-agent", ("k3s",)))
