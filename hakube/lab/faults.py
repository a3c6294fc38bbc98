"""Faults on lab machines, each returning only once it has taken effect.

    crash     every process dies at once, as at power loss (SIGKILL; the link drops first,
              so not even the kernel's FIN/RST for the dying sockets gets out)
    start     power on; the disk (container layer, volumes) is as the crash left it
    stop      clean shutdown (systemd stops every unit), then the link goes down
    restart   stop, then start (a reboot)
    isolate   no traffic between the machine and any other lab machine, both directions;
              this host still reaches it (chaos probes talk to it directly)
    heal      undo isolate and cut
    cut       no traffic between two given machines; all other pairs unaffected
    pause     freeze every process (cgroup freezer) and silence the machine, this host
              included: a hung VM answers nothing, not even pings
    resume    undo pause

Example:
    >>> from hakube.lab import faults
    >>> faults.crash("demo", "server-1")       # doctest: +SKIP
    'crashed server-1: every process killed at once, link down'
    >>> faults.start("demo", "server-1")       # doctest: +SKIP
    'started server-1: booted, SSH answers'
"""

from __future__ import annotations

from . import cache, labstate, machines, network, ssh
from .errors import LabError
from .labstate import Lab
from .lifecycle import apply_faults
from .proc import run

ACTIONS = ("crash", "start", "stop", "restart", "isolate", "heal", "cut", "pause", "resume")


def _lab(lab: Lab | str) -> Lab:
    # Always re-read the record: faults may be applied from several processes.
    return labstate.require(lab if isinstance(lab, str) else lab.name)


def crash(lab: Lab | str, machine: str) -> str:
    """Kill every process of `machine` at once; return when the machine is down."""
    lab = _lab(lab)
    m = lab.machine(machine)
    st = machines.state(m)
    if st not in ("running", "paused"):
        raise LabError(f"cannot crash {machine}: it is {st}; start it with "
                       f"`hakube lab fault start {machine} --name {lab.name}`")
    network.cable(m, False)
    run(["podman", "kill", "--signal", "KILL", m.container])
    if st == "paused":
        # SIGKILL is delivered to frozen tasks only when they thaw
        run(["podman", "unpause", m.container], check=False)
        _set_silenced(lab, machine, False)
    machines.wait_state(m, {"exited", "stopped"})
    return f"crashed {machine}: every process killed at once, link down"


def start(lab: Lab | str, machine: str, timeout: float = 90) -> str:
    """Power `machine` on; return when it accepts SSH."""
    lab = _lab(lab)
    m = lab.machine(machine)
    network.ensure_nic(lab, m)  # repairs a NIC lost with a host reboot
    changes = machines.power_on(lab, m)
    ssh.wait(lab, m, timeout)
    return f"started {machine}: booted, SSH answers" if changes else f"{machine} was already running"


def stop(lab: Lab | str, machine: str) -> str:
    """Shut `machine` down cleanly; return when it is off."""
    lab = _lab(lab)
    m = lab.machine(machine)
    st = machines.state(m)
    if st == "paused":
        raise LabError(f"{machine} is paused; resume it first (`hakube lab fault resume {machine}`)")
    if st == "running":
        run(["podman", "stop", "--time", str(machines.STOP_TIMEOUT), m.container],
            timeout=machines.STOP_TIMEOUT + 30)
        machines.wait_state(m, {"exited", "stopped"})
    network.cable(m, False)
    return f"stopped {machine}: clean shutdown, link down" if st == "running" else f"{machine} was already off"


def restart(lab: Lab | str, machine: str, timeout: float = 90) -> str:
    """Reboot `machine` (clean stop, then start); return when it accepts SSH again."""
    stop(lab, machine)
    start(lab, machine, timeout)
    return f"restarted {machine}: clean shutdown, booted, SSH answers"


def isolate(lab: Lab | str, machine: str) -> str:
    """Cut `machine` off from every other lab machine; this host still reaches it."""
    with _faults(lab) as lab:
        lab.machine(machine)
        if machine not in lab.faults.isolated:
            lab.faults.isolated.append(machine)
    return f"isolated {machine} from every other lab machine"


def cut(lab: Lab | str, a: str, b: str) -> str:
    """Drop all traffic between machines `a` and `b` (both directions) only."""
    if a == b:
        raise LabError(f"cannot cut {a} from itself; name two different machines")
    with _faults(lab) as lab:
        lab.machine(a), lab.machine(b)
        pair = tuple(sorted((a, b)))
        if pair not in [tuple(sorted(c)) for c in lab.faults.cuts]:
            lab.faults.cuts.append(pair)
    return f"cut the link between {a} and {b}"


def heal(lab: Lab | str, machine: str | None = None, other: str | None = None) -> str:
    """Undo network faults: all of them, those of `machine`, or the cut `machine`-`other`."""
    with _faults(lab) as lab:
        if machine is None:
            lab.faults.isolated, lab.faults.cuts = [], []
            return "healed every isolation and cut"
        lab.machine(machine)
        if other is not None:
            lab.machine(other)
            lab.faults.cuts = [c for c in lab.faults.cuts if set(c) != {machine, other}]
            return f"healed the link between {machine} and {other}"
        lab.faults.isolated = [x for x in lab.faults.isolated if x != machine]
        lab.faults.cuts = [c for c in lab.faults.cuts if machine not in c]
    return f"healed {machine}: no isolation or cut involves it"


def pause(lab: Lab | str, machine: str) -> str:
    """Freeze every process of `machine` and silence its network; return when frozen."""
    lab = _lab(lab)
    m = lab.machine(machine)
    st = machines.state(m)
    if st == "paused":
        return f"{machine} was already paused"
    if st != "running":
        raise LabError(f"cannot pause {machine}: it is {st}")
    run(["podman", "pause", m.container])
    machines.wait_state(m, {"paused"})
    # Frozen processes answer nothing, but the machine's kernel still would (ping, TCP
    # handshakes): drop its traffic too, so it looks like a hung VM.
    _set_silenced(lab, machine, True)
    return f"paused {machine}: processes frozen, answers nothing"


def resume(lab: Lab | str, machine: str) -> str:
    """Undo `pause`; return when the machine's processes run again."""
    lab = _lab(lab)
    m = lab.machine(machine)
    st = machines.state(m)
    _set_silenced(lab, machine, False)
    if st == "paused":
        run(["podman", "unpause", m.container])
        machines.wait_state(m, {"running"})
        return f"resumed {machine}"
    return f"{machine} was not paused ({st})"


def _set_silenced(lab: Lab, machine: str, on: bool) -> None:
    with _faults(lab) as lab:
        rest = [x for x in lab.faults.silenced if x != machine]
        lab.faults.silenced = rest + [machine] if on else rest


class _faults:
    """Read the lab record under its lock, let the caller change `faults`, then save it
    and make the nftables table match (one nft transaction)."""

    def __init__(self, lab: Lab | str) -> None:
        self.name = lab if isinstance(lab, str) else lab.name
        self._lock = None

    def __enter__(self) -> Lab:
        self._lock = cache.locked(labstate.lab_dir(self.name) / ".faults.lock")
        self._lock.__enter__()
        self.lab = labstate.require(self.name)
        return self.lab

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.lab.save()
                apply_faults(self.lab)
        finally:
            self._lock.__exit__(exc_type, exc, tb)


def apply(lab: Lab | str, action: str, machine: str, other: str | None = None) -> str:
    """Run fault `action` by name (what the CLI calls)."""
    if action not in ACTIONS:
        raise LabError(f"unknown fault {action!r}; use one of {', '.join(ACTIONS)}")
    if action == "cut":
        if other is None:
            raise LabError("cut needs two machines: `hakube lab fault cut MACHINE OTHER`")
        return cut(lab, machine, other)
    if action == "heal":
        return heal(lab, machine, other)
    if other is not None:
        raise LabError(f"{action} takes one machine, not two")
    return globals()[action](lab, machine)
