"""`hakube reboot`: reboot machines one at a time without losing quorum or a write (the
kernel-update case).

The order and the refusals are decided first (engine/rebooting.py): the VIP holder and the
etcd leader go last, and a reboot that would cost quorum or leave nothing else serving is
refused before any machine goes down. Then, for each machine in turn:
1. hand off what it serves, as `remove` does: keepalived stops (a VIP held here moves at
   once) or pacemaker stops (its resources move away), etcd leadership moves to another
   member, its apiserver is drained on every HAProxy, its node cordoned and its pods
   evicted (PodDisruptionBudgets honoured);
2. reboot it (`systemctl reboot`: systemd stops every unit cleanly), and wait until SSH
   answers from a new boot;
3. gate, before the next machine: its load balancer and keepalived running, its etcd
   member healthy, its apiserver ready, every HAProxy taking it back and marking it UP, the VIP (keepalived) or the corosync quorum
   (pacemaker) whole again, its node Ready, then uncordoned.
Before each machine the refusals are checked again on what etcd says then, so a member
that did not come back stops the reboot of the next one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ..components import etcd as etcd_component
from ..errors import HakubeError
from ..facts import etcd as etcd_facts
from ..spec import Loaded
from ..timeouts import scaled
from ..topology import derive
from ..transport import ConnectError, SSHConnector
from . import drain, handoff, rebooting
from .changes import PhaseReport
from .context import Deploy, GateError, session
from .gates import (vip_holders, wait_apiserver_ready, wait_etcd_healthy, wait_nodes_ready,
                    wait_pacemaker_quorum, wait_vip_single_holder)
from .plan import Action, execute
from .remove import healthy_members
from .ui import Reporter

# s from `systemctl reboot` to SSH answering from the new boot: a VM is back in well under
# a minute, real servers with slow firmware and RAID controllers take several.
BACK_TIMEOUT = 600.0
UNIT_TIMEOUT = 60.0

# What changes at every boot. The kernel's boot_id does on a real machine; a lab machine
# (a container) shares the host's kernel, so its init's start time (in clock ticks since
# the kernel booted) is read too.
BOOT_MARK = "cat /proc/sys/kernel/random/boot_id; cut -d' ' -f22 /proc/1/stat"
# the kubelet's own health endpoint (kubelet-config: healthzBindAddress 127.0.0.1, port 10248)
KUBELET_HEALTHY = "curl -sf --max-time 3 http://127.0.0.1:10248/healthz >/dev/null"


@dataclass
class Rebooted:
    """What `reboot` did: the machines in the order they rebooted, how long each was away
    (from the reboot command to SSH answering from the new boot), the pods each drain moved."""

    hosts: list[str] = field(default_factory=list)
    away_s: dict[str, float] = field(default_factory=dict)
    evicted: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"rebooted": self.hosts, "awaySeconds": self.away_s, "evicted": self.evicted}


async def reboot(loaded: Loaded, hosts: list[str] | None = None, dry_run: bool = False,
                 ui: Reporter | None = None) -> Rebooted:
    """Reboot `hosts` (default: every host of the spec) one at a time (see the module's
    docstring). HakubeError when refused, before the first machine goes down."""
    ui = ui or Reporter()
    targets = loaded.named(hosts, "name the hosts to reboot as the spec does")
    topo = derive(loaded.cluster)
    healthy = await healthy_members(topo)
    no = {h: rebooting.refusals(topo, h, healthy) for h in targets}
    no = {h: why for h, why in no.items() if why}
    if no:
        raise HakubeError("refusing to reboot: " + "; ".join(f"{h}: {'; '.join(why)}" for h, why in no.items())
                          + ". No machine was rebooted")
    done = Rebooted()
    async with session(loaded, dry_run, ui, "reboot") as d:
        holders = await vip_holders(d) if d.topo.vip_hosts else []
        if len(holders) > 1:
            raise HakubeError(f"refusing to reboot: {', '.join(holders)} all hold the VIP {d.topo.endpoint_host} "
                              "(see `hakube status`); fix that first. No machine was rebooted")
        seq = rebooting.order(topo, targets, holders[0] if holders else None, await _leader(d))
        ui.info("reboot", f"order: {', '.join(seq)}")
        for i, host in enumerate(seq):
            if i and not dry_run:
                why = rebooting.refusals(topo, host, await healthy_members(topo))
                if why:
                    raise HakubeError(f"stopped before rebooting {host}: {'; '.join(why)}. Rebooted so far: "
                                      f"{', '.join(done.hosts)}; run `hakube reboot` again for the rest once "
                                      "`hakube status` is healthy")
            with ui.phase(f"reboot {host}") as report:
                await _reboot_one(d, report, host, done, last=seq[-1])
            done.hosts.append(host)
    return done


async def _leader(d: Deploy) -> str | None:
    """The host whose etcd member leads now (None: no hakube etcd, or no answer)."""
    for s in d.topo.etcd_hosts:
        view = await etcd_facts.etcd_view(d.conns[s], etcd_component.member_for(d.topo, d.host(s)).data_dir)
        if view.healthy and view.leader_id:
            return next((m.name for m in view.members if m.id == view.leader_id), None)
    return None


async def _reboot_one(d: Deploy, report: PhaseReport, host: str, done: Rebooted, last: str) -> None:
    """Steps 1-3 of the module's docstring for `host`; `last`: the host that reboots last
    (etcd leadership is not handed to it, or it would move twice)."""
    h = d.host(host)
    # The node first: a drain that a budget holds up fails before anything else changed
    # (and the node is put back as it was). An operator's own cordon is kept.
    cordoned_before = h.is_node and not d.dry_run and await drain.is_cordoned(d, host)
    if h.is_node:
        try:
            done.evicted[host] = await drain.drain_node(d, report, host, "reboot")
        except HakubeError:
            if not cordoned_before:
                await drain.uncordon(d, host)
            raise
    try:
        await _hand_off_reboot_and_gate(d, report, host, last, done)
    except HakubeError as e:
        if not h.is_node or d.dry_run:
            raise
        raise HakubeError(f"{e}\n  {host}'s node stays cordoned: run `kubectl uncordon {host}` once it is "
                          f"healthy, or `hakube reboot {d.loaded.source} {host} --yes` again") from None
    if h.is_node:
        if cordoned_before:
            d.ui.info(host, "the node stays cordoned, as it was before the reboot")
        else:
            await execute(d, report, [Action(host, "uncordon the node", lambda: drain.uncordon(d, host))])


async def _hand_off_reboot_and_gate(d: Deploy, report: PhaseReport, host: str, last: str, done: Rebooted) -> None:
    h = d.host(host)
    conn = d.conns[host]
    provider = d.loaded.cluster.spec.control_plane.vip.provider
    vip_unit = {"keepalived": "keepalived", "pacemaker": "pacemaker"}.get(provider) if host in d.topo.vip_hosts else None
    first: list[Action] = []
    if vip_unit:
        moves = "a VIP held here moves at once" if vip_unit == "keepalived" else "its resources move to another member"
        first.append(Action(host, f"stop {vip_unit} ({moves})",
                            lambda: conn.run(f"systemctl stop {vip_unit}", what=f"stopping {vip_unit}", timeout=120)))
    if host in d.topo.etcd_hosts and h.runs("etcd"):
        view = await etcd_facts.etcd_view(conn, etcd_component.member_for(d.topo, h).data_dir)
        avoid = (host,) if host == last else (host, last)
        first += (handoff.move_etcd_leader(d, host, view, why="reboots next", avoid=avoid)
                  or handoff.move_etcd_leader(d, host, view, why="reboots next", avoid=(host,)))
    back: list[Action] = []
    if h.runs("kube-apiserver"):
        before, back = handoff.drain_backend(d, host, why="it reboots next")
        first += before
    await execute(d, report, first)
    if vip_unit and not d.dry_run:
        holder = await wait_vip_single_holder(d)
        d.ui.ok(holder, f"holds the VIP {d.topo.endpoint_host}")

    async def go() -> None:
        done.away_s[host] = await _reboot_and_reconnect(d, host)
        d.ui.ok(host, f"back from its reboot after {done.away_s[host]:.1f} s")
    await execute(d, report, [Action(host, "reboot the machine and wait until SSH answers from the new boot", go,
                                     announce=True)])
    if d.dry_run:
        await execute(d, report, back)
        if h.is_node:
            await execute(d, report, [Action(host, "uncordon the node once its kubelet runs and it is Ready")])
        return
    if vip_unit == "keepalived":
        await _wait_active(d, host, "keepalived")
    lb_unit = d.loaded.cluster.spec.control_plane.load_balancer.provider
    if host in d.topo.lb_hosts and vip_unit != "pacemaker":  # (pacemaker places the balancer itself)
        await _wait_active(d, host, lb_unit)
    if host in d.topo.etcd_hosts and h.runs("etcd"):
        await wait_etcd_healthy(d, host)
        d.ui.ok(host, "etcd member healthy")
    if h.runs("kube-apiserver"):
        await wait_apiserver_ready(d, host)
        d.ui.ok(host, "kube-apiserver ready")
    await execute(d, report, back)
    if vip_unit == "pacemaker":
        await wait_pacemaker_quorum(d, host)
        d.ui.ok(host, "pacemaker partition with quorum")
    if vip_unit:
        holder = await wait_vip_single_holder(d)
        d.ui.ok(holder, f"holds the VIP {d.topo.endpoint_host}")
    if h.is_node:
        # The node's Ready condition can still be the one from before the reboot (it goes
        # stale only after the controller's grace period): the kubelet answering its own
        # health check on this boot comes first.
        await _wait_active(d, host, "kubelet", check=KUBELET_HEALTHY)
        await wait_nodes_ready(d, [host])


async def _reboot_and_reconnect(d: Deploy, host: str) -> float:
    """Reboot `host` and return once a new connection reaches its new boot (replacing the
    run's connection to it); returns the seconds it was away."""
    old = d.conns[host]
    mark = (await old.run(BOOT_MARK, what="reading the boot's identity")).stdout
    start = time.monotonic()
    # --no-block: queue the reboot and return, so the command's answer comes back before
    # sshd stops (a lost connection here is the reboot under way, not an error)
    r = await old.run("systemctl --no-block reboot", check=False, what="rebooting")
    if not r.ok and r.exit_status != 255:  # 255: the connection went with the reboot
        raise HakubeError(f"{host}: `systemctl reboot` was refused: {(r.stderr or r.stdout).strip()}; "
                          "nothing was rebooted, the hand-off before it stays (run `hakube up` to undo it)")
    await old.close()
    deadline = start + scaled(BACK_TIMEOUT)
    seen = "the machine did not go down"
    with d.ui.waiting(f"{host}: waiting for the machine to come back"):
        while time.monotonic() < deadline:
            await asyncio.sleep(2)
            try:
                conn = await SSHConnector.open(old.target, d.log)
            except ConnectError as e:
                seen = str(e)
                continue
            r = await conn.run(BOOT_MARK, check=False)
            if r.ok and r.stdout != mark:
                d.conns[host] = conn
                return time.monotonic() - start
            await conn.close()
            seen = "SSH still answers from the boot before the reboot"
    raise GateError(host, f"the machine back from its reboot within {scaled(BACK_TIMEOUT):.0f} s", seen,
                    hint="see the machine's console; once it is up, `hakube status` shows what did not come back")


async def _wait_active(d: Deploy, host: str, unit: str, check: str = "") -> None:
    """Gate: `unit` active on `host` after the reboot (and `check` passes, when given)."""
    deadline = time.monotonic() + scaled(UNIT_TIMEOUT)
    seen = "inactive"
    command = f"systemctl is-active {unit}" + (f" && {check}" if check else "")
    while time.monotonic() < deadline:
        r = await d.conns[host].run(command, check=False, timeout=10)
        seen = (r.stdout.strip().splitlines() or ["no answer"])[0]
        if r.ok:
            return
        await asyncio.sleep(1)
    raise GateError(host, f"{unit} active{' and healthy' if check else ''} after the reboot within "
                          f"{scaled(UNIT_TIMEOUT):.0f} s", seen,
                    await d.journal(host, unit), hint="is it enabled? `hakube up` enables it again")

