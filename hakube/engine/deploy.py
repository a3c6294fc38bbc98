"""`hakube up`: from cluster.yaml to a running HA control plane, in the runbook's order.

The pipeline (ARCHITECTURE.md) is the list in `PIPELINE` below, one step module each under
steps/. Every step reads facts from the hosts, plans actions (or says why nothing needs
to change), and executes exactly that plan; with `dry_run` it prints the plan and applies
nothing. A second run on a converged cluster changes nothing.

Example:
    >>> report = asyncio.run(up(load("cluster.yaml"), dry_run=True))
    >>> report.changed
    0
"""

from __future__ import annotations


from .. import state
from ..errors import HakubeError
from ..pki import Renewal
from ..spec import Loaded
from .context import session
from .steps.addons import phase_addons
from .steps.control_plane import phase_control_plane
from .steps.etcd import phase_etcd, phase_existing_etcd
from .steps.front_door import phase_front_door
from .steps.host import phase_binaries, phase_facts, phase_packages, phase_pki
from .steps.kubeconfig import phase_kubeconfig
from .steps.backups import phase_backups
from .steps.monitoring import phase_monitoring
from .steps.nodes import phase_nodes
from .ui import Reporter

# The pipeline: an ordered list that reads like the runbook it replaces.
PIPELINE = [
    phase_facts,          # every host reachable, systemd, a known architecture
    phase_existing_etcd,  # an existing etcd (datastore external) answers, before anything changes
    phase_packages,       # Debian packages (the lab image has them all: no change there)
    phase_binaries,       # Kubernetes binaries from spec.distribution.binaries or a release download
    phase_pki,            # certificates before any service that reads them
    phase_etcd,           # bootstrap once, then join one server at a time
    phase_control_plane,  # one server at a time, each gated on /readyz
    phase_front_door,     # load balancers, then the VIP; gated on the VIP answering
    phase_kubeconfig,     # points at the front door, verified with TLS on
    phase_nodes,          # containerd, pod network, kubelet, kube-proxy; agents in parallel; gated on Ready
    phase_addons,         # hakube's RBAC, HA CoreDNS, monitoring RBAC, dashboard, ingress, MetalLB
    phase_monitoring,     # node exporter, VIP presence, Prometheus + Alertmanager (when enabled)
    phase_backups,        # the scheduled etcd snapshots (spec.backup), the first one taken now
]


async def up(loaded: Loaded, dry_run: bool = False, ui: Reporter | None = None,
             renew: Renewal | None = None, what: str = "up") -> Reporter:
    """Converge the cluster described by `loaded`. Raises HakubeError with a clear message.
    `renew`: renew leaf certificates on this window instead of the spec's (`hakube certs
    --renew`, whose run is this pipeline: the rolling restarts carry the new certificates)."""
    ui = ui or Reporter()
    if loaded.cluster.spec.distribution.name == "k3s":
        # The k3s files render and are tested (hakube render); its deploy steps (token,
        # bootstrap server, joins through the front door) slot into PIPELINE as their own
        # steps and are not written yet: refuse rather than half-deploy.
        raise HakubeError("deploying the k3s distribution is not implemented yet; `hakube render` writes "
                          "every k3s file (config.yaml, units, token) for review; use distribution: kubernetes")
    async with session(loaded, dry_run, ui, what, renew=renew) as d:
        for phase in PIPELINE:
            await phase(d)
        if not dry_run:
            state.record_converged(d.topo.name, [h.name for h in d.topo.hosts])
    return ui
