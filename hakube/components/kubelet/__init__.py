"""The kubelet on every node (distribution kubernetes): its configuration file and unit.

Security: anonymous requests to the kubelet are refused, others are authenticated by
client certificate (the cluster CA) or token webhook and authorized by the API (webhook);
the read-only port is closed. The kubelet serves with a certificate hakube issues
(paths.KUBELET_SERVING_*), which the apiserver verifies; rotation is off because hakube
owns the PKI.

Version-aware settings (minor version of spec.distribution.version):
- container runtime: `--container-runtime=remote` below 1.24 (dockershim was the default);
  the endpoint is the `--container-runtime-endpoint` flag below 1.27, the
  `containerRuntimeEndpoint` config field from 1.27.
- `--pod-infra-container-image` for 1.24 to 1.26 only: there it keeps the image garbage
  collector from deleting the pause image. Before 1.24 it only affects dockershim; from
  1.27 the kubelet asks the CRI. `--network-plugin` is dockershim-only as well and is
  therefore never set: containerd's CRI runs CNI itself.
- registration taints: `--register-with-taints` below 1.23, `registerWithTaints` in the
  config from 1.23. Servers get node-role.kubernetes.io/master:NoSchedule below 1.24 and
  node-role.kubernetes.io/control-plane:NoSchedule from 1.24 (kubeadm's convention),
  unless spec.controlPlane.schedulableServers.

Labels: the kubelet may only set labels outside the kubernetes.io and k8s.io namespaces
(NodeRestriction), so the role label it registers is `hakube.dev/role=server|agent`;
node-role.kubernetes.io/* labels must be added through the API by an administrator.

`failSwapOn` keeps the upstream default (true): a kubelet of these versions does not
account for swap, so a host with swap on should fail loudly here rather than run pods
whose memory limits do not hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import paths
from ...topology import HostPlan, Topology
from ..base import File, RenderContext, Unit, UnsafeValue, template
from ..containerd import CGROUP_DRIVER, RUNTIME_ENDPOINT, pause_image
from ..kube_apiserver import flag_args

CONFIG = f"{paths.K8S}/kubelet-config.yaml"
UNIT = "/etc/systemd/system/kubelet.service"
BINARY = f"{paths.BIN}/kubelet"
ROLE_LABEL = "hakube.dev/role"
RESOLV_CONF = "/etc/resolv.conf"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"

    @classmethod
    def parse(cls, text: str) -> "Taint":
        """'key=value:Effect' or 'key:Effect' (HostPlan.taints) -> Taint."""
        kv, effect = text.rsplit(":", 1)
        key, _, value = kv.partition("=")
        return cls(key, value, effect)


def server_taint(minor: tuple[int, int]) -> Taint:
    """The taint that keeps ordinary workloads off servers, as kubeadm names it per version."""
    role = "master" if minor < (1, 24) else "control-plane"
    return Taint(f"node-role.kubernetes.io/{role}", "", "NoSchedule")


def registration_taints(topo: Topology, host: HostPlan) -> tuple[Taint, ...]:
    out = []
    if "server" in host.roles and not topo.control_plane.schedulable_servers:
        out.append(server_taint(topo.minor))
    out += [Taint.parse(t) for t in host.taints]
    return tuple(out)


def node_labels(host: HostPlan) -> tuple[tuple[str, str], ...]:
    role = "server" if "server" in host.roles else "agent"
    return ((ROLE_LABEL, role),) + tuple(kv for kv in host.labels if kv[0] != ROLE_LABEL)


@dataclass(frozen=True)
class KubeletConfig:
    host: str
    node_ip: str
    cluster_dns: tuple[str, ...]
    cluster_domain: str
    pod_cidr: str
    cgroup_driver: str
    resolv_conf: str
    labels: tuple[tuple[str, str], ...]
    taints: tuple[Taint, ...]
    taints_in_config: bool  # >= 1.23: registerWithTaints; below, the flag
    runtime_endpoint: str
    runtime_endpoint_in_config: bool  # >= 1.27: containerRuntimeEndpoint; below, the flag
    remote_runtime_flag: bool  # < 1.24: --container-runtime=remote
    pod_infra_image: str | None  # 1.24 to 1.26: --pod-infra-container-image
    feature_gates: tuple[tuple[str, bool], ...]
    extra_args: tuple[str, ...]  # topo.kubernetes_options.kubeletExtraArgs, quoted for systemd

    @property
    def labels_flag(self) -> str:
        return ",".join(_list_item(f"{k}={v}", "--node-labels") for k, v in self.labels)

    @property
    def taints_flag(self) -> str:
        return ",".join(_list_item(str(t), "--register-with-taints") for t in self.taints)


def _list_item(item: str, where: str) -> str:
    """One entry of a comma-separated flag value: a comma in it would add another entry."""
    if "," in item:
        raise UnsafeValue(item, "a ',' would split it into two entries", where)
    return item


def config_for(topo: Topology, host: HostPlan) -> KubeletConfig:
    minor = topo.minor
    k8s = topo.kubernetes_options
    assert host.pod_cidr, f"{host.name} runs a kubelet but has no pod range"
    return KubeletConfig(
        host=host.name,
        node_ip=host.address,
        cluster_dns=(str(topo.network.cluster_dns),),
        cluster_domain=topo.network.cluster_domain,
        pod_cidr=host.pod_cidr,
        cgroup_driver=CGROUP_DRIVER,
        resolv_conf=RESOLV_CONF,
        labels=node_labels(host),
        taints=registration_taints(topo, host),
        taints_in_config=minor >= (1, 23),
        runtime_endpoint=RUNTIME_ENDPOINT,
        runtime_endpoint_in_config=minor >= (1, 27),
        remote_runtime_flag=minor < (1, 24),
        pod_infra_image=pause_image(minor) if (1, 24) <= minor < (1, 27) else None,
        feature_gates=tuple(sorted(k8s.feature_gates.items())) if k8s else (),
        extra_args=flag_args(k8s.kubelet_extra_args, "kubelet.service") if k8s else (),
    )


def render(c: KubeletConfig) -> list[File]:
    data = dict(c=c, paths=paths, config=CONFIG, binary=BINARY)
    return [
        File(CONFIG, template(__file__, "kubelet-config.yaml.j2", **data)),
        File(UNIT, template(__file__, "kubelet.service.j2", **data)),
    ]


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    if not host.runs("kubelet"):
        return []
    return render(config_for(ctx.topo, host))


# ---- deploy facts: what the engine needs to run this component (engine/services.py) ----

# curl: `hakube reboot` asks the kubelet's own health endpoint (loopback) whether this boot's
# kubelet runs, before trusting the node's Ready condition
PACKAGES = {"kubelet": ["curl"]}
UNITS = (Unit("kubelet", ("kubelet",),
              (paths.CA_CRT, paths.KUBELET_CLIENT_CRT, paths.KUBELET_CLIENT_KEY, paths.KUBELET_SERVING_CRT,
               paths.KUBELET_SERVING_KEY), f"{paths.BIN}/kubelet", borrowed=(paths.KUBECONFIG_KUBELET,),
              leaves=("/var/lib/kubelet", "/var/log/pods", "/var/log/containers")),)
BINARIES = {"kubelet": ["kubelet"]}
