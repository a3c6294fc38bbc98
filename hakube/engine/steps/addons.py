"""The add-ons step: the cluster-level manifests (hakube's RBAC, CoreDNS, monitoring RBAC,
dashboard, ingress, MetalLB), from this run's render, applied server-side from the first
server only when they changed or their objects are missing (the apiserver validates them)."""

from __future__ import annotations

from pathlib import Path

from ... import paths
from ...errors import HakubeError
from ..changes import Desired
from ..context import Deploy
from ..plan import Action, execute

MANIFEST_DIR = f"{paths.ETC}/manifests"


async def phase_addons(d: Deploy) -> None:
    """Apply the cluster-level manifests (hakube's RBAC, CoreDNS, monitoring RBAC, dashboard,
    ingress, MetalLB) server-side, from the first server, only when they changed or their
    objects are missing. The apiserver validates them (server-side apply)."""
    if d.topo.distribution != "kubernetes":
        return
    manifests = [f for f in d.files.cluster if f.path.startswith("manifests/")]
    if not manifests:
        return
    with d.ui.phase("add-ons") as report:
        host = d.topo.servers[0]
        conn = d.conns[host]
        kubectl = f"{paths.BIN}/kubectl --kubeconfig {paths.KUBECONFIG_ADMIN}"
        for f in manifests:
            dest = f"{MANIFEST_DIR}/{Path(f.path).name}"
            desired = Desired(dest, f.content.encode(), 0o600)
            actions = await d.file_actions(host, [desired])
            present = (await conn.run(f"{kubectl} get -f {dest} -o name", check=False, timeout=60)).ok
            if not actions and present:
                d.ui.info(host, f"{Path(f.path).name} applied and unchanged")
                continue
            actions.append(Action(host, f"apply {Path(f.path).name} (server-side)",
                                  lambda dest=dest, f=f: _apply(conn, kubectl, host, dest, f.path)))
            await execute(d, report, actions)


async def _apply(conn, kubectl: str, host: str, dest: str, name: str) -> None:
    r = await conn.run(f"{kubectl} apply --server-side --force-conflicts --field-manager=hakube -f {dest}",
                       check=False, timeout=120)
    if not r.ok:
        raise HakubeError(f"{host}: applying {name} failed:\n{r.stderr.strip()}")
