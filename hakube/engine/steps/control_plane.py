"""The control-plane step: kube-apiserver, controller-manager and scheduler on each server,
one server at a time, each gated on its apiserver's /readyz before the next one changes
(restarting every apiserver at once is an outage)."""

from __future__ import annotations

from .. import services
from ..context import Deploy
from ..gates import wait_apiserver_ready


async def phase_control_plane(d: Deploy) -> None:
    if d.topo.distribution != "kubernetes":
        return
    with d.ui.phase("control plane") as report:
        for s in d.topo.server_join_order:  # one server at a time, each gated on /readyz
            for svc in services.CONTROL_PLANE:
                await d.converge_service(report, s, svc)
            if not d.dry_run:
                await wait_apiserver_ready(d, s)
                d.ui.ok(s, "apiserver ready (/readyz)")
