"""Kubeconfig files: the components' credentials on the hosts, and the admin's template.

Every kubeconfig references certificate FILES (no embedded keys): a renewed certificate
replaces a file without touching the kubeconfig, and no key exists twice on a host.
They are mode 0600 all the same: they name the keys a component acts with.

Which API address each one uses, and why:
- controller-manager and scheduler (servers): the server's own apiserver,
  https://127.0.0.1:<apiserver port>, as kubeadm does. Both are leader-elected: when the
  local apiserver fails, this instance loses its lease and another server's takes over,
  so depending on the local apiserver costs nothing and keeps them off the front door.
- admin.kubeconfig on servers (kubectl there, for people and for the deploy): the local
  apiserver too. It works as soon as that apiserver does, before the front door exists
  (the pipeline builds the front door after the control plane), and it shows what this
  server's apiserver says, which is what one wants when logged in to a server.
- kubelet and kube-proxy on an agent: `topo.agent_api_url`, the front door (VIP) or, with
  placement agents-local, the proxy on 127.0.0.1 in front of every apiserver.
- kubelet and kube-proxy on a server: the front door too, as kubeadm's kubelets do. With
  only its own apiserver, a server would go NotReady and stop following Service changes
  whenever that one apiserver restarts (every rolling upgrade restarts each in turn);
  through the front door it keeps working while any apiserver is up.
Hosts use the endpoint's ADDRESS, never `dnsName`: a node must not depend on DNS to reach
the API. The admin template (cluster file) uses `topo.api_url`, the same front door.
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import paths
from ...topology import HostPlan, Topology
from ..base import File, RenderContext, template

# The admin kubeconfig as a cluster file. Its certificate files are named relative to the
# cluster's state directory (pki/ca.crt, pki/admin.crt, pki/admin.key); `hakube
# kubeconfig` (hakube/kubeconfig.py) writes the self-contained file with their contents
# embedded.
ADMIN_TEMPLATE = "kubeconfig/admin.kubeconfig"
STATE_PKI = "pki"


@dataclass(frozen=True)
class Kubeconfig:
    path: str
    purpose: str  # the comment at the top of the file
    cluster: str
    server: str
    user: str
    context: str
    ca_file: str
    cert_file: str
    key_file: str


def front_door_url(topo: Topology) -> str:
    """The front door by address: the VIP (or external balancer) and its port."""
    return f"https://{topo.endpoint_host}:{topo.endpoint_port}"


def node_api_url(topo: Topology, host: HostPlan) -> str:
    """Where a node's kubelet and kube-proxy (and a joining K3s node) reach the API.

    Agents use `topo.agent_api_url` (the front door, or their local proxy with placement
    agents-local); servers use the front door by address. Never a single server.
    """
    if "server" in host.roles:
        return front_door_url(topo)
    return topo.agent_api_url


def _component(path: str, purpose: str, topo: Topology, server: str, user: str,
               cert: str, key: str) -> Kubeconfig:
    return Kubeconfig(path, purpose, topo.name, server, user, f"{user}@{topo.name}",
                      paths.CA_CRT, cert, key)


def host_kubeconfigs(topo: Topology, host: HostPlan) -> list[Kubeconfig]:
    local = f"https://127.0.0.1:{topo.apiserver_port}"
    node = node_api_url(topo, host)
    local_proxy = "server" not in host.roles and topo.agent_endpoint_host == "127.0.0.1"
    via = "the local proxy in front of every apiserver" if local_proxy else "the front door"
    out = []
    if host.runs("kube-apiserver"):
        out.append(_component(paths.KUBECONFIG_ADMIN, f"kubectl on {host.name}: this server's own apiserver",
                              topo, local, "admin", paths.ADMIN_CRT, paths.ADMIN_KEY))
    if host.runs("kube-controller-manager"):
        out.append(_component(paths.KUBECONFIG_CONTROLLER_MANAGER,
                              f"kube-controller-manager on {host.name}: this server's own apiserver",
                              topo, local, "controller-manager",
                              paths.CONTROLLER_MANAGER_CRT, paths.CONTROLLER_MANAGER_KEY))
    if host.runs("kube-scheduler"):
        out.append(_component(paths.KUBECONFIG_SCHEDULER,
                              f"kube-scheduler on {host.name}: this server's own apiserver",
                              topo, local, "scheduler", paths.SCHEDULER_CRT, paths.SCHEDULER_KEY))
    if host.runs("kubelet"):
        out.append(_component(paths.KUBECONFIG_KUBELET, f"kubelet on {host.name}: {via}", topo, node,
                              f"system:node:{host.name}", paths.KUBELET_CLIENT_CRT, paths.KUBELET_CLIENT_KEY))
    if host.runs("kube-proxy"):
        out.append(_component(paths.KUBECONFIG_KUBE_PROXY, f"kube-proxy on {host.name}: {via}", topo, node,
                              "kube-proxy", paths.KUBE_PROXY_CRT, paths.KUBE_PROXY_KEY))
    return out


def admin_kubeconfig(topo: Topology) -> Kubeconfig:
    """Names as `hakube kubeconfig` writes them: user <cluster>-admin, context <cluster>."""
    return Kubeconfig(ADMIN_TEMPLATE, f"cluster {topo.name}: administrator, through the front door",
                      topo.name, topo.api_url, f"{topo.name}-admin", topo.name,
                      f"{STATE_PKI}/ca.crt", f"{STATE_PKI}/admin.crt", f"{STATE_PKI}/admin.key")


def render(k: Kubeconfig, admin_template: bool = False) -> File:
    return File(k.path, template(__file__, "kubeconfig.j2", k=k, admin_template=admin_template), 0o600)


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    return [render(k) for k in host_kubeconfigs(ctx.topo, host)]


def cluster_files(ctx: RenderContext) -> list[File]:
    return [render(admin_kubeconfig(ctx.topo), admin_template=True)]
