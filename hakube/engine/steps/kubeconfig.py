"""The kubeconfig step: the admin kubeconfig on this machine, pointing at the front door,
with the cluster CA (TLS verification on). Written only when its text or mode differs."""

from __future__ import annotations

import asyncio

from ...kubeconfig import write_private, kubeconfig_text
from ..context import Deploy
from ..plan import Action, execute


async def phase_kubeconfig(d: Deploy) -> None:
    with d.ui.phase("kubeconfig") as report:
        path = d.state_dir / "kubeconfig"
        text = kubeconfig_text(d.topo, d.state_dir)
        if path.exists() and path.read_text() == text and path.stat().st_mode & 0o777 == 0o600:
            d.ui.info("local", f"{path} up to date")
            return
        await execute(d, report, [Action("local", f"write {path}",
                                         lambda: asyncio.to_thread(write_private, path, text))])
