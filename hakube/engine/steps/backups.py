"""The backups step (`spec.backup`): the scheduled-snapshot timer on every etcd host, and,
when no host has a snapshot yet, the first one taken now: it proves the script works on
these hosts (gated on a snapshot being there: the leader's), and `hakube status` has
a backup to show from the start rather than after the first period. With spec.backup
taken out, the timers of an earlier run are stopped and removed (the snapshots stay)."""

from __future__ import annotations

import asyncio

from ...components import etcd_backup
from .. import services
from ..context import Deploy, GateError
from ..plan import Action, execute

COUNT = f"ls -1 {etcd_backup.DIRECTORY} 2>/dev/null | grep -c '^etcd-.*\\.db$' || true"


async def snapshots(d: Deploy, hosts: list[str]) -> dict[str, int]:
    """How many scheduled snapshots each host keeps."""
    async def one(h: str) -> int:
        r = await d.conns[h].run(COUNT, check=False, timeout=20)
        return int(r.stdout.strip() or 0) if r.stdout.strip().isdigit() else 0
    return dict(zip(hosts, await asyncio.gather(*(one(h) for h in hosts))))


async def phase_backups(d: Deploy) -> None:
    """The scheduled-snapshot timer on every etcd host; the first snapshot when none exists."""
    if d.topo.backup is None:
        await _retire(d)
        return
    hosts = [h.name for h in d.topo.hosts if h.runs("etcd-backup")]
    with d.ui.phase("backups") as report:
        await d.each(hosts, lambda h: d.converge_service(report, h, services.ETCD_BACKUP))
        if any((await snapshots(d, hosts)).values()):
            return

        async def first() -> None:
            # every host runs it; the script takes the snapshot where the member leads
            await asyncio.gather(*(d.conns[h].run("systemctl start hakube-etcd-backup.service", timeout=180)
                                   for h in hosts))
            kept = await snapshots(d, hosts)
            if not sum(kept.values()):  # (two, when leadership moved between the runs: fine)
                logs = "\n".join([await d.journal(h, "hakube-etcd-backup.service", 5) for h in hosts])
                raise GateError(hosts[0], "one snapshot, on the etcd leader",
                                ", ".join(f"{h}: {n}" for h, n in kept.items()), logs,
                                "run `systemctl start hakube-etcd-backup.service` on the leader to see why")
        await execute(d, report, [Action(hosts[0], "start hakube-etcd-backup.service on every etcd host: the "
                                                   "leader takes the first snapshot", first, announce=False)])


async def _retire(d: Deploy) -> None:
    """spec.backup taken out: stop and remove the timer an earlier run installed, where it
    is (nothing is said where it never was)."""
    hosts = [h.name for h in d.topo.hosts if "etcd" in h.components]
    there = await asyncio.gather(*(d.conns[h].run(f"test -e {etcd_backup.TIMER}", check=False, timeout=20)
                                   for h in hosts))
    left = [h for h, r in zip(hosts, there) if r.ok]
    if not left:
        return
    files = " ".join((etcd_backup.TIMER, etcd_backup.SERVICE, etcd_backup.SCRIPT, etcd_backup.TEXTFILE))
    with d.ui.phase("backups") as report:
        await execute(d, report, [Action(h, "remove hakube-etcd-backup.timer and its service, stopped first "
                                            f"(spec.backup is gone; the snapshots stay in {etcd_backup.DIRECTORY})",
                                         lambda h=h: d.conns[h].run(
                                             f"systemctl disable --now hakube-etcd-backup.timer; rm -f {files}; "
                                             "systemctl daemon-reload", timeout=60, what="removing the backup timer"))
                                  for h in left])
