"""kube-vip: the control-plane VIP on K3s servers (vip.provider kube-vip), in ARP mode.

A DaemonSet on the servers, deployed by K3s itself from its manifests directory (every
server carries the same file, so whichever server starts first deploys it). kube-vip
does not need the VIP to exist first: the bootstrap server starts without it, kube-vip
then claims the VIP, and the other servers and agents join through it. That ordering is
the deploy's to respect: the VIP must answer before the second server joins.

Leader election decides which server holds the VIP (a Lease in kube-system); the leader
announces the address with gratuitous ARP. The timers below decide failover time.
The image cannot be pulled in the air-gapped lab; a real deployment pulls the pinned tag
(or the deploy imports it into K3s's containerd from spec.distribution.images).
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import paths
from ...topology import HostPlan, Topology
from ..base import File, RenderContext, template

IMAGE = "ghcr.io/kube-vip/kube-vip:v0.8.9"
MANIFEST = f"{paths.K3S_MANIFESTS}/kube-vip.yaml"
LEASE_NAME = "plndr-cp-lock"  # kube-vip's default name for the control-plane lease

# Failover timing (seconds). A leader that cannot renew its lease within RENEW_DEADLINE
# gives up the VIP; the others retry every RETRY_PERIOD and take the lease once it is
# LEASE_DURATION old. A crashed leader is replaced after about LEASE_DURATION +
# RETRY_PERIOD = 6 s (kube-vip's generated manifests use the same 5/3/1).
# Not lower: the lease is renewed through the API and etcd, and etcd's own leader
# election (1 s by default) plus a write must fit in RENEW_DEADLINE, or a healthy leader
# would drop the VIP during every unrelated etcd election.
LEASE_DURATION = 5
RENEW_DEADLINE = 3
RETRY_PERIOD = 1


@dataclass(frozen=True)
class KubeVip:
    image: str
    vip: str
    port: int  # the endpoint's port (the front door clients use)
    interface: str
    lease_name: str
    lease_duration: int
    renew_deadline: int
    retry_period: int


def config_for(topo: Topology) -> KubeVip:
    carriers = [topo.host(n) for n in topo.vip_hosts]
    interfaces = sorted({h.interface for h in carriers})
    if len(interfaces) != 1:
        # One DaemonSet, one interface name: servers that differ cannot share it.
        raise ValueError("kube-vip needs the same interface on every server; they have "
                         + ", ".join(f"{h.name}: {h.interface}" for h in carriers))
    return KubeVip(
        image=IMAGE,
        vip=topo.endpoint_host,
        port=topo.endpoint_port,
        interface=interfaces[0],
        lease_name=LEASE_NAME,
        lease_duration=LEASE_DURATION,
        renew_deadline=RENEW_DEADLINE,
        retry_period=RETRY_PERIOD,
    )


def render(k: KubeVip) -> list[File]:
    return [File(MANIFEST, template(__file__, "kube-vip.yaml.j2", k=k))]


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    if not host.runs("kube-vip"):
        return []
    return render(config_for(ctx.topo))
