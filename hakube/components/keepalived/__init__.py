"""keepalived: the virtual IP, moved by VRRP to a host whose front door works.

Every member starts as BACKUP with `nopreempt`: the VIP stays where it is until its holder
fails, instead of jumping back when a higher-priority host returns (each jump is a short
outage for every client). Distinct priorities only break the tie at first election.
A track script takes a host out of the election (FAULT) when its load balancer, or the
apiserver the VIP leads to, stops answering.

A second one, with 3 or more servers, keeps a host out while it cannot reach a majority of
the servers. Without it a server cut off from its peers, but not from the clients, hears
no adverts, claims the VIP and announces it: clients follow its gratuitous ARP to a host
whose etcd member has no quorum. Measured in the lab (partition-server): a 15.7 s write
outage before, while the clients' ARP entry pointed at the isolated server. The holder's
periodic gratuitous ARP (garp_master_refresh) corrects clients if a claim still slips
through in the second before the check notices.
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import paths
from .. import haproxy
from ..base import File, RenderContext, Unit, template
from ...spec import quorum
from ...topology import HostPlan, Topology

CONFIG = "/etc/keepalived/keepalived.conf"
CHECK_SCRIPT = f"{paths.LIBEXEC}/check-apiserver"
MAJORITY_SCRIPT = f"{paths.LIBEXEC}/check-majority"
NOTIFY_SCRIPT = f"{paths.LIBEXEC}/vrrp-notify"
# keepalived's own view (MASTER, BACKUP, FAULT, STOP), written by NOTIFY_SCRIPT on every
# transition: what `hakube status` shows, without asking the track scripts again
STATE_FILE = paths.VRRP_STATE


@dataclass(frozen=True)
class Check:
    """One probe the track script makes; all must pass."""

    what: str
    kind: str  # "http" (plain, localhost), "https" (client certificate, CA verified), "tcp"
    target: str  # URL, or host:port for tcp


@dataclass(frozen=True)
class KeepalivedConfig:
    host: str
    address: str
    interface: str
    vip: str
    prefix: int
    router_id: int
    priority: int
    advert_interval: float
    peers: tuple[str, ...]  # unicast peers; empty means multicast
    password: str
    checks: tuple[Check, ...]
    check_interval: int
    check_fall: int
    check_rise: int
    cluster: str
    garp_refresh: int
    witnesses: tuple[str, ...] = ()  # the other servers' addresses, for the majority check
    witnesses_needed: int = 0  # how many of them must answer

    @property
    def vrrp_version(self) -> int:
        # Sub-second advertisements exist only in VRRPv3 (RFC 5798); v3 has no
        # authentication, so the password is used only with v2.
        return 2 if float(self.advert_interval).is_integer() else 3


def config_for(topo: Topology, host: HostPlan, password: str) -> KeepalivedConfig:
    vip = topo.control_plane.vip
    members = topo.vip_hosts
    idx = members.index(host.name)
    placement = topo.control_plane.load_balancer.placement
    checks = []
    if host.name in topo.lb_hosts and placement != "agents-local":
        if topo.control_plane.load_balancer.provider == "haproxy":
            checks.append(Check("HAProxy on this host runs (its own monitor URI)", "http",
                                f"http://127.0.0.1:{haproxy.HEALTH_PORT}/healthz"))
        else:
            checks.append(Check("nginx on this host accepts connections", "tcp",
                                f"127.0.0.1:{topo.endpoint_port}"))
    if "server" in host.roles:
        checks.append(Check("the local apiserver is alive", "https",
                            f"https://127.0.0.1:{topo.apiserver_port}/livez?exclude=etcd"))
    return KeepalivedConfig(
        host=host.name,
        address=host.address,
        interface=host.interface,
        vip=topo.endpoint_host,
        prefix=topo.network.node_cidr.prefixlen,
        router_id=topo.virtual_router_id,
        priority=150 - idx,
        advert_interval=vip.advert_interval,
        peers=tuple(topo.address(m) for m in members if m != host.name) if vip.unicast else (),
        password=password,
        checks=tuple(checks),
        check_interval=vip.check_interval,
        check_fall=vip.check_fall,
        check_rise=vip.check_rise,
        cluster=topo.name,
        garp_refresh=vip.garp_refresh,
        **_majority(topo, host) if vip.majority_check else {},
    )


def _majority(topo: Topology, host: HostPlan) -> dict:
    """Who the majority check pings: the other hosts that can hold the VIP and the servers,
    counted together. On the servers (the usual case) that is a majority of the servers; on
    load-balancer hosts of their own, losing servers alone does not take the VIP away (two
    of three servers crashing is something that shape survives), while a host cut off from
    everything still lets go. With fewer than 3 such hosts there is no majority to lose
    without losing the cluster's only path."""
    group = tuple(dict.fromkeys(topo.vip_hosts + topo.servers))
    if len(group) < 3:
        return {}
    others = tuple(topo.address(h) for h in group if h != host.name)
    return {"witnesses": others, "witnesses_needed": quorum(len(group)) - 1}


def render(cfg: KeepalivedConfig) -> list[File]:
    data = dict(c=cfg, paths=paths, check_script=CHECK_SCRIPT, notify_script=NOTIFY_SCRIPT, state_file=STATE_FILE)
    return [
        # Holds the VRRP password: readable by root only.
        File(CONFIG, template(__file__, "keepalived.conf.j2", **data), 0o600),
        File(CHECK_SCRIPT, template(__file__, "check-apiserver.sh.j2", **data), 0o755),
        File(NOTIFY_SCRIPT, template(__file__, "vrrp-notify.sh.j2", **data), 0o755),
    ] + ([File(MAJORITY_SCRIPT, template(__file__, "check-majority.sh.j2", **data), 0o755)]
         if cfg.witnesses else [])


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    if not host.runs("keepalived"):
        return []
    return render(config_for(ctx.topo, host, ctx.secrets.vrrp_password))


# ---- deploy facts: what the engine needs to run this component (engine/services.py) ----

# The track scripts are read afresh at every run: changing them needs no restart.
# reloads: on SIGHUP keepalived re-reads its configuration and keeps each VRRP instance's
# state, so a new peer list or advertisement interval leaves the VIP where it is (a restart
# sends priority 0 and moves it: one write window per restart of the holder)
UNITS = (Unit("keepalived", ("keepalived",), ignore=(CHECK_SCRIPT, MAJORITY_SCRIPT, NOTIFY_SCRIPT), reloads=True),)
PACKAGES = {"keepalived": ["keepalived", "curl", "iputils-ping"]}
