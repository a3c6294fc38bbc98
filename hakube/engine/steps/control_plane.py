"""The control-plane step: kube-apiserver, controller-manager and scheduler on each server,
one server at a time, each gated on its apiserver's /readyz before the next one changes
(restarting every apiserver at once is an outage). An apiserver that restarts is drained
on every HAProxy first and taken back after its /readyz (engine/handoff.py)."""

from __future__ import annotations

from .. import handoff, services
from ..context import Deploy
from ..gates import wait_apiserver_ready
from ..plan import execute


async def phase_control_plane(d: Deploy) -> None:
    if d.topo.distribution != "kubernetes":
        return
    with d.ui.phase("control plane") as report:
        for s in d.topo.server_join_order:  # one server at a time, each gated on /readyz
            back: list = []
            for svc in services.CONTROL_PLANE:
                actions = await d.service_actions(s, svc)
                if svc.unit == "kube-apiserver" and handoff.restarts(actions, svc.unit):
                    drain, back = handoff.drain_backend(d, s)  # the load balancers let go of it first
                    actions = drain + actions
                await execute(d, report, actions)
            if not d.dry_run:
                await wait_apiserver_ready(d, s)
                d.ui.ok(s, "apiserver ready (/readyz)")
            await execute(d, report, back)  # and take it back before the next server changes
        await execute(d, report, await handoff.left_drained(d))
