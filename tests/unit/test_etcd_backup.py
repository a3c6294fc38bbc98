"""Scheduled etcd backups (spec.backup): the timer's instants (checked by systemd itself),
the units (systemd-analyze verify), where they run, and what reset knows of them."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hakube.components import etcd_backup
from hakube.components.base import RenderContext
from hakube.engine import originals
from hakube.spec import loads
from hakube.spec.model import BACKUP_SCHEDULES
from hakube.topology import derive

from .conftest import FIXTURES, SECRETS

BASE = yaml.safe_load((FIXTURES / "monitoring" / "cluster.yaml").read_text())


def topo(**backup):
    d = copy.deepcopy(BASE)
    if backup.pop("off", False):
        d["spec"].pop("backup")
    else:
        d["spec"]["backup"] = backup
    return derive(loads(yaml.safe_dump(d)).cluster)


def files(t, host: str) -> dict:
    h = t.host(host)
    return {f.path: f for f in etcd_backup.host_files(RenderContext(topo=t, secrets=SECRETS), h)}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("schedule", BACKUP_SCHEDULES)
def test_every_schedule_fires_at_instants_aligned_to_the_clock(schedule: str) -> None:
    """systemd normalizes the expression and its next instants are whole multiples of the
    period since midnight UTC: the same instants on every host, whatever its boot time or
    time zone (here one with a half-hour offset)."""
    cal = etcd_backup.calendar(schedule)
    r = subprocess.run(["systemd-analyze", "calendar", "--iterations=3", cal], capture_output=True, text=True,
                       env={"TZ": "Asia/Kolkata", "LC_ALL": "C"}, timeout=30)
    assert r.returncode == 0, r.stderr
    times = [ln.split()[-2] for ln in r.stdout.splitlines() if "(in UTC)" in ln]
    period = etcd_backup.seconds(schedule)
    for t in times:
        h, m, s = (int(x) for x in t.split(":"))
        assert (h * 3600 + m * 60 + s) % period == 0, (schedule, cal, times)
    assert len(times) == 3


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_backup_units(tmp_path: Path) -> None:
    fs = files(topo(schedule="1h", retention=3), "server-1")
    shutil.copytree("/usr/lib/systemd/system", tmp_path / "usr/lib/systemd/system", symlinks=True)
    for f in fs.values():
        dest = tmp_path / f.path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(f.content)
        dest.chmod(f.mode)
    r = subprocess.run(["systemd-analyze", "verify", f"--root={tmp_path}", etcd_backup.SERVICE.lstrip("/"),
                        etcd_backup.TIMER.lstrip("/")], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    ours = [line for line in (r.stdout + r.stderr).splitlines() if "hakube" in line and "etcd.service" not in line]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr
    assert "OnCalendar=*-*-* 00/1:00:00 UTC\n" in fs[etcd_backup.TIMER].content
    script = fs[etcd_backup.SCRIPT]
    assert script.mode == 0o755 and "head -n -3 " in script.content
    assert subprocess.run(["sh", "-n"], input=script.content, text=True).returncode == 0


def test_the_timer_runs_on_every_etcd_host_and_nowhere_else() -> None:
    t = topo(schedule="12h")
    assert [h.name for h in t.hosts if h.runs("etcd-backup")] == ["server-1", "server-2", "server-3"]
    assert files(t, "agent-1") == {}
    assert set(files(t, "server-2")) == {etcd_backup.SCRIPT, etcd_backup.SERVICE, etcd_backup.TIMER}
    assert not any(h.runs("etcd-backup") for h in topo(off=True).hosts)
    # etcd on hosts of its own: the timer goes with etcd
    d = copy.deepcopy(BASE)
    d["spec"]["hosts"] += [{"name": f"etcd-{i}", "address": f"10.0.0.4{i}", "roles": ["etcd"]} for i in (1, 2, 3)]
    dedicated = derive(loads(yaml.safe_dump(d)).cluster)
    assert [h.name for h in dedicated.hosts if h.runs("etcd-backup")] == ["etcd-1", "etcd-2", "etcd-3"]


def test_reset_knows_the_timer_and_its_service() -> None:
    t = topo(schedule="12h")
    h = t.host("server-1")
    c = originals.candidates_for(h, set(files(t, "server-1")), set())
    assert {"hakube-etcd-backup.timer", "hakube-etcd-backup.service"} <= set(c.units)
    assert set(c.units) & {"hakube-etcd-backup.timer"} and etcd_backup.SCRIPT in c.files
    assert etcd_backup.DIRECTORY.startswith(originals.OWN[1] + "/")  # goes with hakube's state


def test_the_metric_is_written_only_with_monitoring_on() -> None:
    """Node exporter's folder exists on hosts with the package whether monitoring is on or
    not: without monitoring, nothing may be written there (reset would find it left)."""
    with_mon = files(topo(schedule="12h"), "server-1")
    d = copy.deepcopy(BASE)
    d["spec"]["addons"]["monitoring"]["enabled"] = False
    d["spec"]["backup"] = {"schedule": "12h"}
    without = files(derive(loads(yaml.safe_dump(d)).cluster), "server-1")
    assert etcd_backup.TEXTFILE in with_mon[etcd_backup.SCRIPT].content
    assert "ReadWritePaths=/var/lib/prometheus/node-exporter" in with_mon[etcd_backup.SERVICE].content
    assert "node-exporter" not in without[etcd_backup.SCRIPT].content
    assert "ReadWritePaths" not in without[etcd_backup.SERVICE].content
    assert subprocess.run(["sh", "-n"], input=without[etcd_backup.SCRIPT].content, text=True).returncode == 0
