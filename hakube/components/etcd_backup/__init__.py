"""Scheduled etcd snapshots on the etcd hosts (`spec.backup`).

Every etcd host gets the same timer, aligned to the clock (`OnCalendar`, e.g. every 12 h
at 00:00 and 12:00), so every member's run starts at the same moment; the script takes a
snapshot only where this member is the etcd leader, so the cluster takes one per period
whichever member leads, and a host that is down misses nothing. Each host keeps the newest
`retention` snapshots it took in /var/lib/hakube/etcd-backups (which goes with the rest of
hakube's state at `hakube reset`), and records when its last one was taken: in that folder
(`last-success`, read by `hakube status`) and, with monitoring on, as a metric for node
exporter's textfile collector (alert EtcdBackupStale: the newest snapshot of the cluster
is older than twice the schedule).

Taking spec.backup out of cluster.yaml stops and removes the timer, its service and script
at the next `hakube up` (the snapshots taken stay in their folder until `hakube reset`).

`hakube backup` is the other half: a snapshot brought to the operator's machine and
verified there.

Example:
    >>> calendar("12h"), calendar("15m"), calendar("24h")
    ('*-*-* 00/12:00:00 UTC', '*-*-* *:00/15:00 UTC', '*-*-* 00:00:00 UTC')
"""

from __future__ import annotations

from ... import paths
from ..base import File, RenderContext, Unit, template
from ...topology import HostPlan

DIRECTORY = f"{paths.STATE_DIR}/etcd-backups"
LAST_SUCCESS = f"{DIRECTORY}/last-success"
SCRIPT = f"{paths.LIBEXEC}/etcd-backup"
SERVICE = "/etc/systemd/system/hakube-etcd-backup.service"
TIMER = "/etc/systemd/system/hakube-etcd-backup.timer"
TEXTFILE = f"{paths.TEXTFILE_DIR}/hakube_etcd_backup.prom"
METRIC = "hakube_etcd_backup_last_success_timestamp_seconds"


def calendar(schedule: str) -> str:
    """systemd's OnCalendar for a schedule of spec.backup (minutes dividing an hour, hours
    dividing a day): the same instants on every host, in UTC whatever each host's time zone
    (hosts set to different zones would otherwise take their 12 h snapshots at different
    instants, and an hourly schedule in a zone with a half-hour offset would not be aligned)."""
    n, unit = int(schedule[:-1]), schedule[-1]
    if unit == "m":
        return "*-*-* *:*:00 UTC" if n == 1 else f"*-*-* *:00/{n}:00 UTC"
    return "*-*-* 00:00:00 UTC" if n == 24 else f"*-*-* 00/{n}:00:00 UTC"


def seconds(schedule: str) -> int:
    """The period of a schedule, in seconds (the alert's and status' "twice the schedule")."""
    return int(schedule[:-1]) * (60 if schedule[-1] == "m" else 3600)


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    backup = ctx.topo.backup
    if backup is None or not host.runs("etcd-backup"):
        return []
    data = dict(b=backup, host=host.name, monitoring=ctx.topo.addons.monitoring.enabled, calendar=calendar(backup.schedule), paths=paths,
                files=dict(directory=DIRECTORY, last_success=LAST_SUCCESS, script=SCRIPT, textfile=TEXTFILE),
                metric=METRIC)
    return [
        File(SCRIPT, template(__file__, "etcd-backup.sh.j2", **data), 0o755),
        File(SERVICE, template(__file__, "hakube-etcd-backup.service.j2", **data)),
        File(TIMER, template(__file__, "hakube-etcd-backup.timer.j2", **data)),
    ]


# ---- deploy facts: what the engine needs to run this component (engine/services.py) ----

# A timer: its service and script are read afresh at every run, so a change to them needs
# no restart; a changed timer (a new schedule) restarts the timer only.
UNITS = (Unit("hakube-etcd-backup.timer", borrowed=(SERVICE, TIMER, SCRIPT), ignore=(SERVICE, SCRIPT)),)
