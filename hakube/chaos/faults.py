"""How chaos breaks machines: in the lab (crash, partition, pause: the real thing), or over
SSH on real hosts (the faults that SSH can do: stopping services, cutting links with the
firewall, a clean reboot). Each driver remembers what it did so a failed scenario can
undo everything and leave the cluster whole."""

from __future__ import annotations

import asyncio
import shlex
from typing import Protocol

from ..components.units import CLUSTER_UNITS
from ..lab import faults as lab_faults
from ..lab import labstate
from ..errors import HakubeError
from ..spec import Loaded
from ..topology import derive
from ..transport.targets import run_once, ssh_targets


class FaultDriver(Protocol):
    async def apply(self, action: str, machine: str, other: str | None = None) -> str: ...

    async def undo_all(self) -> None: ...


class LabFaults:
    """Faults on lab machines (hakube.lab.faults), run off the event loop."""

    def __init__(self, lab_name: str):
        self.lab = lab_name
        self._faults = lab_faults
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
    """Faults on real hosts, done over SSH: what a person with root on the hosts can cause.

    crash    power loss, as the rest of the cluster sees it: the host's firewall drops all
             traffic but SSH (no reply, no reset, as from a dead machine), every cluster
             unit is killed with SIGKILL and kept down, and the VIP address vanishes.
             Unlike a real power loss the kernel keeps running (unwritten data survives),
             and pods' own processes are cut off rather than killed.
    start    the firewall opened again and the units started, as at boot
    stop     every cluster unit stopped cleanly; restart = stop, then start
    isolate  the firewall drops traffic with every other host and the VIP; heal opens it
    cut      the firewall of MACHINE drops traffic with OTHER only
    Pausing a host needs the lab. The firewall rules live in one chain, HAKUBE-CHAOS,
    so healing removes exactly what hakube added.
    """

    ACTIONS = ("crash", "start", "stop", "restart", "isolate", "heal", "cut")
    CHAIN = "HAKUBE-CHAOS"

    def __init__(self, loaded: Loaded):
        self.loaded = loaded
        self.topo = derive(loaded.cluster)
        self.ssh_port = {t.name: t.port for t in ssh_targets(loaded)}
        self.fenced: set[str] = set()  # hosts with hakube's firewall chain in place
        self.down: dict[str, list[str]] = {}  # host -> the units hakube stopped there

    async def _run(self, host: str, command: str, timeout: float = 60) -> str:
        return await run_once(self.loaded, host, command, timeout)

    def _fence(self, rules: list[str]) -> str:
        """Shell: (re)create the chain with `rules`, hooked first into INPUT, OUTPUT, FORWARD."""
        c = self.CHAIN
        lines = [f"iptables -w -N {c} 2>/dev/null || iptables -w -F {c}"]
        lines += [f"iptables -w -A {c} {r}" for r in rules]
        lines += [f"iptables -w -C {h} -j {c} 2>/dev/null || iptables -w -I {h} 1 -j {c}"
                  for h in ("INPUT", "OUTPUT", "FORWARD")]
        return " && ".join(lines)

    def _unfence(self) -> str:
        c = self.CHAIN
        return (f"for h in INPUT OUTPUT FORWARD; do while iptables -w -D $h -j {c} 2>/dev/null; do :; done; done; "
                f"iptables -w -F {c} 2>/dev/null; iptables -w -X {c} 2>/dev/null; true")

    def _silence_rules(self, host: str) -> list[str]:
        """Drop everything but SSH (this driver's own channel) and loopback."""
        port = self.ssh_port[host]
        return ["-i lo -j RETURN", "-o lo -j RETURN",
                f"-p tcp --dport {port} -j RETURN", f"-p tcp --sport {port} -j RETURN", "-j DROP"]

    def _peer_rules(self, addresses: list[str]) -> list[str]:
        return [r for a in addresses for r in (f"-s {a} -j DROP", f"-d {a} -j DROP")]

    async def _stop_units(self, host: str, kill: bool) -> list[str]:
        """Stop the active cluster units; with `kill`, SIGKILL first (no clean shutdown,
        and the stop only cancels the restart systemd would schedule). Remembers them, in
        boot order, for `start`, and returns them."""
        units = " ".join(CLUSTER_UNITS)
        kill_cmd = 'systemctl kill --signal=SIGKILL $active 2>/dev/null; ' if kill else ""
        vip = self.topo.endpoint_host
        drop_vip = (f"ip -o -4 addr show | awk -v v={shlex.quote(vip)} '{{split($4, a, \"/\"); "
                    f"if (a[1] == v) print $2, $4}}' | while read dev addr; do ip addr del \"$addr\" dev \"$dev\"; done; "
                    if kill else "")
        out = await self._run(host, f"active=; for u in {units}; do systemctl is-active --quiet $u && "
                                    f"active=\"$active $u\"; done; "
                                    f"if [ -n \"$active\" ]; then {kill_cmd}systemctl stop $active; fi; "
                                    f"{drop_vip}echo $active", timeout=120)
        units_now = out.split()
        stopped = set(units_now) | set(self.down.get(host, []))
        self.down[host] = [u for u in CLUSTER_UNITS if u in stopped]
        return units_now

    async def apply(self, action: str, machine: str, other: str | None = None) -> str:
        if action == "crash":
            # silence first: from the first instant no peer gets an answer or a reset
            await self._run(machine, self._fence(self._silence_rules(machine)))
            self.fenced.add(machine)
            units = await self._stop_units(machine, kill=True)
            return f"crashed {machine} (emulated over SSH): silenced, {len(units)} units killed"
        if action == "stop":
            units = await self._stop_units(machine, kill=False)
            return f"stopped {len(units)} cluster units on {machine}"
        if action == "start":
            units = self.down.pop(machine, [])
            # --no-block: etcd reports ready only with quorum, which may need the next host
            start = f"; systemctl start --no-block {' '.join(units)}" if units else ""
            await self._run(machine, self._unfence() + start)
            self.fenced.discard(machine)
            return f"started {len(units)} cluster units on {machine}"
        if action == "restart":
            await self.apply("stop", machine)
            return await self.apply("start", machine)
        if action == "isolate":
            peers = [h.address for h in self.topo.hosts if h.name != machine] + [self.topo.endpoint_host]
            await self._run(machine, self._fence(self._peer_rules(peers)))
            self.fenced.add(machine)
            return f"isolated {machine} from {len(peers) - 1} hosts and the VIP with its firewall"
        if action == "cut":
            if not other:
                raise HakubeError("cut needs two machines")
            await self._run(machine, self._fence(self._peer_rules([self.topo.address(other)])))
            self.fenced.add(machine)
            return f"cut {machine} from {other} with {machine}'s firewall"
        if action == "heal":
            await self._run(machine, self._unfence())
            self.fenced.discard(machine)
            return f"opened {machine}'s firewall again"
        raise HakubeError(f"the fault '{action}' needs lab machines (hakube lab); on real hosts over SSH "
                          f"hakube can do: {', '.join(self.ACTIONS)}")

    async def undo_all(self) -> None:
        for m in sorted(self.fenced - set(self.down)):
            await self.apply("heal", m)
        for m in sorted(self.down):
            await self.apply("start", m)


def driver_for(loaded: Loaded, lab: str | None, faults: str = "auto") -> FaultDriver:
    """The lab's driver when the cluster runs on a lab (or `faults` is "lab"), else SSH."""
    if faults == "ssh":
        return SSHFaults(loaded)
    if lab:
        return LabFaults(lab)
    for candidate in labstate.all_labs():
        if candidate.name == loaded.cluster.name or candidate.cluster_yaml == loaded.source:
            return LabFaults(candidate.name)
    if faults == "lab":
        raise HakubeError(f"no lab runs the cluster {loaded.cluster.name}; fix: name it with --lab, "
                          "or use --faults ssh on real hosts")
    return SSHFaults(loaded)
