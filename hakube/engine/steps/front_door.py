"""The front-door step: the load balancers, then the VIP (keepalived or pacemaker); gated
on exactly one host holding the VIP and the API answering through it with TLS verified."""

from __future__ import annotations

from ...components import pacemaker
from .. import services
from ..changes import PhaseReport
from ..context import Deploy
from ..gates import wait_endpoint_ready, wait_pacemaker_quorum, wait_vip_single_holder
from ..plan import Action, execute


async def phase_front_door(d: Deploy) -> None:
    cp = d.loaded.cluster.spec.control_plane
    with d.ui.phase("front door") as report:
        lb = services.LOAD_BALANCERS[cp.load_balancer.provider]
        # pacemaker runs the load balancer together with the VIP, on one host at a time
        by_pacemaker = cp.vip.provider == "pacemaker"
        # one host at a time: restarting every load balancer at once is an outage
        for h in d.topo.lb_hosts:
            await d.converge_service(report, h, lb, cluster_managed=by_pacemaker and h in d.topo.vip_hosts)
        if cp.vip.provider == "keepalived":
            for h in d.topo.vip_hosts:
                await d.converge_service(report, h, services.KEEPALIVED)
        elif cp.vip.provider == "pacemaker":
            await _converge_pacemaker(d, report)
        if not d.dry_run:
            if d.topo.vip_hosts:
                holder = await wait_vip_single_holder(d)
                d.ui.ok(holder, f"holds the VIP {d.topo.endpoint_host}")
            await wait_endpoint_ready(d)
            d.ui.ok("local", f"{d.topo.api_url} ready, TLS verified")


async def _converge_pacemaker(d: Deploy, report: PhaseReport) -> None:
    for h in d.topo.vip_hosts:
        await d.converge_service(report, h, services.COROSYNC)
    for h in d.topo.vip_hosts:
        await d.converge_service(report, h, services.PACEMAKER)
    first = d.topo.vip_hosts[0]
    crm = pacemaker.CRM_SCRIPT
    loaded = (await d.conns[first].run("crm_resource --list 2>/dev/null | grep -q hakube", check=False)).ok
    if crm in d.changed.get(first, set()) or not loaded:
        async def load() -> None:
            await wait_pacemaker_quorum(d, first)
            await d.conns[first].run(f"crm configure load update {crm}", what="loading the pacemaker resources",
                                     timeout=120)
        await execute(d, report, [Action(first, f"load {crm} into pacemaker", load)])
