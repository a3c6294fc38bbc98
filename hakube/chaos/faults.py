"""How chaos breaks machines: in the lab (crash, partition, pause: the real thing), or over
SSH on real hosts (the faults that SSH can do: stopping services, cutting links with the
firewall, a clean reboot). Each driver remembers what it did so a failed scenario can
undo everything and leave the cluster whole."""

from __future__ import annotations

import asyncio
import shlex
from typing import Protocol

from ..errors import HakubeError
from ..spec import Loaded
from ..topology import derive


class FaultDriver(Protocol):
    async def apply(self, action: str, machine: str, other: str | None = None) -> str: ...

    async def undo_all(self) -> None: ...


class LabFaults:
    """Faults on lab machines (hakube.lab.faults), run off the event loop."""

    def __init__(self, lab_name: str):
        from ..lab import faults

        self.lab = lab_name
        self._faults = faults
        self.down: set[str] = set()
        self.isolated: set[str] = set()
        self.paused: set[str] = set()
        self.cut: set[tuple[str, str]] = set()

    async def apply(self, action: str, machine: str, other: str | None = None) -> str:
        text = await asyncio.to_thread(self._faults.apply, self.lab, action, machine, other)
        if action in ("crash", "stop"):
            self.down.add(machine)
        elif action in ("start", "restart"):
            self.down.discard(machine)
        elif action == "isolate":
            self.isolated.add(machine)
        elif action == "heal":
            self.isolated.discard(machine)
            self.cut = {c for c in self.cut if machine not in c}
        elif action == "cut" and other:
            self.cut.add((machine, other))
        elif action == "pause":
            self.paused.add(machine)
        elif action == "resume":
            self.paused.discard(machine)
        return text

    async def undo_all(self) -> None:
        for m in sorted(self.paused):
            await self.apply("resume", m)
        for m in sorted(self.isolated | {a for a, _ in self.cut}):
            await self.apply("heal", m)
        for m in sorted(self.down):
            await self.apply("start", m)


class SSHFaults:
    """Faults a person can cause on real hosts over SSH. No crash: that needs the lab (or a
    power switch); a scenario that needs one says so instead of pretending."""

    ACTIONS = ("stop-service", "start-service", "isolate", "heal", "restart")

    def __init__(self, loaded: Loaded):
        self.loaded = loaded
        self.topo = derive(loaded.cluster)
        self.isolated: set[str] = set()
        self.stopped: set[tuple[str, str]] = set()

    async def _run(self, host: str, command: str, timeout: float = 60) -> str:
        from ..engine.deploy import run_once

        return await run_once(self.loaded, host, command, timeout)

    async def apply(self, action: str, machine: str, other: str | None = None) -> str:
        if action == "stop-service":
            await self._run(machine, f"systemctl stop {shlex.quote(other or '')}")
            self.stopped.add((machine, other or ""))
            return f"stopped {other}"
        if action == "start-service":
            await self._run(machine, f"systemctl start {shlex.quote(other or '')}")
            self.stopped.discard((machine, other or ""))
            return f"started {other}"
        if action == "isolate":
            peers = [h.address for h in self.topo.hosts if h.name != machine]
            rules = " && ".join(f"iptables -I INPUT -s {a} -j DROP -m comment --comment hakube-chaos && "
                                f"iptables -I OUTPUT -d {a} -j DROP -m comment --comment hakube-chaos" for a in peers)
            await self._run(machine, rules)
            self.isolated.add(machine)
            return f"isolated from {len(peers)} hosts with iptables"
        if action == "heal":
            await self._run(machine, "for c in INPUT OUTPUT; do while iptables -S $c | grep -q hakube-chaos; do "
                                     "iptables -D $c $(iptables -S $c | grep -m1 hakube-chaos | cut -d' ' -f3-); "
                                     "done; done")
            self.isolated.discard(machine)
            return "firewall rules removed"
        if action == "restart":
            await self._run(machine, "systemctl reboot", timeout=10)
            return "rebooting"
        raise HakubeError(f"the fault '{action}' needs lab machines (hakube lab); on real hosts over SSH "
                          f"hakube can do: {', '.join(self.ACTIONS)}")

    async def undo_all(self) -> None:
        for m in sorted(self.isolated):
            await self.apply("heal", m)
        for m, svc in sorted(self.stopped):
            await self.apply("start-service", m, svc)


def driver_for(loaded: Loaded, lab: str | None) -> FaultDriver:
    """The lab's driver when the cluster runs on a lab, else SSH."""
    if lab:
        return LabFaults(lab)
    from ..lab import labstate

    for candidate in labstate.all_labs():
        if candidate.name == loaded.cluster.name or candidate.cluster_yaml == loaded.source:
            return LabFaults(candidate.name)
    return SSHFaults(loaded)
