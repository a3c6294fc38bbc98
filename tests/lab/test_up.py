"""`hakube up` and the day-2 life of the default layout on real lab machines: 3 servers
(HAProxy + keepalived on them) and 2 agents, with 2 spare machines to grow onto.

Reads like the runbook a person follows: bad input first (nothing may change), then a
deploy from scratch, proof through the VIP with TLS verified, a no-change re-run, a wiped
etcd member that must rejoin the same cluster, a server that dies mid-deploy, a rolling
change; then day 2 under the write probes: grow to 5 servers and remove back to 3, a
refused removal, an agent removed with a PodDisruptionBudget, a dead server replaced by a
new machine, and a reset of the whole cluster that leaves the hosts as they were before
the first `up`, deployed again from scratch. One lab for all: each cluster costs minutes
(test_up_chaos.py then proves HA on the cluster this module leaves, on the same lab).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from hakube import state
from hakube.components import keepalived
from hakube.engine.ui import Reporter
from hakube.errors import HakubeError
from hakube.lab import faults
from hakube.spec import load
from hakube.transport import ConnectError

from . import labkit

pytestmark = pytest.mark.lab
NAME = "hktest-up"  # conftest.DEFAULT_LAB


SERVERS = ("server-1", "server-2", "server-3")
# what every host had before the first `up` (files under /etc, /var/lib, /usr/local, /run;
# listening sockets), read by the fixture: reset must leave exactly this
BEFORE: dict[str, tuple[list[str], list[str]]] = {}


@pytest.fixture(scope="module")
def cluster(default_lab):
    """The lab (5 servers, 2 agents; shared with test_up_chaos.py, which runs on what this
    module leaves) and the spec of its first 3 servers and the agents."""
    lab, full = default_lab
    BEFORE.update({m.name: labkit.files_and_sockets(lab, m.name) for m in lab.machines})
    labkit.ETCD_ON[NAME] = SERVERS
    spec = labkit.without(full, "three", "server-4", "server-5")
    try:
        yield lab, spec
    finally:
        labkit.ETCD_ON.pop(NAME, None)


def nothing_deployed(lab) -> bool:
    return all(labkit.ssh(lab, m.name, "test ! -e /etc/kubernetes && test ! -e /etc/etcd/etcd.conf.yml",
                          check=False).returncode == 0 for m in lab.machines)


def test_unreachable_host_is_reported_before_anything_changes(cluster) -> None:
    lab, spec = cluster
    ghost = str(lab.vip_last - 1)  # in the lab subnet, but no machine has it
    bad = labkit.variant(spec, "ghost")
    text = bad.read_text().replace("  controlPlane:", f"  - name: ghost\n    address: {ghost}\n    roles: [agent]\n"
                                                     "  controlPlane:", 1)
    bad.write_text(text)
    with pytest.raises(ConnectError) as e:
        labkit.up(bad)
    assert "ghost" in str(e.value) and "nothing was changed" in str(e.value)
    assert nothing_deployed(lab)


def test_wrong_key_is_reported_before_anything_changes(cluster, tmp_path) -> None:
    lab, spec = cluster
    key = tmp_path / "other_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    bad = labkit.variant(spec, "wrongkey", ssh={"keyFile": str(key)})
    with pytest.raises(ConnectError) as e:
        labkit.up(bad)
    assert "key was refused" in str(e.value) and "server-1" in str(e.value)
    assert nothing_deployed(lab)


def test_up_from_scratch_gives_an_ha_control_plane(cluster) -> None:
    lab, spec = cluster
    report = labkit.up(spec)
    assert report.changed > 0
    topo_vip = str(lab.vip_first)
    # kubectl through the VIP, TLS verified (the kubeconfig has the CA, no insecure flag)
    r = labkit.kubectl(lab, NAME, "get", "--raw", "/readyz")
    assert r.stdout.strip() == "ok"
    assert "https://" + topo_vip in (state.cluster_dir(NAME) / "kubeconfig").read_text()
    # etcd: 3 members, all healthy over TLS, one cluster
    assert len(labkit.etcd_members(lab, NAME)["members"]) == 3
    assert labkit.etcd_health(lab, NAME) == {"server-1": True, "server-2": True, "server-3": True}
    assert len({labkit.etcd_cluster_id(lab, NAME, s) for s in ("server-1", "server-2", "server-3")}) == 1
    # every apiserver answers /readyz directly
    for s in SERVERS:
        assert labkit.https(NAME, f"https://{lab.machine(s).address}:6444/readyz").status_code == 200
    # the VIP is on exactly one server
    assert len(labkit.vip_holders(lab, topo_vip)) == 1
    # binaries went through private upload folders, removed after a digest-checked install
    for m in lab.machines:
        assert labkit.ssh(lab, m.name, "ls -d /tmp/.hakube-upload* 2>/dev/null | wc -l").stdout.strip() == "0"


def test_second_up_changes_nothing(cluster) -> None:
    """(A dry run plans nothing; the real re-run is the CLI's, below: it says "no changes".)"""
    lab, spec = cluster
    report = labkit.up(spec, dry_run=True)
    assert report.changed == 0, [c for p in report.phases for c in p.changes]


def test_secrets_are_encrypted_at_rest_and_the_api_is_audited(cluster) -> None:
    lab, spec = cluster
    labkit.kubectl(lab, NAME, "create", "secret", "generic", "at-rest", "--from-literal=password=hunter2-plain")
    raw = labkit.etcd_raw(lab, NAME, "/registry/secrets/default/at-rest")
    assert raw.startswith(b"k8s:enc:secretbox:v1:key1:"), raw[:40]
    assert b"hunter2-plain" not in raw
    assert labkit.kubectl(lab, NAME, "get", "secret", "at-rest", "-o", "jsonpath={.data.password}").stdout.strip() \
        == "aHVudGVyMi1wbGFpbg=="
    # the audit log names the request, never the Secret's data
    log = labkit.ssh(lab, "server-1", "cat /var/log/kubernetes/audit.log", check=False).stdout
    log += labkit.ssh(lab, "server-2", "cat /var/log/kubernetes/audit.log", check=False).stdout
    log += labkit.ssh(lab, "server-3", "cat /var/log/kubernetes/audit.log", check=False).stdout
    assert '"resource":"secrets"' in log and "at-rest" in log
    assert "hunter2" not in log and "aHVudGVyMi1wbGFpbg" not in log


def planned(report) -> dict[str, list[str]]:
    """Each phase's plan (host: sentence), in an order that ignores which host came first."""
    return {p.name: sorted(p.planned) for p in report.phases if p.planned}


def test_dry_run_shows_the_plan_the_run_then_applies(cluster) -> None:
    """Drift on three servers (hand edits): `up --dry-run` plans the rewrites and the
    restarts or reloads they need, one server at a time; the run then does exactly that plan."""
    lab, spec = cluster
    labkit.ssh(lab, "server-1", "echo '# local edit' >> /etc/haproxy/haproxy.cfg")
    labkit.ssh(lab, "server-2", "echo '# local edit' >> /etc/systemd/system/kube-scheduler.service")
    labkit.ssh(lab, "server-3", f"chmod 0700 {keepalived.CHECK_SCRIPT}")  # read afresh: no restart
    dry = labkit.up(spec, dry_run=True)
    plan = planned(dry)
    flat = [a for actions in plan.values() for a in actions]
    assert "server-1: write /etc/haproxy/haproxy.cfg: content changed" in flat, flat
    assert any(a.startswith("server-1: reload haproxy") for a in flat), flat  # seamless: no restart
    assert any(a.startswith("server-2: restart kube-scheduler") for a in flat), flat
    assert f"server-3: write {keepalived.CHECK_SCRIPT}: mode 700 -> 755" in flat, flat
    assert not any("restart keepalived" in a or "reload keepalived" in a for a in flat), flat
    assert all(c.startswith(c.split(": ", 1)[0] + ": would ") for p in dry.phases for c in p.changes)
    run = labkit.up(spec)
    assert planned(run) == plan
    assert labkit.up(spec).changed == 0


def test_certs_lists_every_certificate_and_finds_a_host_copy_that_differs(cluster, tmp_path) -> None:
    """`hakube certs` lists every certificate on every host and finds a copy that differs;
    `certs --renew` under the write probes renews every leaf everywhere, loses nothing, and
    leaves the admin kubeconfig working."""
    lab, spec = cluster

    def certs():
        r = subprocess.run([sys.executable, "-m", "hakube.cli", "certs", str(spec), "--json"],
                           capture_output=True, text=True, timeout=120)
        return r.returncode, labkit.json.loads(r.stdout)

    code, rows = certs()
    assert code == 0 and rows and all(r["on_host"] == "matches" for r in rows), rows
    assert {r["host"] for r in rows} == {*SERVERS, "agent-1", "agent-2"}
    assert min(r["days_left"] for r in rows) > 800
    labkit.ssh(lab, "server-2", "echo >> /etc/kubernetes/pki/apiserver.crt")
    code, rows = certs()
    assert code == 1
    assert [(r["host"], r["path"]) for r in rows if r["on_host"] != "matches"] == \
        [("server-2", "/etc/kubernetes/pki/apiserver.crt")]
    # `certs --renew` reissues every leaf (keeping the CAs) and rolls them out with the
    # day-2 hand-off, putting server-2's copy back on the way, under the write probes
    kubeconfig = state.cluster_dir(NAME, create=False) / "kubeconfig"
    old_kubeconfig = tmp_path / "kubeconfig-before"
    old_kubeconfig.write_text(kubeconfig.read_text())
    before = {(r["host"], r["path"]): r["not_after"] for r in rows}
    time.sleep(1.1)  # the new certificates' not-after is a later second
    doc = probed("certs", str(spec), "--renew")
    probes = doc["probes"]
    # issue 13's bound for a renewal: no write window over 2 s
    assert probes["write_downtime_s"] <= 2.0, (probes["write_downtime_s"], probes["write_outages"])
    steps = steps_of(doc)
    assert any("renewed hosts/server-1/etcd-peer: asked for by hakube certs --renew" in s for s in steps), steps
    assert sum("restarted etcd" in s for s in steps) == 3, steps
    assert any("wrote " in s and s.endswith("kubeconfig") for s in steps), steps  # the admin's, reissued
    code, rows = certs()
    assert code == 0, [r for r in rows if r["on_host"] != "matches"]
    after = {(r["host"], r["path"]): r["not_after"] for r in rows}
    assert after.keys() == before.keys()
    cas = {(r["host"], r["path"]) for r in rows if r["subject"] == r["issuer"]}
    assert cas and all(after[k] == before[k] for k in cas)  # the CAs are kept
    kept = [k for k in before if k not in cas and after[k] <= before[k]]
    assert not kept, kept  # every leaf, on every host, expires later than before
    assert labkit.kubectl(lab, NAME, "get", "--raw", "/readyz").stdout.strip() == "ok"
    # the admin kubeconfig from before the renewal still works (same CA, not yet expired)
    old = subprocess.run([str(Path(lab.kubernetes) / "bin" / "kubectl"), "--kubeconfig", str(old_kubeconfig),
                          "get", "--raw", "/readyz"], capture_output=True, text=True, timeout=60)
    assert old.stdout.strip() == "ok", old.stderr
    assert labkit.up(spec).changed == 0


def test_cli_says_no_changes_and_kubeconfig_merges(cluster, tmp_path) -> None:
    lab, spec = cluster
    r = subprocess.run([sys.executable, "-m", "hakube.cli", "up", str(spec)], capture_output=True, text=True)
    assert r.returncode == 0 and "no changes" in r.stdout, r.stdout + r.stderr
    kube = tmp_path / "config"
    r = subprocess.run([sys.executable, "-m", "hakube.cli", "kubeconfig", str(spec), "-o", str(tmp_path / "k"),
                        "--merge"], capture_output=True, text=True, env={**labkit.os.environ, "KUBECONFIG": str(kube)})
    assert r.returncode == 0, r.stderr
    assert "TLS verified" in r.stdout
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600 and kube.stat().st_mode & 0o777 == 0o600
    merged = labkit.yaml.safe_load(kube.read_text())
    assert [c["name"] for c in merged["contexts"]] == [NAME]


def test_backup_is_verified_against_the_live_cluster_and_a_changed_byte_is_caught(cluster, tmp_path) -> None:
    """`hakube backup --with-secrets`: a snapshot of the etcd leader, restored into a scratch
    etcd on this machine and compared with the live keys at its revision; its counts agree
    with an independent etcdctl listing and with the API; the sealed secrets open only with
    the passphrase; a byte changed in the snapshot is caught by --verify."""
    lab, spec = cluster
    labkit.kubectl(lab, NAME, "create", "configmap", "in-the-backup", "--from-literal=k=v")
    passfile = tmp_path / "pass"
    passfile.write_text("a passphrase long enough\n")
    where = tmp_path / "backups"

    def hakube(*args: str, env: dict | None = None):
        return subprocess.run([sys.executable, "-m", "hakube.cli", "backup", str(spec), "-o", str(where), *args],
                              capture_output=True, text=True, timeout=600, env={**labkit.os.environ, **(env or {})})

    r = hakube("--with-secrets", "--json", env={"HAKUBE_BACKUP_PASSPHRASE": "a passphrase long enough"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    m = labkit.json.loads(r.stdout)
    assert m["verification"]["ok"], m["verification"]["problems"]
    leader = [e for e in labkit.etcd_status(lab, NAME) if e["Status"]["leader"] == e["Status"]["header"]["member_id"]]
    assert m["endpoint"] == leader[0]["Endpoint"]
    folder = labkit.Path(m["path"])
    assert folder.stat().st_mode & 0o777 == 0o700
    assert all((folder / f).stat().st_mode & 0o777 == 0o600 for f in ("snapshot.db", "manifest.json", "secrets.tar.enc"))
    inv = m["inventory"]
    # independently: etcdctl's own listing at the snapshot's revision, and the API
    keys = labkit.etcdctl(lab, NAME, "get", "", "--prefix", "--keys-only", f"--rev={inv['revision']}").split()
    assert len(keys) == inv["keys"]
    namespaces = labkit.kubectl(lab, NAME, "get", "namespaces", "-o", "name").stdout.split()
    assert sorted(inv["namespaces"]) == sorted(n.split("/")[1] for n in namespaces)
    assert "/registry/configmaps/default/in-the-backup" in keys
    assert "ca.key" in " ".join(m["secrets"]["files"]) and "secrets.yaml" in m["secrets"]["files"]
    assert b"PRIVATE KEY" not in (folder / "secrets.tar.enc").read_bytes()

    listed = labkit.json.loads(hakube("--list", "--json").stdout)
    assert [(b["name"], b["verified"], b["secrets"]) for b in listed] == [(folder.name, True, True)]
    r = hakube("--verify", str(folder), "--passphrase-file", str(passfile))
    assert r.returncode == 0 and "opens with the passphrase" in r.stdout, r.stdout + r.stderr
    passfile.write_text("not the passphrase at all\n")
    r = hakube("--verify", str(folder), "--passphrase-file", str(passfile))
    assert r.returncode == 1 and "does not open with this passphrase" in r.stdout, r.stdout

    broken = tmp_path / "broken"
    labkit.shutil.copytree(folder, broken)
    data = bytearray((broken / "snapshot.db").read_bytes())
    data[len(data) // 3] ^= 0x55
    (broken / "snapshot.db").write_bytes(bytes(data))
    r = hakube("--verify", str(broken))
    assert r.returncode == 1 and "changed after the backup" in r.stdout and "NOT usable" in r.stdout, r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def test_wiped_etcd_member_rejoins_the_same_cluster(cluster) -> None:
    lab, spec = cluster
    labkit.kubectl(lab, NAME, "create", "configmap", "before-wipe", "--from-literal=k=v")
    cluster_id = labkit.etcd_cluster_id(lab, NAME, "server-1")
    labkit.ssh(lab, "server-2", f"systemctl stop etcd && rm -rf /var/lib/etcd/{NAME}")
    report = labkit.up(spec)
    assert any("rejoining" in c for p in report.phases for c in p.changes)
    assert {labkit.etcd_cluster_id(lab, NAME, s) for s in ("server-1", "server-2", "server-3")} == {cluster_id}
    assert labkit.etcd_health(lab, NAME) == {"server-1": True, "server-2": True, "server-3": True}
    assert len(labkit.etcd_members(lab, NAME)["members"]) == 3
    assert "before-wipe" in labkit.kubectl(lab, NAME, "get", "configmap", "before-wipe", "-o", "name").stdout
    assert labkit.up(spec).changed == 0


# the settings the rolling change leaves; every later spec of this module keeps them
# (and scheduled backups: the rolling change adds them, its last step takes the first one)
ROLLED = dict(datastore={"etcd": {"electionTimeoutMs": 1200}}, kubernetes={"apiserverExtraArgs": {"event-ttl": "2h"}},
              vip={"advertInterval": 0.4}, backup={"schedule": "1h", "retention": 2})


def rolled(spec, name: str, *without: str):
    """`spec` (without those hosts) with the rolling change's settings."""
    base = labkit.without(spec, f"{name}-base", *without) if without else spec
    return labkit.variant(base, name, **ROLLED)


def probed(*args: str, report=None, expect_ok: bool = True) -> dict:
    """`hakube ARGS --probe --json` (and --report); the JSON document it prints."""
    cmd = [sys.executable, "-m", "hakube.cli", *args, "--probe", "--json"]
    if report is not None:
        cmd += ["--report", str(report)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert (r.returncode == 0) == expect_ok, r.stdout[-3000:] + r.stderr[-3000:]
    doc = labkit.json.loads(r.stdout)
    probes = doc["probes"]
    assert probes["lost"] == 0 and probes["phantom"] == 0 and probes["ok"], probes["verdict"]
    assert probes["acknowledged"] > 20
    return doc


def steps_of(doc: dict) -> list[str]:
    return [e["detail"] for e in doc["probes"]["events"] if e["kind"] == "step"]


def status(spec) -> dict:
    r = subprocess.run([sys.executable, "-m", "hakube.cli", "status", str(spec), "--json"], capture_output=True,
                       text=True, timeout=120)
    return labkit.json.loads(r.stdout)


def backends_per_lb(st: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for b in st["backends"]:
        out.setdefault(b["lb"], []).append(b["server"])
    return {lb: sorted(s) for lb, s in out.items()}


class CrashDuring(Reporter):
    """A reporter that crashes a machine as a given phase begins: a real power loss."""

    def __init__(self, lab, machine: str, phase: str):
        super().__init__(quiet=True)
        self.lab, self.machine, self.at = lab, machine, phase

    def phase(self, name: str):
        if name == self.at:
            faults.crash(self.lab.name, self.machine)
        return super().phase(name)


def test_host_dying_mid_deploy_stops_clearly_and_a_rerun_finishes(cluster) -> None:
    import asyncio

    from hakube.engine.deploy import up

    lab, spec = cluster
    # something for the run to do on every server: the etcd unit file was edited by hand
    for s in ("server-1", "server-2", "server-3"):
        labkit.ssh(lab, s, "echo '# local edit' >> /etc/systemd/system/etcd.service")
    with pytest.raises(HakubeError) as e:
        asyncio.run(up(load(spec), ui=CrashDuring(lab, "server-3", "certificates")))
    assert "server-3" in str(e.value)
    faults.start(lab.name, "server-3")
    report = labkit.up(spec)
    assert report.changed > 0
    assert labkit.etcd_health(lab, NAME) == {"server-1": True, "server-2": True, "server-3": True}
    assert labkit.kubectl(lab, NAME, "get", "--raw", "/readyz").stdout.strip() == "ok"
    assert labkit.up(spec).changed == 0


def test_rolling_change_hands_off_and_loses_no_write(cluster, tmp_path) -> None:
    """A rolling change of the etcd election timeout, an apiserver flag and the VIP's
    advertisement interval, under the probes: each etcd leader hands its leadership over
    before it restarts, each apiserver is drained on every HAProxy first and taken back
    after its /readyz, keepalived restarts one host at a time; nothing is lost.
    (The cluster keeps the changed settings: the day-2 specs below carry them too.)"""
    lab, spec = cluster
    changed = rolled(spec, "rolled")
    probes = probed("up", str(changed), report=tmp_path / "report")["probes"]
    assert probes["lost"] == 0 and probes["phantom"] == 0 and probes["ok"], probes["verdict"]
    steps = [e["detail"] for e in probes["events"] if e["kind"] == "step"]
    assert sum("restarted etcd" in s for s in steps) == 3, steps
    assert sum("restarted kube-apiserver" in s for s in steps) == 3, steps
    # the VIP's timer: keepalived reloaded host by host (the VIP stays where it is), the VIP
    # on exactly one host between
    assert sum("reloaded keepalived" in s for s in steps) == 3, steps
    assert any("moved etcd leadership to" in s for s in steps), steps
    drained = [s for s in steps if "drained the apiserver backend" in s]
    # each of 3 apiservers on each of 3 HAProxies, for its etcd member's restart and for its own
    assert len(drained) == 18, drained
    # a safety bound, not the goal: measured 0.52 and 0.67 s windows, every write in them
    # acknowledged (slow, not refused: an apiserver starting up starves the lab's 2 shared
    # cores); issue 12's goal of 0.6 s is for bench/, on hosts that do not share cores
    assert probes["write_downtime_s"] <= 1.5, (probes["write_downtime_s"], probes["write_outages"])
    assert "election-timeout: 1200" in labkit.ssh(lab, "server-1", "cat /etc/etcd/etcd.conf.yml").stdout
    assert labkit.up(changed).changed == 0
    assert (tmp_path / "report" / "index.html").exists() and "phase control plane" in steps


def test_scheduled_backups_are_taken_only_by_the_leader_and_keep_their_retention(cluster) -> None:
    """spec.backup (added by the rolling change): a timer on every server at the same
    instants; run on all three, three times, only the etcd leader takes snapshots, and keeps
    the newest 2; status shows the newest."""
    lab, spec = cluster
    three = rolled(spec, "rolled")
    count = "ls -1 /var/lib/hakube/etcd-backups | grep -c '^etcd-.*[.]db$' || true"

    def counts() -> dict[str, int]:
        return {s: int(labkit.ssh(lab, s, count).stdout.strip() or 0) for s in SERVERS}

    assert sum(counts().values()) == 1, counts()  # the first, taken by the up that added them
    for s in SERVERS:
        assert labkit.ssh(lab, s, "systemctl is-active hakube-etcd-backup.timer; systemctl is-enabled "
                                  "hakube-etcd-backup.timer").stdout.split() == ["active", "enabled"]
    by_address = {str(lab.machine(s).address): s for s in SERVERS}
    for _ in range(3):
        for s in SERVERS:
            labkit.ssh(lab, s, "systemctl start hakube-etcd-backup.service")
        time.sleep(1.1)  # snapshot names carry the second
    [leader] = [by_address[e["Endpoint"].split("//")[1].split(":")[0]] for e in labkit.etcd_status(lab, NAME)
                if e["Status"]["leader"] == e["Status"]["header"]["member_id"]]
    kept = counts()
    assert kept[leader] == 2 and sum(kept.values()) <= 3, kept
    others = [s for s in SERVERS if s != leader]
    for s in others:
        log = labkit.ssh(lab, s, "journalctl -u hakube-etcd-backup.service -o cat --no-pager").stdout
        assert "not the etcd leader" in log
    newest = labkit.ssh(lab, leader, "ls -1 /var/lib/hakube/etcd-backups/etcd-*.db | sort | tail -1").stdout.strip()
    assert labkit.ssh(lab, leader, f"stat -c %a {newest} /var/lib/hakube/etcd-backups").stdout.split() == ["600", "700"]
    restored = labkit.ssh(lab, leader, f"ETCDCTL_API=3 etcdctl snapshot status {newest} -w json").stdout
    assert labkit.json.loads(restored)["revision"] > 0
    st = status(three)
    assert st["healthy"], st["verdict"]
    assert any(n.startswith("newest scheduled etcd backup: etcd-" + leader) for n in st["notes"]), st["notes"]
    # spec.backup taken out: the next up stops and removes the timers, the snapshots stay;
    # put back, the timers return and no first snapshot is needed
    off = labkit.variant(spec, "rolled-no-backup", **{k: v for k, v in ROLLED.items() if k != "backup"})
    report = labkit.up(off)
    changes = [c for p in report.phases for c in p.changes]
    assert report.changed == len(SERVERS) and all("hakube-etcd-backup.timer" in c for c in changes), changes
    for s in SERVERS:
        assert labkit.ssh(lab, s, "test -e /etc/systemd/system/hakube-etcd-backup.timer", check=False).returncode
        assert labkit.ssh(lab, s, "systemctl is-active hakube-etcd-backup.timer", check=False).stdout.strip() \
            == "inactive"
    assert counts() == kept
    assert labkit.up(off).changed == 0
    assert labkit.up(three).changed > 0 and counts() == kept
    assert labkit.up(three).changed == 0


# ---- day 2, under the write probes --------------------------------------------------------


def test_rolling_reboot_hands_off_and_loses_no_write(cluster, tmp_path) -> None:
    """The plan for every machine puts the VIP holder last. Then two of them rebooted
    (`systemctl reboot`, from inside), one at a time, under the probes: an agent (drained
    first) and the VIP holder (a server: keepalived, etcd leadership, its apiserver handed
    off), each gated after. (Every machine, with figures: bench/day2.py.)"""
    lab, spec = cluster
    three = rolled(spec, "rolled")
    machines = [*SERVERS, "agent-1", "agent-2"]
    [holder] = labkit.vip_holders(lab, str(lab.vip_first))
    r = subprocess.run([sys.executable, "-m", "hakube.cli", "reboot", str(three), "--dry-run", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    plan = [c.split(":")[0] for p in labkit.json.loads(r.stdout)["phases"] for c in p["changes"]
            if "would reboot the machine" in c]
    assert sorted(plan) == sorted(machines) and plan[-1] == holder, plan
    chosen = ["agent-1", holder]
    booted = {m: labkit.ssh(lab, m, labkit.BOOT).stdout for m in machines}
    doc = probed("reboot", str(three), *chosen, "--yes", report=tmp_path / "report")
    assert sorted(doc["rebooted"]) == sorted(chosen) and doc["rebooted"][-1] == holder, doc["rebooted"]
    assert all(labkit.ssh(lab, m, labkit.BOOT).stdout != booted[m] for m in chosen)
    assert all(labkit.ssh(lab, m, labkit.BOOT).stdout == booted[m] for m in machines if m not in chosen)
    steps = steps_of(doc)
    assert any(s.startswith(f"{holder}: stopped keepalived") for s in steps), steps
    assert sum("uncordoned the node" in s for s in steps) == 2, steps
    st = status(three)
    assert st["healthy"], st["verdict"]
    nodes = labkit.json.loads(labkit.kubectl(lab, NAME, "get", "nodes", "-o", "json").stdout)["items"]
    assert not [n["metadata"]["name"] for n in nodes if n["spec"].get("unschedulable")]
    assert labkit.up(three).changed == 0


def test_grow_from_3_to_5_servers_joins_learners_one_at_a_time(cluster, tmp_path) -> None:
    lab, spec = cluster
    five = rolled(lab.cluster_yaml, "five")
    labkit.ETCD_ON[NAME] = SERVERS + ("server-4", "server-5")
    doc = probed("up", str(five), report=tmp_path / "report")
    steps = steps_of(doc)
    # each joins as a learner and is promoted before the next one changes anything
    order = [s for s in steps if "learner" in s]
    assert [s.split(":")[0] for s in order] == ["server-4", "server-4", "server-5", "server-5"], order
    assert "promoted its etcd learner to a voter" in order[1] and "promoted" in order[3]
    st = status(five)
    assert st["healthy"], st["verdict"]
    assert sorted(m["name"] for m in st["etcd"]) == [f"server-{i}" for i in range(1, 6)]
    assert all(len(x) == 5 for x in backends_per_lb(st).values()) and len(backends_per_lb(st)) == 5
    assert len(labkit.etcd_members(lab, NAME)["members"]) == 5
    assert labkit.up(five).changed == 0


def test_remove_back_to_3_hands_off_and_resets_the_hosts(cluster) -> None:
    lab, spec = cluster
    five = rolled(lab.cluster_yaml, "five")
    doc = probed("remove", str(five), "server-4", "server-5", "--yes")
    assert doc["removed"] == ["server-4", "server-5"]
    steps = steps_of(doc)
    assert any(s.startswith("server-4: removing its etcd member") for s in steps), steps
    assert any(s.startswith("server-5: deleted the node server-5") for s in steps), steps
    labkit.ETCD_ON[NAME] = SERVERS
    three = rolled(spec, "rolled")
    st = status(three)
    assert st["healthy"], st["verdict"]
    assert sorted(m["name"] for m in st["etcd"]) == list(SERVERS)
    assert backends_per_lb(st) == {s: list(SERVERS) for s in SERVERS}
    assert len(labkit.etcd_members(lab, NAME)["members"]) == 3
    # the removed hosts are as they were before the first `up`
    for m in ("server-4", "server-5"):
        assert_as_before(lab, m)
    assert labkit.up(three).changed == 0


def test_removing_a_server_from_3_is_refused_and_changes_nothing(cluster) -> None:
    lab, spec = cluster
    three = rolled(spec, "rolled")
    r = subprocess.run([sys.executable, "-m", "hakube.cli", "remove", str(three), "server-3", "--yes"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "refusing to remove server-3: 2 etcd members would tolerate no failure (3 tolerate 1 now)" in r.stderr
    assert "Nothing was changed" in r.stderr
    assert len(labkit.etcd_members(lab, NAME)["members"]) == 3


PDB_APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: guarded, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: guarded}}
  template:
    metadata: {labels: {app: guarded}}
    spec:
      affinity:
        nodeAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            preference: {matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [agent-1]}]}
      containers: [{name: pause, image: "%s"}]
---
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata: {name: guarded, namespace: default}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: guarded}}
"""


def test_removing_an_agent_moves_its_pods_first_and_honours_their_budget(cluster, tmp_path) -> None:
    from hakube.components.containerd import pause_image

    lab, spec = cluster
    manifest = tmp_path / "guarded.yaml"
    manifest.write_text(PDB_APP % pause_image((1, 20)))
    labkit.kubectl(lab, NAME, "apply", "-f", str(manifest))
    labkit.kubectl(lab, NAME, "rollout", "status", "deployment/guarded", "--timeout=120s")
    on = labkit.kubectl(lab, NAME, "get", "pods", "-l", "app=guarded", "-o",
                        "jsonpath={.items[*].spec.nodeName}").stdout.split()
    assert "agent-1" in on, on
    three = rolled(spec, "rolled")
    doc = probed("remove", str(three), "agent-1", "--yes")
    moved = [p for p in doc["evicted"]["agent-1"] if p.startswith("default/guarded-")]
    assert len(moved) == on.count("agent-1"), doc["evicted"]
    # the budget held: the Deployment never had fewer than one pod ready; now both on agent-2
    labkit.kubectl(lab, NAME, "rollout", "status", "deployment/guarded", "--timeout=120s")
    now = labkit.kubectl(lab, NAME, "get", "pods", "-l", "app=guarded", "-o",
                         "jsonpath={.items[*].spec.nodeName}").stdout.split()
    assert now == ["agent-2", "agent-2"], now
    nodes = labkit.kubectl(lab, NAME, "get", "nodes", "-o", "name").stdout.split()
    assert "node/agent-1" not in nodes
    assert_as_before(lab, "agent-1")
    assert labkit.up(rolled(spec, "no-agent-1", "agent-1")).changed == 0


def test_a_dead_server_is_replaced_by_a_new_machine_in_the_same_cluster(cluster) -> None:
    """server-3 dies for good (its etcd data wiped, then a hard crash); server-4, a new
    machine with a new address, takes its place: the dead member goes first (while 2 of
    2 keep quorum), server-4 joins as a learner and is promoted, the cluster ID stays."""
    lab, spec = cluster
    cluster_id = labkit.etcd_cluster_id(lab, NAME, "server-1")
    labkit.kubectl(lab, NAME, "create", "configmap", "before-replace", "--from-literal=k=v")
    labkit.ssh(lab, "server-3", f"rm -rf /var/lib/etcd/{NAME}", check=False)
    faults.crash(lab.name, "server-3")
    replaced = rolled(spec, "replaced", "agent-1", "server-3")
    text = replaced.read_text()
    four = lab.machine("server-4")
    doc = labkit.yaml.safe_load(text)
    doc["spec"]["hosts"].insert(2, {"name": "server-4", "address": str(four.address), "roles": ["server"]})
    replaced.write_text(labkit.yaml.safe_dump(doc, sort_keys=False))
    new = ("server-1", "server-2", "server-4")
    labkit.ETCD_ON[NAME] = new
    out = probed("up", str(replaced))
    steps = steps_of(out)
    dead = [i for i, s in enumerate(steps) if "remove the dead etcd member server-3" in s or
            "removing the dead etcd member server-3" in s]
    joined = [i for i, s in enumerate(steps) if s.startswith("server-4: joining the etcd cluster")]
    assert dead and joined and dead[0] < joined[0], steps
    assert any("delete the node server-3" in s or "deleted the node server-3" in s for s in steps), steps
    members = labkit.etcd_members(lab, NAME)["members"]
    assert sorted(m["name"] for m in members) == list(new)
    assert {labkit.etcd_cluster_id(lab, NAME, s) for s in new} == {cluster_id}
    assert "before-replace" in labkit.kubectl(lab, NAME, "get", "configmap", "before-replace", "-o", "name").stdout
    st = status(replaced)
    assert st["healthy"], st["verdict"]
    assert labkit.up(replaced).changed == 0


# systemd's own bookkeeping of namespaced and transient units: made on first use, never
# removed, by systemd (not by anything hakube starts)
SYSTEMD_RUNTIME = {"/run/systemd/incoming", "/run/systemd/propagate", "/run/systemd/transient",
                   "/run/systemd/unit-root"}


# journald's state of each running process's stdout stream, named by the socket's inode:
# other names after any reboot (the rolling reboot above), whatever hakube did
JOURNAL_STREAMS = "/run/systemd/journal/streams/"


def test_restore_after_losing_quorum_for_good_brings_back_exactly_the_backup(cluster, tmp_path) -> None:
    """Objects written, a backup taken, more written; two of three members' etcd data lost
    (quorum gone for good). Refused while quorum held; then `hakube restore` rebuilds every
    member from the backup: the API is back with exactly the backup's objects, one new
    cluster ID on all three, kubelets Ready again, and a second `up` changes nothing."""
    lab, spec = cluster
    replaced = spec.with_name("cluster-replaced.yaml")
    members = ("server-1", "server-2", "server-4")
    labkit.kubectl(lab, NAME, "create", "configmap", "in-the-restored-backup", "--from-literal=k=v")
    r = subprocess.run([sys.executable, "-m", "hakube.cli", "backup", str(replaced), "-o", str(tmp_path), "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    backup = labkit.json.loads(r.stdout)["path"]
    labkit.kubectl(lab, NAME, "create", "configmap", "after-the-backup", "--from-literal=k=v")

    def restore(*extra: str):
        return subprocess.run([sys.executable, "-m", "hakube.cli", "restore", str(replaced), backup, "--yes",
                               *extra], capture_output=True, text=True, timeout=1500)

    refused = restore()
    assert refused.returncode == 1 and "etcd still has quorum (3/3" in refused.stderr, refused.stderr
    before = labkit.etcd_cluster_id(lab, NAME, "server-1")
    for m in ("server-2", "server-4"):  # their etcd data is lost, the members dead
        # (killed, not stopped: etcd 3.4 stopping while apiservers hold watch streams on it
        # was seen to hang for over a minute)
        labkit.ssh(lab, m, f"systemctl kill --signal=SIGKILL etcd; systemctl stop etcd; rm -rf /var/lib/etcd/{NAME}",
                   timeout=120)
    plan = restore("--dry-run", "--json")
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]
    steps = [c for p in labkit.json.loads(plan.stdout)["phases"] for c in p["changes"]]
    assert sum("would restore it beside the member's data" in c for c in steps) == 3, steps
    assert sum("would swap the prepared data in" in c for c in steps) == 3, steps
    r = restore("--json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    done = labkit.json.loads(r.stdout)
    ids = {m: labkit.etcd_cluster_id(lab, NAME, m) for m in members}
    assert len(set(ids.values())) == 1 and before not in ids.values(), (before, ids)
    assert labkit.etcd_health(lab, NAME) == {m: True for m in members}
    names = labkit.kubectl(lab, NAME, "get", "configmaps", "-o", "name").stdout
    assert "configmap/in-the-restored-backup" in names and "after-the-backup" not in names
    assert done["revision"] > 0 and done["members"] == list(members)
    st = status(replaced)
    assert st["healthy"], st["verdict"]
    assert labkit.up(replaced).changed == 0


def assert_as_before(lab, machine: str) -> None:
    files, sockets = labkit.files_and_sockets(lab, machine)
    before_files, before_sockets = BEFORE[machine]
    files = [f for f in files if not f.startswith(JOURNAL_STREAMS)]
    before_files = [f for f in before_files if not f.startswith(JOURNAL_STREAMS)]
    added = sorted(set(files) - set(before_files) - SYSTEMD_RUNTIME)
    missing = sorted(set(before_files) - set(files))
    assert not added and not missing, (machine, added[:40], missing[:40])
    assert sockets == before_sockets, (machine, sockets, before_sockets)


def test_reset_leaves_every_host_as_before_and_a_fresh_up_works(cluster) -> None:
    lab, spec = cluster
    replaced = spec.with_name("cluster-replaced.yaml")
    # agent-2 as a deploy that stopped before it wrote kube-proxy's unit: reset passes over
    # what systemd never loaded
    labkit.ssh(lab, "agent-2", "systemctl stop kube-proxy && rm /etc/systemd/system/kube-proxy.service && "
               "systemctl daemon-reload")
    r = subprocess.run([sys.executable, "-m", "hakube.cli", "reset", str(replaced), "--yes", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    hosts = [h["host"] for h in labkit.json.loads(r.stdout)["hosts"]]
    assert sorted(hosts) == ["agent-2", "server-1", "server-2", "server-4"]
    for m in hosts:
        assert_as_before(lab, m)
    # the same hosts take a new cluster from scratch (the local CA is reused)
    report = labkit.up(replaced)
    assert report.changed > 0
    assert labkit.kubectl(lab, NAME, "get", "--raw", "/readyz").stdout.strip() == "ok"
    assert "before-replace" not in labkit.kubectl(lab, NAME, "get", "configmaps", "-o", "name").stdout
    assert labkit.up(replaced).changed == 0
