"""kube-scheduler on every server (distribution kubernetes), as a systemd unit.

Leader-elected like the controller manager, and talking to its own server's apiserver.

Version-aware flags:
- `--port=0` below 1.23: it turns off the insecure HTTP port (10251, all interfaces) that
  the scheduler opens by default up to 1.22; 1.23 removed insecure serving.
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import paths
from ...topology import HostPlan, Topology
from ..base import File, RenderContext, Unit, template
from ..kube_apiserver import feature_gates

UNIT = "/etc/systemd/system/kube-scheduler.service"
BINARY = f"{paths.BIN}/kube-scheduler"


@dataclass(frozen=True)
class Scheduler:
    host: str
    insecure_port_flag: bool  # < 1.23
    feature_gates: str


def config_for(topo: Topology, host: HostPlan) -> Scheduler:
    return Scheduler(
        host=host.name,
        insecure_port_flag=topo.minor < (1, 23),
        feature_gates=feature_gates(topo.kubernetes_options.feature_gates) if topo.kubernetes_options else "",
    )


def render(c: Scheduler) -> list[File]:
    return [File(UNIT, template(__file__, "kube-scheduler.service.j2", c=c, paths=paths, binary=BINARY))]


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    if not host.runs("kube-scheduler"):
        return []
    return render(config_for(ctx.topo, host))


# ---- deploy facts: what the engine needs to run this component (engine/services.py) ----

UNITS = (Unit(
    "kube-scheduler", ("kube_scheduler",),
    (paths.CA_CRT, paths.SCHEDULER_CRT, paths.SCHEDULER_KEY),
    f"{paths.BIN}/kube-scheduler", borrowed=(paths.KUBECONFIG_SCHEDULER,), settle=3.0),)
BINARIES = {"kube-scheduler": ["kube-scheduler"]}
