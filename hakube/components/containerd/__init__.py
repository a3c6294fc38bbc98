"""containerd's configuration on every node (distribution kubernetes).

containerd itself comes from the distribution's package (Debian: containerd 1.6), which
ships and enables containerd.service; hakube writes only /etc/containerd/config.toml.

Choices that other components must agree with:
- cgroup driver `cgroupfs` (SystemdCgroup = false), the same as the kubelet's
  `cgroupDriver` (components/kubelet imports CGROUP_DRIVER from here). cgroupfs needs no
  systemd cgroup delegation, which nodes that are themselves containers (the lab) lack.
- the pause (sandbox) image: version-aware, see PAUSE_IMAGES. The kubelet of 1.24 to 1.26
  names the same image so that its image garbage collector keeps it.
- CNI: plugins in /usr/lib/cni (where Debian's containernetworking-plugins installs them,
  not /opt/cni/bin), configuration in /etc/cni/net.d (components/cni).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...topology import HostPlan, Topology
from ..base import File, RenderContext, Unit, template

CONFIG = "/etc/containerd/config.toml"
SOCKET = "/run/containerd/containerd.sock"
RUNTIME_ENDPOINT = f"unix://{SOCKET}"
CGROUP_DRIVER = "cgroupfs"
CNI_BIN_DIR = "/usr/lib/cni"
CNI_CONF_DIR = "/etc/cni/net.d"

# The pause image each Kubernetes minor version was released with (kubeadm's default);
# a version uses the entry of the highest minor not above it. The lab builds this image
# offline from the Kubernetes source and imports it under this name, because containerd
# would otherwise try to pull it from a registry.
PAUSE_REGISTRY = "registry.k8s.io/pause"
PAUSE_IMAGES: tuple[tuple[tuple[int, int], str], ...] = (
    ((1, 20), "3.2"),
    ((1, 21), "3.4.1"),
    ((1, 22), "3.5"),
    ((1, 23), "3.6"),
    ((1, 24), "3.7"),
    ((1, 25), "3.8"),
    ((1, 26), "3.9"),
    ((1, 31), "3.10"),
)


def pause_image(minor: tuple[int, int]) -> str:
    """The pause image reference for a Kubernetes minor version, e.g. (1, 20) -> ...:3.2."""
    tag = PAUSE_IMAGES[0][1]
    for since, t in PAUSE_IMAGES:
        if minor >= since:
            tag = t
    return f"{PAUSE_REGISTRY}:{tag}"


@dataclass(frozen=True)
class ContainerdConfig:
    host: str
    sandbox_image: str
    systemd_cgroup: bool
    # Never set a container's oom_score_adj below containerd's own. Needed where
    # CAP_SYS_RESOURCE is missing (lab nodes: lowering the score fails and the sandbox
    # does not start); elsewhere it only stops containers from ranking below containerd
    # (-999) for the OOM killer, which none should.
    restrict_oom_score_adj: bool = True
    snapshotter: str = "overlayfs"
    cni_bin_dir: str = CNI_BIN_DIR
    cni_conf_dir: str = CNI_CONF_DIR
    socket: str = SOCKET


def config_for(topo: Topology, host: HostPlan) -> ContainerdConfig:
    return ContainerdConfig(
        host=host.name,
        sandbox_image=pause_image(topo.minor),
        systemd_cgroup=CGROUP_DRIVER == "systemd",
    )


def render(c: ContainerdConfig) -> list[File]:
    return [File(CONFIG, template(__file__, "config.toml.j2", c=c))]


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    if not host.runs("containerd"):
        return []
    return render(config_for(ctx.topo, host))


# ---- deploy facts: what the engine needs to run this component (engine/services.py) ----

# its images and containers, their runtime state, the pods' network namespaces and addresses
UNITS = (Unit("containerd", ("containerd",), leaves=("/var/lib/containerd", "/run/containerd", "/run/netns",
                                                     "/var/lib/cni")),)
PACKAGES = {"containerd": ["containerd", "runc", "containernetworking-plugins", "iptables", "conntrack"]}
