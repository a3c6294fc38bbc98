"""Cluster RBAC that hakube's own design depends on: `manifests/hakube-rbac.yaml`.

- Health checks with anonymous auth off: HAProxy's /readyz checks and the keepalived
  track script authenticate with the lb-check client certificate (paths.LB_CHECK_*),
  whose common name is the user LB_CHECK_USER. The ClusterRole `hakube:health-check`
  lets that user GET /readyz, /livez and /healthz and their per-check sub-paths, and
  nothing else. (The default `system:public-info-viewer` binding already opens the three
  top-level paths to authenticated users; the sub-paths such as /readyz/etcd it does not,
  and this binding does not depend on a default someone may have edited.)
- `kubectl logs/exec/port-forward`: the apiserver calls each kubelet with its client
  certificate (--kubelet-client-certificate, CN KUBELET_CLIENT_USER), and the kubelet
  (webhook authorization) asks the apiserver whether that user may use its API. As
  kubeadm does, the user is bound to `system:kubelet-api-admin`. K3s creates its own
  binding for its own apiserver identity, so this one is rendered for the kubernetes
  distribution only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base import File, RenderContext, template
from ...topology import HostPlan

MANIFEST = "manifests/hakube-rbac.yaml"

# Common names of the client certificates (hakube.pki issues them with these names).
LB_CHECK_USER = "hakube:lb-check"
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"

HEALTH_PATHS = ("/healthz", "/healthz/*", "/livez", "/livez/*", "/readyz", "/readyz/*")


@dataclass(frozen=True)
class RBACConfig:
    lb_check_user: str
    health_paths: tuple[str, ...]
    kubelet_client_user: str | None  # None: the distribution binds its own (k3s)


def config_for(distribution: str) -> RBACConfig:
    return RBACConfig(
        lb_check_user=LB_CHECK_USER,
        health_paths=HEALTH_PATHS,
        kubelet_client_user=KUBELET_CLIENT_USER if distribution == "kubernetes" else None,
    )


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    return []


def cluster_files(ctx: RenderContext) -> list[File]:
    cfg = config_for(ctx.topo.distribution)
    return [File(MANIFEST, template(__file__, "hakube-rbac.yaml.j2", c=cfg))]
