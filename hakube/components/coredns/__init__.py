"""CoreDNS for cluster DNS, highly available (spec.addons.coredns), as one manifest.

Rendered as the cluster file `manifests/coredns.yaml` (applied once per cluster, after the
nodes joined): ServiceAccount, RBAC, the Corefile, a Deployment spread over nodes, a
PodDisruptionBudget and the `kube-dns` Service at spec.network.clusterDNS. It follows
upstream's deployment (coredns/deployment, kubernetes/coredns.yaml.sed) with the changes
that make it survive a node failure (K3s and many installers run a single replica):

- replicas: spec.addons.coredns.replicas, but with required anti-affinity never more than
  the nodes a replica may run on: a replica that cannot be placed stays Pending forever
  and keeps every rollout from finishing.
- Where a replica may run: every server or agent whose taints it tolerates. Like
  upstream (kubeadm) CoreDNS tolerates CriticalAddonsOnly and the control-plane taint, so
  servers count even when spec.controlPlane.schedulableServers is false: with 3 servers
  and few agents this is what lets DNS survive the loss of any one machine. A node with a
  taint of its own (spec.hosts[].taints, NoSchedule or NoExecute) does not count.
- The rolling update must work with required anti-affinity: when there are as many
  replicas as eligible nodes, a surge pod could never be placed, so the update removes
  one old replica first (maxSurge 0, maxUnavailable 1); otherwise it adds the new one
  first (maxSurge 1, maxUnavailable 0) and DNS capacity never drops.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base import File, RenderContext, template
from ..kubelet import registration_taints
from ...topology import HostPlan, Topology

MANIFEST = "manifests/coredns.yaml"


@dataclass(frozen=True)
class Toleration:
    key: str
    effect: str | None  # None: every effect

    def tolerates(self, key: str, effect: str) -> bool:
        return key == self.key and self.effect in (None, effect)


# As upstream: CriticalAddonsOnly (K3s's documented taint for dedicated servers) and the
# control-plane taint under its current and its pre-1.24 name.
TOLERATIONS = (
    Toleration("CriticalAddonsOnly", None),
    Toleration("node-role.kubernetes.io/control-plane", "NoSchedule"),
    Toleration("node-role.kubernetes.io/master", "NoSchedule"),
)


@dataclass(frozen=True)
class CoreDNSConfig:
    image: str
    requested_replicas: int
    replicas: int
    eligible_nodes: tuple[str, ...]
    anti_affinity: str  # required | preferred
    max_surge: int
    max_unavailable: int
    pdb_api_version: str | None  # None: no PodDisruptionBudget
    cluster_ip: str
    cluster_domain: str
    tolerations: tuple[Toleration, ...]


def eligible_nodes(topo: Topology, tolerations: tuple[Toleration, ...] = TOLERATIONS) -> tuple[str, ...]:
    """Nodes (servers and agents) whose every scheduling taint the pods tolerate.

    The taints are the ones each node registers with (the kubelet component's, shared by
    K3s): the servers' control-plane taint unless schedulableServers, plus the host's own.
    """
    out = []
    for h in topo.hosts:
        if not h.is_node:
            continue
        blocking = [t for t in registration_taints(topo, h) if t.effect in ("NoSchedule", "NoExecute")
                    and not any(tol.tolerates(t.key, t.effect) for tol in tolerations)]
        if not blocking:
            out.append(h.name)
    return tuple(out)


def config_for(topo: Topology) -> CoreDNSConfig:
    dns = topo.addons.coredns
    nodes = eligible_nodes(topo)
    if dns.anti_affinity == "required":
        # At least 1 even when no node qualifies: DNS then waits for a node, visibly Pending.
        replicas = max(1, min(dns.replicas, len(nodes)))
        full = replicas >= len(nodes)
    else:
        # Preferred spreading never blocks scheduling: replicas beyond the node count
        # share nodes and still add capacity.
        replicas = dns.replicas
        full = False
    max_surge, max_unavailable = (0, 1) if full else (1, 0)
    pdb = None
    if dns.pod_disruption_budget:
        # policy/v1 is served from Kubernetes 1.21; 1.20 has only policy/v1beta1.
        pdb = "policy/v1" if topo.minor >= (1, 21) else "policy/v1beta1"
    return CoreDNSConfig(
        image=dns.image,
        requested_replicas=dns.replicas,
        replicas=replicas,
        eligible_nodes=nodes,
        anti_affinity=dns.anti_affinity,
        max_surge=max_surge,
        max_unavailable=max_unavailable,
        pdb_api_version=pdb,
        cluster_ip=str(topo.network.cluster_dns),
        cluster_domain=topo.network.cluster_domain,
        tolerations=TOLERATIONS,
    )


def render(cfg: CoreDNSConfig) -> list[File]:
    return [File(MANIFEST, template(__file__, "coredns.yaml.j2", c=cfg))]


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    return []


def cluster_files(ctx: RenderContext) -> list[File]:
    if not ctx.topo.addons.coredns.enabled:
        return []
    return render(config_for(ctx.topo))
