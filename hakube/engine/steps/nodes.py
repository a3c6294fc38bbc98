"""The nodes step: every node (servers too, tainted) runs containerd, the pod network,
the kubelet and kube-proxy. Nodes converge in parallel (a node joining never risks quorum,
and agents must not wait in line), through the front door: the VIP, or their local proxy
(agents-local); gated on every node Ready. Then the spec's labels and taints."""

from __future__ import annotations

import asyncio
import json
import shlex
import tarfile
from pathlib import Path

from ...errors import HakubeError
from ...verify.clients import admin_client
from .. import services
from ..changes import PhaseReport
from ..context import Deploy
from ..gates import wait_nodes_ready
from ..plan import Action, execute

IMAGE_DIR = "/var/lib/hakube/images"


def image_archives(folder: Path) -> list[tuple[Path, str]]:
    """(archive, image reference) for each OCI archive in `folder`. The reference comes from
    manifest.json when the folder has one (the lab writes it), else from the archive's own
    index.json annotation, as `ctr images import` reads it."""
    listed = folder / "manifest.json"
    if listed.exists():
        data = json.loads(listed.read_text())
        return [(folder / i["archive"], i["ref"]) for i in data.get("images", {}).values()]
    out = []
    for archive in sorted(folder.glob("*.tar")):
        with tarfile.open(archive) as tar:
            index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        for m in index.get("manifests", []):
            ref = m.get("annotations", {}).get("io.containerd.image.name") or \
                m.get("annotations", {}).get("org.opencontainers.image.ref.name")
            if ref:
                out.append((archive, ref))
    return out


async def _images(d: Deploy, report: PhaseReport, host: str) -> None:
    folder = d.loaded.resolve(d.loaded.cluster.spec.distribution.images)
    if folder is None:
        return  # hosts with registry access pull images as usual
    conn = d.conns[host]
    r = await conn.run("ctr -n k8s.io images ls -q", check=False)
    have = set(r.stdout.split())
    actions: list[Action] = []
    for archive, ref in image_archives(folder):
        if ref in have:
            continue
        actions.append(Action(host, f"load image {ref} from {archive.name}",
                              lambda archive=archive, ref=ref: _load(conn, archive, ref)))
    await execute(d, report, actions)


async def _load(conn, archive: Path, ref: str) -> None:
    dest = f"{IMAGE_DIR}/{archive.name}"
    await conn.run(f"mkdir -p {IMAGE_DIR}")
    await conn.put_file(dest, archive, mode=0o644)  # type: ignore[attr-defined]
    await conn.run(f"ctr -n k8s.io images import {shlex.quote(dest)}", what=f"loading image {ref}", timeout=300)


async def phase_nodes(d: Deploy) -> None:
    nodes = [h.name for h in d.topo.hosts if h.runs("kubelet")]
    if not nodes:
        return
    with d.ui.phase("nodes") as report:
        async def one(h: str) -> None:
            await d.converge_service(report, h, services.CONTAINERD)
            if not d.dry_run or (await d.conns[h].run("test -S /run/containerd/containerd.sock", check=False)).ok:
                await _images(d, report, h)
            await d.converge_service(report, h, services.POD_ROUTES)
            await d.converge_service(report, h, services.KUBELET)
            await d.converge_service(report, h, services.KUBE_PROXY)

        # in parallel: a node joining never risks quorum, and agents must not wait in line
        await asyncio.gather(*(one(h) for h in nodes))
        if not d.dry_run:
            await _delete_replaced(d, report)
            await wait_nodes_ready(d, nodes)
            await _labels_and_taints(d, report)


async def _delete_replaced(d: Deploy, report: PhaseReport) -> None:
    """The node objects of the dead servers whose etcd members this run removed for their
    replacements (steps/etcd.py), when the spec no longer names them: a stale node keeps its
    pods "Running" on a machine that is gone. Not waited on to turn NotReady (the node
    controller takes 40 s after a crash): its member did not answer and the spec replaced it;
    a kubelet still running there would register the node again, and be reported."""
    named = {h.name for h in d.topo.hosts}
    gone = sorted(n for n in d.replaced if n not in named)
    if not gone:
        return
    with admin_client(d.state_dir) as client:
        for n in gone:
            r = await asyncio.to_thread(client.get, f"{d.topo.api_url}/api/v1/nodes/{n}")
            if r.status_code != 200:
                continue

            async def delete(n=n) -> None:
                x = await asyncio.to_thread(client.delete, f"{d.topo.api_url}/api/v1/nodes/{n}")
                if x.status_code not in (200, 202, 404):
                    raise HakubeError(f"deleting the node {n} failed: HTTP {x.status_code} {x.text[:200]}")
            await execute(d, report, [Action("local", f"delete the node {n} (its machine is gone, "
                                                      "its etcd member was replaced)", delete)])


async def _labels_and_taints(d: Deploy, report: PhaseReport) -> None:
    """Labels and taints from the spec on existing nodes (the kubelet sets them only when
    it registers). Only hakube's own keys are touched; nothing else is removed."""
    with admin_client(d.state_dir) as client:
        for h in d.topo.hosts:
            if not h.runs("kubelet"):
                continue
            r = await asyncio.to_thread(client.get, f"{d.topo.api_url}/api/v1/nodes/{h.name}")
            node = r.json()
            labels = node["metadata"].get("labels", {})
            want = dict(h.labels)
            missing = {k: v for k, v in want.items() if labels.get(k) != v}
            taints = node["spec"].get("taints") or []
            have = {(t["key"], t.get("value", ""), t["effect"]) for t in taints}
            wanted = [_taint(t) for t in h.taints]
            add = [t for t in wanted if (t["key"], t.get("value", ""), t["effect"]) not in have]
            if not missing and not add:
                continue
            patch: dict = {"metadata": {"labels": missing}} if missing else {}
            if add:
                patch["spec"] = {"taints": taints + add}
            url = f"{d.topo.api_url}/api/v1/nodes/{h.name}"
            await execute(d, report, [Action(
                h.name, "set " + ", ".join([f"label {k}={v}" for k, v in missing.items()] +
                                           [f"taint {t['key']}" for t in add]),
                lambda url=url, patch=patch: asyncio.to_thread(
                    client.patch, url, json=patch,
                    headers={"Content-Type": "application/strategic-merge-patch+json"}))])


def _taint(text: str) -> dict:
    key_value, effect = text.rsplit(":", 1)
    key, _, value = key_value.partition("=")
    return {"key": key, "value": value, "effect": effect} if value else {"key": key, "effect": effect}
