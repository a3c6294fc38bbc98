"""Optional add-ons as cluster manifests: dashboard access, ingress-nginx, MetalLB's pool.

Each enabled add-on is one multi-document file under `manifests/`, applied once per
cluster after the nodes joined:

- `manifests/dashboard.yaml`: how people log in to the Kubernetes Dashboard, not the
  Dashboard itself (the deploy step installs upstream's release manifest, which creates
  the namespace too; it is repeated here so this file applies on its own). A service
  account with a long-lived token Secret (Kubernetes >= 1.24 no longer creates one),
  bound READ-ONLY: the built-in `view` role (no Secrets, no RBAC changes) plus read access
  to cluster-scoped objects the Dashboard lists (nodes, volumes, storage classes...).
  cluster-admin only with spec.addons.dashboard.clusterAdmin: whoever holds that token
  owns the cluster.
- `manifests/ingress.yaml`: ingress-nginx as its bare-metal manifest installs it, with
  the controller Service on the NodePorts of spec.addons.ingress, so an external balancer
  or DNS name can point at every node. The validating admission webhook is left out: it
  needs certificate-generation Jobs and a second image, and only rejects bad Ingresses
  earlier (the controller still refuses to load them).
- `manifests/metallb.yaml`: MetalLB's configuration only (an IPAddressPool with
  spec.addons.metallb.addresses and an L2Advertisement). MetalLB itself (CRDs,
  controller, speakers) comes from its upstream manifest, applied by the deploy step
  before this file: these objects need its CRDs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base import File, RenderContext, template
from ...topology import HostPlan, Topology

DASHBOARD = "manifests/dashboard.yaml"
INGRESS = "manifests/ingress.yaml"
METALLB = "manifests/metallb.yaml"

DASHBOARD_NAMESPACE = "kubernetes-dashboard"
DASHBOARD_ACCOUNT = "hakube-dashboard"
INGRESS_NAMESPACE = "ingress-nginx"
METALLB_NAMESPACE = "metallb-system"

# ingress-nginx controller per Kubernetes minor version, from ingress-nginx's supported
# versions table. 1.20-1.24: the release upstream's own per-version manifests
# (deploy/static/provider/baremetal/1.20 ... 1.24) install, pinned by digest as they pin it.
INGRESS_IMAGES: tuple[tuple[tuple[int, int], str], ...] = (
    ((1, 31), "registry.k8s.io/ingress-nginx/controller:v1.12.1"),
    ((1, 26), "registry.k8s.io/ingress-nginx/controller:v1.11.5"),
    ((1, 25), "registry.k8s.io/ingress-nginx/controller:v1.9.6"),
    ((1, 0), "registry.k8s.io/ingress-nginx/controller:v1.2.0"
             "@sha256:d8196e3bc1e72547c5dec66d6556c0ff92a23f6d0919b206be170bc90d5f9185"),
)


def ingress_image(minor: tuple[int, int]) -> str:
    """The controller image for Kubernetes (major, minor)."""
    return next(image for since, image in INGRESS_IMAGES if minor >= since)


@dataclass(frozen=True)
class DashboardConfig:
    namespace: str
    account: str
    cluster_admin: bool


@dataclass(frozen=True)
class IngressConfig:
    namespace: str
    image: str
    http_node_port: int
    https_node_port: int
    replicas: int


@dataclass(frozen=True)
class MetalLBConfig:
    namespace: str
    addresses: tuple[str, ...]


def dashboard_config(topo: Topology) -> DashboardConfig:
    d = topo.addons.dashboard
    return DashboardConfig(DASHBOARD_NAMESPACE, DASHBOARD_ACCOUNT, d.cluster_admin)


def ingress_config(topo: Topology) -> IngressConfig:
    i = topo.addons.ingress
    return IngressConfig(
        namespace=INGRESS_NAMESPACE,
        image=ingress_image(topo.minor),
        http_node_port=i.http_node_port,
        https_node_port=i.https_node_port,
        # Two controllers: one node failing leaves one serving (NodePort traffic reaches
        # it from any node).
        replicas=2,
    )


def metallb_config(topo: Topology) -> MetalLBConfig:
    return MetalLBConfig(METALLB_NAMESPACE, tuple(topo.addons.metallb.addresses))


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    return []


def cluster_files(ctx: RenderContext) -> list[File]:
    a = ctx.topo.addons
    out = []
    if a.dashboard.enabled:
        out.append(File(DASHBOARD, template(__file__, "dashboard.yaml.j2", c=dashboard_config(ctx.topo))))
    if a.ingress.enabled:
        out.append(File(INGRESS, template(__file__, "ingress.yaml.j2", c=ingress_config(ctx.topo))))
    if a.metallb.enabled:
        out.append(File(METALLB, template(__file__, "metallb.yaml.j2", c=metallb_config(ctx.topo))))
    return out
