"""Nodes and add-ons: the pipeline steps after the control plane.

Every node (servers too, tainted) runs containerd, the pod network, kubelet and
kube-proxy. Agents join in parallel, through the front door: the VIP, or their local
proxy (agents-local); `up` waits until every node is Ready. Add-on manifests are applied
server-side from a server, and only when they changed.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import tarfile
import time
from pathlib import Path

from .. import paths
from ..components import cni, containerd, kube_proxy, kubelet
from ..errors import HakubeError
from ..timeouts import scaled
from .changes import Desired, PhaseReport
from .services import Service

CONTAINERD = Service("containerd", (containerd,))
POD_ROUTES = Service("hakube-pod-routes", (cni,))
KUBELET = Service("kubelet", (kubelet,),
                  (paths.CA_CRT, paths.KUBELET_CLIENT_CRT, paths.KUBELET_CLIENT_KEY, paths.KUBELET_SERVING_CRT,
                   paths.KUBELET_SERVING_KEY), f"{paths.BIN}/kubelet", borrowed=(paths.KUBECONFIG_KUBELET,))
KUBE_PROXY = Service("kube-proxy", (kube_proxy,), (paths.CA_CRT, paths.KUBE_PROXY_CRT, paths.KUBE_PROXY_KEY),
                     f"{paths.BIN}/kube-proxy", borrowed=(paths.KUBECONFIG_KUBE_PROXY,))
NODE_READY_TIMEOUT = 180.0
IMAGE_DIR = "/var/lib/hakube/images"
MANIFEST_DIR = "/etc/hakube/manifests"


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


async def _images(d, report: PhaseReport, host: str) -> None:
    folder = d.loaded.resolve(d.loaded.cluster.spec.distribution.images)
    if folder is None:
        return  # hosts with registry access pull images as usual
    conn = d.conns[host]
    r = await conn.run("ctr -n k8s.io images ls -q", check=False)
    have = set(r.stdout.split())
    for archive, ref in image_archives(folder):
        if ref in have:
            continue
        if d.dry_run:
            d.ui.change(report, host, f"would load image {ref} from {archive.name}")
            continue
        dest = f"{IMAGE_DIR}/{archive.name}"
        await conn.run(f"mkdir -p {IMAGE_DIR}")
        await conn.put_file(dest, archive, mode=0o644)  # type: ignore[attr-defined]
        await conn.run(f"ctr -n k8s.io images import {shlex.quote(dest)}", what=f"loading image {ref}", timeout=300)
        d.ui.change(report, host, f"loaded image {ref}")


async def phase_nodes(d) -> None:
    nodes = [h.name for h in d.topo.hosts if h.runs("kubelet")]
    if not nodes:
        return
    with d.ui.phase("nodes") as report:
        async def one(h: str) -> None:
            await d.converge_service(report, h, CONTAINERD)
            if not d.dry_run or (await d.conns[h].run("test -S /run/containerd/containerd.sock", check=False)).ok:
                await _images(d, report, h)
            await d.converge_service(report, h, POD_ROUTES)
            await d.converge_service(report, h, KUBELET)
            await d.converge_service(report, h, KUBE_PROXY)

        # in parallel: a node joining never risks quorum, and agents must not wait in line
        await asyncio.gather(*(one(h) for h in nodes))
        if not d.dry_run:
            await wait_nodes_ready(d, nodes)
            await _labels_and_taints(d, report)


async def wait_nodes_ready(d, nodes: list[str], timeout: float = NODE_READY_TIMEOUT) -> None:
    from .deploy import GateError, admin_client

    deadline = time.monotonic() + scaled(timeout)
    seen: dict[str, str] = {}
    with admin_client(d.state_dir) as client, d.ui.waiting(f"waiting for {len(nodes)} nodes to be Ready"):
        while time.monotonic() < deadline:
            try:
                r = await asyncio.to_thread(client.get, f"{d.topo.api_url}/api/v1/nodes")
                items = {n["metadata"]["name"]: n for n in r.json().get("items", [])}
            except Exception as e:
                items, seen["api"] = {}, str(e)
            for n in nodes:
                cond = {c["type"]: c for c in items.get(n, {}).get("status", {}).get("conditions", [])}
                ready = cond.get("Ready", {})
                seen[n] = "Ready" if ready.get("status") == "True" else \
                    (ready.get("message") or ("not registered" if n not in items else "not Ready"))
            if all(seen.get(n) == "Ready" for n in nodes):
                for n in nodes:
                    d.ui.ok(n, "node Ready")
                return
            await asyncio.sleep(2)
    bad = [n for n in nodes if seen.get(n) != "Ready"]
    raise GateError(bad[0], f"nodes {', '.join(nodes)} Ready within {scaled(timeout):.0f} s",
                    "; ".join(f"{n}: {seen.get(n)}" for n in bad), await d.journal(bad[0], "kubelet"))


async def _labels_and_taints(d, report: PhaseReport) -> None:
    """Labels and taints from the spec on existing nodes (the kubelet sets them only when
    it registers). Only hakube's own keys are touched; nothing else is removed."""
    from .deploy import admin_client

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
            await asyncio.to_thread(client.patch, f"{d.topo.api_url}/api/v1/nodes/{h.name}", json=patch,
                                    headers={"Content-Type": "application/strategic-merge-patch+json"})
            d.ui.change(report, h.name, "set " + ", ".join([f"label {k}={v}" for k, v in missing.items()] +
                                                           [f"taint {t['key']}" for t in add]))


def _taint(text: str) -> dict:
    key_value, effect = text.rsplit(":", 1)
    key, _, value = key_value.partition("=")
    return {"key": key, "value": value, "effect": effect} if value else {"key": key, "effect": effect}


# ---- add-ons ----------------------------------------------------------------------------------


async def phase_addons(d) -> None:
    """Apply the cluster-level manifests (hakube's RBAC, CoreDNS, monitoring RBAC, dashboard,
    ingress, MetalLB) server-side, from the first server, only when they changed or their
    objects are missing. The apiserver validates them (server-side apply)."""
    if d.topo.distribution != "kubernetes":
        return
    from ..render import render

    manifests = [f for f in render(d.topo, d.render_ctx.secrets).cluster if f.path.startswith("manifests/")]
    if not manifests:
        return
    with d.ui.phase("add-ons") as report:
        host = d.topo.servers[0]
        conn = d.conns[host]
        kubectl = f"{paths.BIN}/kubectl --kubeconfig {paths.KUBECONFIG_ADMIN}"
        for f in manifests:
            dest = f"{MANIFEST_DIR}/{Path(f.path).name}"
            desired = Desired(dest, f.content.encode(), 0o600)
            changes = await d.converge_files(report, host, [desired])
            present = (await conn.run(f"{kubectl} get -f {dest} -o name", check=False, timeout=60)).ok
            if not changes and present:
                d.ui.info(host, f"{Path(f.path).name} applied and unchanged")
                continue
            if d.dry_run:
                d.ui.change(report, host, f"would apply {Path(f.path).name}")
                continue
            r = await conn.run(f"{kubectl} apply --server-side --force-conflicts --field-manager=hakube -f {dest}",
                               check=False, timeout=120)
            if not r.ok:
                raise HakubeError(f"{host}: applying {f.path} failed:\n{r.stderr.strip()}")
            d.ui.change(report, host, f"applied {Path(f.path).name} ({len(r.stdout.splitlines())} objects)")


# ---- monitoring ---------------------------------------------------------------------------------

# Each Debian-packaged service and the rendered files it reads (components/monitoring renders
# them all; a change restarts only the service that reads the file).
MONITORING = [
    ("node-exporter", Service("prometheus-node-exporter", (), borrowed=("/etc/default/prometheus-node-exporter",))),
    ("prometheus", Service("prometheus", (), (paths.MONITORING_CA_CRT, paths.MONITORING_ETCD_CA_CRT,
                                               paths.MONITORING_CLIENT_CRT, paths.MONITORING_CLIENT_KEY,
                                               paths.MONITORING_ETCD_CLIENT_CRT, paths.MONITORING_ETCD_CLIENT_KEY),
                           borrowed=("/etc/default/prometheus", "/etc/prometheus/prometheus.yml",
                                     "/etc/prometheus/rules/hakube-ha.rules.yml"))),
    ("alertmanager", Service("prometheus-alertmanager", (), borrowed=("/etc/default/prometheus-alertmanager",
                                                                      "/etc/prometheus/alertmanager.yml"))),
    ("blackbox-exporter", Service("prometheus-blackbox-exporter", (), (paths.MONITORING_CA_CRT,),
                                  borrowed=("/etc/default/prometheus-blackbox-exporter", "/etc/prometheus/blackbox.yml"))),
]
# The VIP-presence exporter: a timer; its script is read afresh at every run.
VIP_PRESENCE = Service("hakube-vip-presence.timer", (),
                       borrowed=("/etc/systemd/system/hakube-vip-presence.service",
                                 "/etc/systemd/system/hakube-vip-presence.timer", f"{paths.LIBEXEC}/vip-presence"),
                       ignore=(f"{paths.LIBEXEC}/vip-presence",))


async def phase_monitoring(d) -> None:
    """Node exporter everywhere, the VIP-presence timer where the VIP can live, and
    Prometheus, Alertmanager and the blackbox exporter on the monitoring hosts (default: the
    servers), all from Debian's packages; gated on every Prometheus answering."""
    if not d.loaded.cluster.spec.addons.monitoring.enabled:
        return
    with d.ui.phase("monitoring") as report:
        async def one(h: str) -> None:
            host = d.host(h)
            for component, svc in MONITORING:
                if host.runs(component):
                    await d.converge_service(report, h, svc)
            if VIP_PRESENCE.borrowed[0] in d.rendered(h):
                await d.converge_service(report, h, VIP_PRESENCE)

        await asyncio.gather(*(one(h.name) for h in d.topo.hosts))
        if not d.dry_run:
            await _wait_prometheus(d)


async def _wait_prometheus(d, timeout: float = 90.0) -> None:
    import httpx

    from .deploy import GateError

    hosts = [h.name for h in d.topo.hosts if h.runs("prometheus")]
    deadline = time.monotonic() + scaled(timeout)
    seen = {}
    async with httpx.AsyncClient(timeout=3) as client:
        while time.monotonic() < deadline:
            for h in hosts:
                try:
                    r = await client.get(f"http://{d.topo.address(h)}:9090/-/ready")
                    seen[h] = "ready" if r.status_code == 200 else f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    seen[h] = type(e).__name__
            if all(v == "ready" for v in seen.values()):
                for h in hosts:
                    d.ui.ok(h, "Prometheus ready")
                return
            await asyncio.sleep(2)
    bad = next(h for h in hosts if seen.get(h) != "ready")
    raise GateError(bad, "Prometheus ready on :9090", seen.get(bad, "no answer"), await d.journal(bad, "prometheus"))
