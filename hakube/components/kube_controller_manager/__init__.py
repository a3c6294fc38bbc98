"""kube-controller-manager on every server (distribution kubernetes), as a systemd unit.

One instance is active at a time (leader election); the others wait. Each talks to its own
server's apiserver (see components/kubeconfig), so it holds the lease only while that
apiserver works, and another server's instance takes over when it does not.

hakube assigns each node's pod range itself (HostPlan.pod_cidr, written into the CNI
configuration by components/cni), so the node IPAM controller stays off:
`--allocate-node-cidrs=false`.

Version-aware flags:
- `--port=0` below 1.22: it turns off the insecure HTTP port (10252, all interfaces) that
  1.20 and 1.21 still open by default. 1.22 disabled insecure serving and the flag is gone
  from 1.24.

Node-lifecycle timing (`--node-monitor-grace-period`, eviction) stays at the upstream
defaults: hakube's failover concerns the control plane, and shorter grace periods mark
healthy nodes NotReady whenever the API is briefly unreachable during that failover.
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import paths
from ...topology import HostPlan, Topology
from ..base import File, RenderContext, Unit, template
from ..kube_apiserver import feature_gates

UNIT = "/etc/systemd/system/kube-controller-manager.service"
BINARY = f"{paths.BIN}/kube-controller-manager"


@dataclass(frozen=True)
class ControllerManager:
    host: str
    cluster_cidr: str
    service_cidr: str
    insecure_port_flag: bool  # < 1.22
    feature_gates: str


def config_for(topo: Topology, host: HostPlan) -> ControllerManager:
    return ControllerManager(
        host=host.name,
        cluster_cidr=str(topo.network.pod_cidr),
        service_cidr=str(topo.network.service_cidr),
        insecure_port_flag=topo.minor < (1, 22),
        feature_gates=feature_gates(topo.kubernetes_options.feature_gates) if topo.kubernetes_options else "",
    )


def render(c: ControllerManager) -> list[File]:
    return [File(UNIT, template(__file__, "kube-controller-manager.service.j2", c=c, paths=paths, binary=BINARY))]


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    if not host.runs("kube-controller-manager"):
        return []
    return render(config_for(ctx.topo, host))


# ---- deploy facts: what the engine needs to run this component (engine/services.py) ----

UNITS = (Unit(
    "kube-controller-manager", ("kube_controller_manager",),
    (paths.CA_CRT, paths.CA_KEY, paths.SA_KEY, paths.CONTROLLER_MANAGER_CRT, paths.CONTROLLER_MANAGER_KEY),
    f"{paths.BIN}/kube-controller-manager", borrowed=(paths.KUBECONFIG_CONTROLLER_MANAGER,), settle=3.0),)
BINARIES = {"kube-controller-manager": ["kube-controller-manager"]}
