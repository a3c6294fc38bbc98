"""Which services start, restart, get enabled or disabled: a pure function of facts.

Facts in: the unit's state (active, enabled), the files of its own that changed this run
(`triggers`, from Unit.depends_on), whether its unit file changed, and whether a cluster
manager (pacemaker) owns it. Out: the verbs with their sentences, in the order they run.
Fixture tests: tests/unit/fixtures/steps/services/.

Rules: a unit that is not running is started (never restarted); a running one restarts
only when one of its inputs changed, and is reloaded instead when it takes its files on a
reload (HAProxy, keepalived) and its unit file did not change; units are enabled at boot, except those pacemaker
starts, which are disabled at boot and never started here (a running copy restarts when
its inputs changed); a changed unit file alone still needs systemd reloaded.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceStep:
    verb: str      # enable, disable, start, restart, apply (`systemctl reload UNIT`), reload (systemd)
    sentence: str  # imperative, as plan.Action says it


def decide(unit: str, active: str, enabled: str, triggers: list[str], unit_changed: bool,
           cluster_managed: bool = False, reloads: bool = False) -> list[ServiceStep]:
    why = f" ({', '.join(triggers)} changed)" if triggers else ""
    steps: list[ServiceStep] = []
    if cluster_managed:
        if enabled == "enabled":
            steps.append(ServiceStep("disable", f"disable {unit} at boot (pacemaker starts it)"))
        if active == "active" and triggers:
            steps.append(ServiceStep("restart", f"restart {unit}{why}"))
    else:
        if enabled != "enabled":
            steps.append(ServiceStep("enable", f"enable {unit}"))
        if active != "active":
            steps.append(ServiceStep("start", f"start {unit} (it is {active})"))
        elif triggers and reloads and not unit_changed:
            steps.append(ServiceStep("apply", f"reload {unit}{why}"))
        elif triggers:
            steps.append(ServiceStep("restart", f"restart {unit}{why}"))
    if unit_changed and not steps:
        steps.append(ServiceStep("reload", f"reload systemd ({unit}'s unit changed)"))
    return steps
