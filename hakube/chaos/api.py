"""Run a scenario N times and summarise: the library entry point behind `hakube chaos`.

Example:
    >>> trials = asyncio.run(run_scenario(load("cluster.yaml"), "crash-vip-holder", trials=3))
    >>> summarize(trials)["write_downtime_s"]["p50"]
    1.6
"""

from __future__ import annotations

from ..errors import HakubeError
from ..spec import Loaded
from ..topology import derive
from .faults import driver_for
from .runner import Run, TrialResult
from .scenarios import SCENARIOS, why_not


def applicable(loaded: Loaded) -> list[dict]:
    """Every scenario, whether it applies to this cluster, and why not when it does not."""
    topo = derive(loaded.cluster)
    return [{"scenario": n, "summary": summary, "applies": why_not(n, topo) is None,
             "why": why_not(n, topo) or ""} for n, (_, summary) in SCENARIOS.items()]


async def run_scenario(loaded: Loaded, name: str, trials: int = 1, lab: str | None = None,
                       on_event=None, on_trial=None, faults: str = "auto") -> list[TrialResult]:
    """Run scenario `name` `trials` times (stopping at the first failed trial).

    `faults` chooses how machines are broken: "lab" (the lab's real crash, partition and
    pause), "ssh" (what SSH can do on real hosts; see faults.SSHFaults), or "auto": the lab
    when one runs this cluster, else SSH.
    """
    if name not in SCENARIOS:
        raise HakubeError(f"no scenario named {name!r}; choose one of: {', '.join(SCENARIOS)}")
    if why := why_not(name, derive(loaded.cluster)):
        usable = [n for n in SCENARIOS if not why_not(n, derive(loaded.cluster))]
        raise HakubeError(f"scenario {name} does not apply to this cluster: it {why}; "
                          f"these do: {', '.join(usable)} (`hakube chaos FILE --list` says why)")
    fn, _ = SCENARIOS[name]
    results = []
    for i in range(1, trials + 1):
        driver = driver_for(loaded, lab, faults)
        result = await Run(loaded, driver, name, i).execute(fn, on_event)
        results.append(result)
        if on_trial:
            on_trial(result)
        if not result.ok:
            break  # a failed trial may leave the cluster unfit for the next one
    return results
