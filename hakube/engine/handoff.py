"""Hand-offs before a planned restart, so that a change rolled over the servers costs no
write: what a careful operator does by hand before restarting a member.

- etcd: a member that leads and is about to restart first hands leadership to another
  healthy member (`etcdctl move-leader`): an election after a planned stop costs writes
  for an election timeout, a transfer costs none.
- kube-apiserver: before it restarts, every HAProxy in front of it drains it (no new
  connections; requests in flight finish), and after its /readyz passes, every HAProxy
  takes it back and is seen marking it UP before the next server changes. Without the
  drain, the load balancers keep sending new connections to a stopped apiserver until
  their health checks fail (fall x interval).

The VIP is not moved for an apiserver or etcd restart: it rides on the host's load
balancer, which keeps serving through the other backends; moving it would cost the
gratuitous-ARP switch for nothing. A keepalived restart hands the VIP over by itself
(priority 0 on stop, nopreempt on the way back).

nginx (open source) has no runtime API to drain an upstream; with nginx the apiserver
restarts without a drain and its passive checks (max_fails) take it out.

Each hand-off is a plan Action, so `hakube up --dry-run` shows it in its place in the order.
"""

from __future__ import annotations

import asyncio
import time

from ..facts import etcd as etcd_facts
from ..facts import haproxy as haproxy_facts
from ..timeouts import scaled
from .context import Deploy, GateError
from .plan import Action

DRAIN_WAIT = 3.0     # s: short requests in flight finish well within this; watches never do
BACK_UP_TIMEOUT = 30.0


def _runtime(command: str) -> str:
    return f"echo {command!r} | socat stdio UNIX-CONNECT:{haproxy_facts.ADMIN_SOCKET}"


def haproxy_hosts(d: Deploy) -> list[str]:
    """The load balancers that send traffic to the apiservers and can drain one."""
    return [h for h in d.topo.lb_hosts if d.host(h).runs("haproxy")]


def restarts(actions: list[Action], unit: str, or_reloads: bool = False) -> bool:
    verbs = ("restart", "reload") if or_reloads else ("restart",)
    return any(a.sentence.startswith(tuple(f"{v} {unit} " for v in verbs)) for a in actions)


def drain_backend(d: Deploy, server: str, why: str = "it restarts next") -> tuple[list[Action], list[Action]]:
    """(before, after) the restart of `server`'s apiserver: drain it on every HAProxy, and
    take it back once ready, waiting until each HAProxy marks it UP."""
    backend = f"{haproxy_facts.BACKEND}/{server}"
    before, after = [], []
    for lb in haproxy_hosts(d):
        async def drain(lb=lb) -> None:
            if not await _serving(d, lb):
                return
            await d.conns[lb].run(_runtime(f"set server {backend} state drain"),
                                  what=f"draining {server} on {lb}'s HAProxy")
            deadline = time.monotonic() + DRAIN_WAIT
            while time.monotonic() < deadline and await _sessions(d, lb, server) > 0:
                await asyncio.sleep(0.2)

        async def ready(lb=lb) -> None:
            if not await _serving(d, lb):
                return
            await d.conns[lb].run(_runtime(f"set server {backend} state ready"),
                                  what=f"taking {server} back on {lb}'s HAProxy")
            await _wait_up(d, lb, server)

        before.append(Action(lb, f"drain the apiserver backend {server} ({why})", drain))
        after.append(Action(lb, f"return the apiserver backend {server} to service and see it UP", ready))
    return before, after


async def _serving(d: Deploy, lb: str) -> bool:
    """Whether HAProxy runs on `lb` (active, its admin socket there: a socket file alone
    may be left from an earlier run). With pacemaker it runs on the VIP holder only:
    elsewhere there is nothing to drain. (A HAProxy that should run and does not is the
    front door step's to fix, and status's to report.)"""
    return (await d.conns[lb].run(f"systemctl is-active --quiet haproxy && test -S {haproxy_facts.ADMIN_SOCKET}",
                                  check=False)).ok


async def _backend(d: Deploy, lb: str, server: str) -> haproxy_facts.BackendState | None:
    """How `lb`'s HAProxy sees `server` now (None: no answer, or no such server)."""
    r = await d.conns[lb].run(haproxy_facts.SHOW_STAT, check=False)
    if not r.ok:
        return None
    return next((b for b in haproxy_facts.parse_show_stat(r.stdout) if b.server == server), None)


async def left_drained(d: Deploy) -> list[Action]:
    """Backends hakube drained and an interrupted run never took back (a restart that
    failed, a run stopped by Ctrl-C): every apiserver of the spec is in service once the
    control plane step ends. hakube is the only one that drains them (an operator who
    wants one out edits the spec, or uses HAProxy's own socket knowingly)."""
    out: list[Action] = []
    for lb in haproxy_hosts(d):
        if not await _serving(d, lb):
            continue
        r = await d.conns[lb].run(haproxy_facts.SHOW_STAT, check=False)
        rows = haproxy_facts.parse_show_stat(r.stdout) if r.ok else []
        for b in rows:
            if b.server in d.topo.servers and b.status.startswith(("DRAIN", "MAINT")):
                backend = f"{haproxy_facts.BACKEND}/{b.server}"

                async def ready(lb=lb, backend=backend) -> None:
                    await d.conns[lb].run(_runtime(f"set server {backend} state ready"),
                                          what=f"taking {backend} back on {lb}'s HAProxy")
                how = "draining" if b.status.startswith("DRAIN") else "in maintenance"
                out.append(Action(lb, f"return the apiserver backend {b.server} to service (a run that did not "
                                      f"finish left it {how})", ready))
    return out


async def _sessions(d: Deploy, lb: str, server: str) -> int:
    b = await _backend(d, lb, server)
    return b.sessions if b else 0


async def _wait_up(d: Deploy, lb: str, server: str) -> None:
    deadline = time.monotonic() + scaled(BACK_UP_TIMEOUT)
    seen = "no answer"
    while time.monotonic() < deadline:
        b = await _backend(d, lb, server)
        if b is not None:
            seen = f"{b.status} (last check {b.check})"
            if b.status == "UP":
                return
        await asyncio.sleep(0.2)
    raise GateError(lb, f"HAProxy marks {server} UP within {scaled(BACK_UP_TIMEOUT):.0f} s of its /readyz",
                    seen, hint="see `hakube status`; the backend stays in service once its checks pass")


def move_etcd_leader(d: Deploy, host: str, view: etcd_facts.EtcdView, why: str = "restarts next",
                     avoid: tuple[str, ...] = ()) -> list[Action]:
    """Before restarting (or removing) `host`'s etcd member: if it leads, hand leadership
    to another member (the next in join order, not one of `avoid`), so it costs no election."""
    if not view.healthy or view.leader_id is None or view.leader_id != view.member_id:
        return []
    others = [m for m in view.members if m.id != view.member_id and m.name in d.topo.etcd_hosts
              and m.name not in avoid and not m.is_learner]
    if not others:
        return []
    order = {name: i for i, name in enumerate(d.topo.etcd_hosts)}
    target = min(others, key=lambda m: order.get(m.name, len(order)))

    async def move() -> None:
        await d.conns[host].run(f"{etcd_facts.ETCDCTL} {etcd_facts.LOCAL} move-leader {target.id}",
                                what=f"moving etcd leadership to {target.name}")

    return [Action(host, f"move etcd leadership to {target.name} (this member leads and {why})", move)]
