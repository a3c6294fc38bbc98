"""kube-proxy on every node (distribution kubernetes): Services in iptables mode.

It reaches the API the way the node's kubelet does (components/kubeconfig), and knows the
whole pod network (`clusterCIDR`) so that it masquerades only traffic to a Service that
comes from outside the pod network.
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import paths
from ...topology import HostPlan, Topology
from ..base import File, RenderContext, Unit, template

CONFIG = f"{paths.K8S}/kube-proxy-config.yaml"
UNIT = "/etc/systemd/system/kube-proxy.service"
BINARY = f"{paths.BIN}/kube-proxy"


@dataclass(frozen=True)
class KubeProxyConfig:
    host: str
    cluster_cidr: str
    feature_gates: tuple[tuple[str, bool], ...]
    mode: str = "iptables"
    bind_address: str = "0.0.0.0"


def config_for(topo: Topology, host: HostPlan) -> KubeProxyConfig:
    return KubeProxyConfig(
        host=host.name,
        cluster_cidr=str(topo.network.pod_cidr),
        feature_gates=tuple(sorted(topo.kubernetes_options.feature_gates.items())) if topo.kubernetes_options else (),
    )


def render(c: KubeProxyConfig) -> list[File]:
    data = dict(c=c, paths=paths, config=CONFIG, binary=BINARY)
    return [
        File(CONFIG, template(__file__, "kube-proxy-config.yaml.j2", **data)),
        File(UNIT, template(__file__, "kube-proxy.service.j2", **data)),
    ]


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    if not host.runs("kube-proxy"):
        return []
    return render(config_for(ctx.topo, host))


# ---- deploy facts: what the engine needs to run this component (engine/services.py) ----

UNITS = (Unit("kube-proxy", ("kube_proxy",), (paths.CA_CRT, paths.KUBE_PROXY_CRT, paths.KUBE_PROXY_KEY),
              f"{paths.BIN}/kube-proxy", borrowed=(paths.KUBECONFIG_KUBE_PROXY,)),)
PACKAGES = {"kube-proxy": ["iptables", "conntrack", "ipset"]}
BINARIES = {"kube-proxy": ["kube-proxy"]}
