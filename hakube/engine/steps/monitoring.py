"""The monitoring step: node exporter everywhere, the VIP-presence timer where the VIP can
live, and Prometheus, Alertmanager and the blackbox exporter on the monitoring hosts
(default: the servers), all from Debian's packages; gated on every Prometheus answering."""

from __future__ import annotations

import asyncio

from .. import services
from ..context import Deploy
from ..gates import wait_prometheus


async def phase_monitoring(d: Deploy) -> None:
    """Node exporter everywhere, the VIP-presence timer where the VIP can live, and
    Prometheus, Alertmanager and the blackbox exporter on the monitoring hosts (default: the
    servers), all from Debian's packages; gated on every Prometheus answering."""
    if not d.loaded.cluster.spec.addons.monitoring.enabled:
        return
    with d.ui.phase("monitoring") as report:
        async def one(h: str) -> None:
            host = d.host(h)
            for component, svc in services.MONITORING:
                if host.runs(component):
                    await d.converge_service(report, h, svc)
            if services.VIP_PRESENCE.borrowed[0] in d.rendered(h):
                await d.converge_service(report, h, services.VIP_PRESENCE)

        await asyncio.gather(*(one(h.name) for h in d.topo.hosts))
        if not d.dry_run:
            await wait_prometheus(d)
