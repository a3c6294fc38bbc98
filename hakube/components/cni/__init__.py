"""The pod network without an overlay: a bridge per node and routes between nodes.

Every node (distribution kubernetes) gets:
- /etc/cni/net.d/10-hakube.conflist: the `bridge` plugin (cni0, the node's gateway for its
  pods) with `host-local` addresses from the node's own range (HostPlan.pod_cidr), and
  `portmap` for hostPort. containerd's CRI sets up each pod's loopback itself with the
  `loopback` plugin, so the chain does not repeat it.
- a script and a oneshot unit, hakube-pod-routes.service, that at every boot (and on every
  change) route each other node's pod range via that node's address. Pods on different
  nodes then reach each other directly, without encapsulation and without NAT; the hosts
  share one L2 network (validated: every address is in spec.network.nodeCIDR).

Masquerading: the bridge plugin's own `ipMasq` would also hide pod addresses from pods on
other nodes (it exempts only the node's range), breaking Kubernetes' no-NAT rule between
pods. So `ipMasq` is off, and the script masquerades only traffic that leaves the whole
pod network (to hosts, load balancers, anything outside the cluster).
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import paths
from ...topology import HostPlan, Topology
from ..base import File, RenderContext, Unit, template

CONFLIST = "/etc/cni/net.d/10-hakube.conflist"  # containerd reads the first file by name
ROUTES_SCRIPT = f"{paths.LIBEXEC}/pod-routes"
ROUTES_UNIT = "/etc/systemd/system/hakube-pod-routes.service"
BRIDGE = "cni0"
# 0.4.0: understood by containerd 1.4+ and by the plugins of Debian 11 and 12 (0.8/1.1).
CNI_VERSION = "0.4.0"


@dataclass(frozen=True)
class PodRoute:
    node: str
    cidr: str  # that node's pod range
    via: str  # that node's address


@dataclass(frozen=True)
class PodNetwork:
    host: str
    bridge: str
    cni_version: str
    cluster_pod_cidr: str  # the whole pod network
    node_pod_cidr: str  # this node's range
    routes: tuple[PodRoute, ...]  # one per other node, in topology order


def config_for(topo: Topology, host: HostPlan) -> PodNetwork:
    assert host.pod_cidr, f"{host.name} runs a kubelet but has no pod range"
    return PodNetwork(
        host=host.name,
        bridge=BRIDGE,
        cni_version=CNI_VERSION,
        cluster_pod_cidr=str(topo.network.pod_cidr),
        node_pod_cidr=host.pod_cidr,
        routes=tuple(PodRoute(h.name, h.pod_cidr, h.address) for h in topo.hosts
                     if h.name != host.name and h.pod_cidr and h.runs("kubelet")),
    )


def render(n: PodNetwork) -> list[File]:
    data = dict(n=n, script=ROUTES_SCRIPT)
    return [
        File(CONFLIST, template(__file__, "10-hakube.conflist.j2", **data)),
        File(ROUTES_SCRIPT, template(__file__, "pod-routes.sh.j2", **data), 0o755),
        File(ROUTES_UNIT, template(__file__, "hakube-pod-routes.service.j2", **data)),
    ]


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    # K3s brings its own CNI (flannel); this network is for the kubernetes distribution.
    if not host.runs("kubelet"):
        return []
    return render(config_for(ctx.topo, host))


# ---- deploy facts: what the engine needs to run this component (engine/services.py) ----

UNITS = (Unit("hakube-pod-routes", ("cni",)),)
