"""The chaos probes around any operation: `hakube up --probe` (and later every day-2 command).

The same frame as a chaos scenario (runner.Run: probes writing and reading through the
VIP, the monitors, the read-back that finds lost and phantom writes), with the operation
as the scenario's body and no fault driver: nothing is broken on purpose, so whatever
outage the figures show, the operation caused. The operation reports its steps through
the `step` callback it is given; each becomes an event on the report's timeline.

Example:
    >>> result, report = asyncio.run(probe_around(
    ...     loaded, lambda step: up(loaded, ui=Reporter(on_step=step))))   # doctest: +SKIP
    >>> result.lost, result.write_downtime_s                            # doctest: +SKIP
    (0, 0.0)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from .. import state
from ..errors import HakubeError
from ..spec import Loaded
from .runner import Run, TrialResult

T = TypeVar("T")


class NoFaults:
    """The fault driver of an operation under probes: it causes nothing, so it has nothing
    to undo (a failed operation is reported as it is, never "healed")."""

    async def apply(self, action: str, machine: str, other: str | None = None) -> str:
        raise RuntimeError(f"an operation under probes causes no fault ({action} {machine})")

    async def undo_all(self) -> None:
        return None


async def probe_around(loaded: Loaded, operation: Callable[[Callable[[str], None]], Awaitable[T]],
                       name: str = "up", on_event=None) -> tuple[TrialResult, T | None]:
    """Run `operation(step)` while the probes write and read through the VIP; return the
    probes' result (lost, phantom, downtime, the steps as events) and the operation's own.

    The cluster must be healthy first (the probes need an API to write to), so a first
    deploy has nothing to measure. An operation that fails is in the result's verdict."""
    sdir = state.cluster_dir(loaded.cluster.name, create=False)
    if not (sdir / "pki" / "admin.crt").exists():
        raise HakubeError(f"cluster {loaded.cluster.name} has no certificates in {sdir}: the probes need a "
                          "deployed cluster to write to; run `hakube up` without --probe first")
    outcome: list[T] = []

    async def body(run: Run) -> None:
        outcome.append(await operation(lambda text: run.event("step", text)))

    result = await Run(as_running(loaded), NoFaults(), name, 1).execute(body, on_event)
    return result, (outcome[0] if outcome else None)


def as_running(loaded: Loaded) -> Loaded:
    """The spec narrowed to the hosts the last completed operation left in the cluster:
    the probes' health check and monitors start from the cluster as it runs. Servers that
    an edited cluster.yaml adds are not down, they are about to join; a host it dropped
    (a dead server being replaced) is no longer watched."""
    known = state.converged_hosts(loaded.cluster.name)
    if known is None:
        return loaded
    hosts = [h for h in loaded.cluster.spec.hosts if h.name in known]
    if len(hosts) == len(loaded.cluster.spec.hosts) or not any(h.has("server") for h in hosts):
        return loaded
    return loaded.only(lambda h: h.name in known)
