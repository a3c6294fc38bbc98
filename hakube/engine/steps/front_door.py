"""The front-door step: the load balancers, then the VIP (keepalived or pacemaker); gated
on exactly one host holding the VIP and the API answering through it with TLS verified."""

from __future__ import annotations

import asyncio

from ...components import pacemaker
from .. import services
from ..changes import PhaseReport
from ..context import Deploy
from ..gates import wait_endpoint_ready, wait_pacemaker_quorum, wait_vip_single_holder
from ..handoff import restarts
from ..plan import Action, execute


def front_door_order(lb_hosts: list[str], vip_hosts: list[str], lb: str, vip: str) -> list[tuple[str, str, bool]]:
    """(host, unit, owned by pacemaker) in the order they converge: every load balancer,
    ONE host at a time (restarting every load balancer at once is an outage), then the VIP
    (keepalived one host at a time; corosync everywhere, then pacemaker everywhere).
    Pure: fixture-tested in tests/unit/fixtures/steps/front-door/."""
    # pacemaker runs the load balancer together with the VIP, on one host at a time
    order = [(h, lb, vip == "pacemaker" and h in vip_hosts) for h in lb_hosts]
    if vip == "keepalived":
        order += [(h, "keepalived", False) for h in vip_hosts]
    elif vip == "pacemaker":
        order += [(h, "corosync", False) for h in vip_hosts] + [(h, "pacemaker", False) for h in vip_hosts]
    return order


async def phase_front_door(d: Deploy) -> None:
    cp = d.loaded.cluster.spec.control_plane
    with d.ui.phase("front door") as report:
        for host, unit, managed in front_door_order(d.topo.lb_hosts, d.topo.vip_hosts,
                                                    cp.load_balancer.provider, cp.vip.provider):
            actions = await d.converge_service(report, host, services.UNITS[unit], cluster_managed=managed)
            if unit == "keepalived" and restarts(actions, "keepalived", or_reloads=True) and not d.dry_run:
                # a VIP timer or peer change reloads (or restarts) keepalived host by host:
                # the next one changes only once the VIP sits on exactly one host again, so
                # two changes never overlap (a holder that restarts sends priority 0 and a
                # peer takes over at once; that peer must not be changing too)
                # (`systemctl reload` only signals: give it three adverts to take effect)
                await asyncio.sleep(3 * cp.vip.advert_interval)
                holder = await wait_vip_single_holder(d)
                d.ui.ok(holder, f"holds the VIP {d.topo.endpoint_host} after {host}'s keepalived change")
        if cp.vip.provider == "pacemaker":
            await _load_pacemaker_resources(d, report)
        if not d.dry_run:
            if d.topo.vip_hosts:
                holder = await wait_vip_single_holder(d)
                d.ui.ok(holder, f"holds the VIP {d.topo.endpoint_host}")
            await wait_endpoint_ready(d)
            d.ui.ok("local", f"{d.topo.api_url} ready, TLS verified")


async def _load_pacemaker_resources(d: Deploy, report: PhaseReport) -> None:
    first = d.topo.vip_hosts[0]
    crm = pacemaker.CRM_SCRIPT
    loaded = (await d.conns[first].run("crm_resource --list 2>/dev/null | grep -q hakube", check=False)).ok
    if crm in d.changed.get(first, set()) or not loaded:
        async def load() -> None:
            await wait_pacemaker_quorum(d, first)
            await d.conns[first].run(f"crm configure load update {crm}", what="loading the pacemaker resources",
                                     timeout=120)
        await execute(d, report, [Action(first, f"load {crm} into pacemaker", load)])
