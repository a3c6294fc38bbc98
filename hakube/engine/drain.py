"""Draining a node before it leaves or reboots: cordon it, then evict its pods through the
Eviction API, so every PodDisruptionBudget is honoured (the API answers 429 while a
budget would be broken; we wait and ask again, as `kubectl drain` does).

DaemonSet pods stay (their controller would put them straight back, and they go with the
node), and so do static (mirror) pods. The pods that must move are listed first, so a
person watching knows what the wait is for, and the error on a timeout names the pods a
budget still holds. Talks to the API from this machine with the cluster's admin client.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from ..errors import HakubeError
from ..timeouts import scaled
from ..verify.clients import api_client

DRAIN_TIMEOUT = 300.0


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def pods_to_evict(doc: dict) -> list[PodRef]:
    """Of a pod list (GET /api/v1/pods?fieldSelector=spec.nodeName=...), the pods a drain
    moves: not DaemonSet pods, not static pods, not already finished."""
    out = []
    for p in doc.get("items", []):
        meta = p.get("metadata", {})
        if any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences", [])):
            continue
        if "kubernetes.io/config.mirror" in meta.get("annotations", {}):
            continue
        if p.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        out.append(PodRef(meta["namespace"], meta["name"]))
    return out


async def cordon(api: httpx.AsyncClient, base: str, node: str, unschedulable: bool = True) -> None:
    r = await api.patch(f"{base}/api/v1/nodes/{node}", json={"spec": {"unschedulable": unschedulable or None}},
                        headers={"Content-Type": "application/strategic-merge-patch+json"})
    if r.status_code == 404:
        return
    r.raise_for_status()


async def _on_node(api: httpx.AsyncClient, base: str, node: str) -> list[PodRef]:
    r = await api.get(f"{base}/api/v1/pods", params={"fieldSelector": f"spec.nodeName={node}"})
    r.raise_for_status()
    return pods_to_evict(r.json())


async def drain(api: httpx.AsyncClient, base: str, node: str, say=lambda text: None,
                timeout: float = DRAIN_TIMEOUT) -> list[PodRef]:
    """Cordon `node` and evict its pods; returns the pods that were moved. Raises
    HakubeError (naming the pods and why) when they are not gone within `timeout`."""
    await cordon(api, base, node)
    pods = await _on_node(api, base, node)
    if pods:
        say(f"evicting {len(pods)} pod(s): {', '.join(map(str, pods))}")
    deadline = time.monotonic() + scaled(timeout)
    held: dict[PodRef, str] = {}
    while True:
        left = await _on_node(api, base, node)
        if not left:
            return pods
        for p in left:
            body = {"apiVersion": "policy/v1beta1", "kind": "Eviction",
                    "metadata": {"name": p.name, "namespace": p.namespace}}
            r = await api.post(f"{base}/api/v1/namespaces/{p.namespace}/pods/{p.name}/eviction", json=body)
            if r.status_code == 429:  # a PodDisruptionBudget allows no disruption now
                held[p] = _message(r) or "a PodDisruptionBudget allows no disruption now"
            elif r.status_code in (200, 201, 404):
                held.pop(p, None)
            else:
                held[p] = f"HTTP {r.status_code}: {_message(r)}"
        if time.monotonic() > deadline:
            why = "; ".join(f"{p}: {held.get(p, 'still terminating')}" for p in left)
            raise HakubeError(f"{node}: its pods did not leave within {scaled(timeout):.0f} s ({why}); the node "
                              f"stays cordoned. Make room elsewhere (or relax the budget), then run the command again")
        await asyncio.sleep(2)


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json().get("message", ""))
    except ValueError:
        return r.text[:200]


async def drain_node(d, report, host: str, command: str) -> list[str]:
    """Cordon `host`'s node and evict its pods, through the API with the cluster's admin
    client, reporting in `d`'s run (a dry run lists the pods that would move); `command`
    is the one to run again after a failure. Returns the pods moved."""
    async with api_client(d.state_dir, timeout=10.0) as api:
        if d.dry_run:
            r = await api.get(f"{d.topo.api_url}/api/v1/pods", params={"fieldSelector": f"spec.nodeName={host}"})
            pods = [str(p) for p in pods_to_evict(r.json())] if r.status_code == 200 else []
            d.ui.change(report, host, f"would cordon the node and evict {len(pods)} pod(s)"
                        + (f": {', '.join(pods)}" if pods else ""))
            return pods
        try:
            moved = await drain(api, d.topo.api_url, host, say=lambda text: d.ui.info(host, text))
        except httpx.HTTPError as e:
            raise HakubeError(f"{host}: draining through {d.topo.api_url} failed: {e}; the cluster is as it was "
                              f"(the node may stay cordoned), run `hakube {command}` again") from None
    d.ui.change(report, host, f"cordoned the node and evicted {len(moved)} pod(s)"
                + (f": {', '.join(map(str, moved))}" if moved else ""))
    return [str(p) for p in moved]


async def is_cordoned(d, host: str) -> bool:
    """Whether `host`'s node is unschedulable now (False when there is no such node)."""
    async with api_client(d.state_dir, timeout=10.0) as api:
        try:
            r = await api.get(f"{d.topo.api_url}/api/v1/nodes/{host}")
        except httpx.HTTPError as e:
            raise HakubeError(f"{host}: reading its node through {d.topo.api_url} failed: {e}; nothing was "
                              "changed, run the command again") from None
        return r.status_code == 200 and bool(r.json().get("spec", {}).get("unschedulable"))


async def uncordon(d, host: str, attempts: int = 5) -> None:
    """Let pods be scheduled on `host`'s node again (retried: the API may be settling)."""
    async with api_client(d.state_dir, timeout=10.0) as api:
        for attempt in range(attempts):
            try:
                await cordon(api, d.topo.api_url, host, unschedulable=False)
                return
            except httpx.HTTPError as e:
                if attempt == attempts - 1:
                    raise HakubeError(f"{host}: uncordoning its node failed: {e}; it stays cordoned, run "
                                      f"`kubectl uncordon {host}` once the API answers") from None
                await asyncio.sleep(2)
