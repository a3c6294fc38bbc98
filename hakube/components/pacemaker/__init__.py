"""Pacemaker + corosync: the virtual IP and the load balancer as one cluster resource.

`vip.provider: pacemaker` on topo.vip_hosts. Corosync 3 (knet, encrypted and
authenticated with a shared key) gives membership and quorum; Pacemaker runs one group,
the load balancer and then the VIP, on exactly one member and moves it when that member
or its load balancer fails.

Files per member:
- /etc/corosync/corosync.conf and /etc/corosync/authkey: identical on every member;
- /etc/hakube/pacemaker.crm: the resources as a crmsh script, loaded once (on any one
  member, the CIB is replicated) with `crm configure load update /etc/hakube/pacemaker.crm`;
  loading it again changes nothing.

Decisions, each explained where it is rendered:
- quorum: votequorum; `two_node: 1` with exactly 2 members (the survivor keeps quorum),
  and `no-quorum-policy=stop` in every case: with 3+ members a cut-off minority releases
  the VIP; with 2 members `two_node` already keeps the survivor quorate, and `stop` only
  bites at boot before both members have met once (wait_for_all), which is exactly when
  a lone member must not grab an address the other may still hold.
- stonith-enabled=false: hakube cannot know the machines' fence devices. Without fencing
  a hung or cut-off member may keep the VIP while another takes it; production clusters
  should configure a fence device and turn stonith on (see pacemaker.crm.j2).
- the group starts the load balancer before the VIP and stops it after: the address
  only arrives where something already listens on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base import File, RenderContext, Unit, template
from ... import paths
from ...topology import HostPlan, Topology

COROSYNC_CONF = "/etc/corosync/corosync.conf"
COROSYNC_AUTHKEY = "/etc/corosync/authkey"
CRM_SCRIPT = f"{paths.ETC}/pacemaker.crm"

# Totem token timeout. The default (3000 ms, plus 650 ms per member beyond two) means a
# crashed member is declared lost after about 4-8 s including consensus; on a LAN with
# sub-millisecond round trips 1000 ms is safe and brings VIP takeover near keepalived's
# (about 3.6 s). Lower values risk membership changes when a member stalls (a VM paused,
# heavy I/O), and every membership change can move the VIP.
TOKEN_MS = 1000

# Resource names in the CIB.
VIP_RESOURCE = "hakube-vip"
LB_RESOURCE = "hakube-lb"
GROUP = "hakube-endpoint"


@dataclass(frozen=True)
class Member:
    nodeid: int
    name: str
    address: str


@dataclass(frozen=True)
class PacemakerConfig:
    cluster: str
    members: tuple[Member, ...]
    token_ms: int
    vip: str
    prefix: int
    nic: str | None  # None when members name the interface differently: IPaddr2 finds it
    load_balancer: str | None  # systemd unit managed with the VIP; None: the VIP alone
    port: int  # where clients reach the VIP

    @property
    def two_node(self) -> bool:
        return len(self.members) == 2

    @property
    def no_quorum_policy(self) -> str:
        return "stop"


def config_for(topo: Topology) -> PacemakerConfig:
    members = tuple(Member(i + 1, n, topo.address(n)) for i, n in enumerate(topo.vip_hosts))
    interfaces = {topo.host(n).interface for n in topo.vip_hosts}
    provider = topo.control_plane.load_balancer.provider
    # agents-local: the members are servers without a load balancer; the VIP leads
    # straight to their apiservers.
    lb_here = all(topo.host(n).runs(provider) for n in topo.vip_hosts)
    return PacemakerConfig(
        cluster=topo.name,
        members=members,
        token_ms=TOKEN_MS,
        vip=topo.endpoint_host,
        prefix=topo.network.node_cidr.prefixlen,
        nic=interfaces.pop() if len(interfaces) == 1 else None,
        load_balancer=provider if lb_here else None,
        port=topo.endpoint_port,
    )


def render(cfg: PacemakerConfig, authkey: str) -> list[File]:
    data = dict(c=cfg, authkey_path=COROSYNC_AUTHKEY, crm_script=CRM_SCRIPT,
                vip_rsc=VIP_RESOURCE, lb_rsc=LB_RESOURCE, group=GROUP)
    return [
        File(COROSYNC_CONF, template(__file__, "corosync.conf.j2", **data)),
        # corosync uses the file's bytes as the key: exactly the secret, no newline.
        File(COROSYNC_AUTHKEY, authkey, 0o400),
        File(CRM_SCRIPT, template(__file__, "pacemaker.crm.j2", **data)),
    ]


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    if not host.runs("pacemaker"):
        return []
    return render(config_for(ctx.topo), ctx.secrets.corosync_authkey)


# ---- deploy facts: what the engine needs to run this component (engine/services.py) ----

# the cluster's configuration (CIB) and state: a host that is reset must not bring them back
UNITS = (Unit("corosync", ("pacemaker",), leaves=("/var/lib/corosync",)),
         Unit("pacemaker", leaves=("/var/lib/pacemaker/cib", "/var/lib/pacemaker/pengine")))
PACKAGES = {"corosync": ["corosync"], "pacemaker": ["pacemaker", "crmsh", "resource-agents"]}
