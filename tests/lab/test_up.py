"""`hakube up` on real lab machines: 3 servers, HAProxy + keepalived (the default layout).

Reads like the runbook a person follows: bad input first (nothing may change), then a
deploy from scratch, proof through the VIP with TLS verified, a no-change re-run, a wiped
etcd member that must rejoin the same cluster, and a server that dies mid-deploy.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from hakube.components import keepalived
from hakube.engine.ui import Reporter
from hakube.errors import HakubeError
from hakube.lab import faults
from hakube.spec import load
from hakube.transport import ConnectError

from . import labkit

pytestmark = pytest.mark.lab
NAME = "hktest-up"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with labkit.lab_cluster(NAME, servers=3, logs=tmp_path_factory.mktemp("evidence")) as (lab, spec):
        yield lab, spec


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
    assert "https://" + topo_vip in (labkit.state.cluster_dir(NAME) / "kubeconfig").read_text()
    # etcd: 3 members, all healthy over TLS, one cluster
    assert len(labkit.etcd_members(lab, NAME)["members"]) == 3
    assert labkit.etcd_health(lab, NAME) == {"server-1": True, "server-2": True, "server-3": True}
    assert len({labkit.etcd_cluster_id(lab, NAME, s) for s in ("server-1", "server-2", "server-3")}) == 1
    # every apiserver answers /readyz directly
    for m in lab.machines:
        assert labkit.https(NAME, f"https://{m.address}:6444/readyz").status_code == 200
    # the VIP is on exactly one server
    assert len(labkit.vip_holders(lab, topo_vip)) == 1
    # binaries went through private upload folders, removed after a digest-checked install
    for m in lab.machines:
        assert labkit.ssh(lab, m.name, "ls -d /tmp/.hakube-upload* 2>/dev/null | wc -l").stdout.strip() == "0"


def test_second_up_changes_nothing(cluster) -> None:
    lab, spec = cluster
    assert labkit.up(spec, dry_run=True).changed == 0
    report = labkit.up(spec)
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
    restarts they need, one server at a time; the run then does exactly that plan."""
    lab, spec = cluster
    labkit.ssh(lab, "server-1", "echo '# local edit' >> /etc/haproxy/haproxy.cfg")
    labkit.ssh(lab, "server-2", "echo '# local edit' >> /etc/systemd/system/kube-scheduler.service")
    labkit.ssh(lab, "server-3", f"chmod 0700 {keepalived.CHECK_SCRIPT}")  # read afresh: no restart
    dry = labkit.up(spec, dry_run=True)
    plan = planned(dry)
    flat = [a for actions in plan.values() for a in actions]
    assert "server-1: write /etc/haproxy/haproxy.cfg: content changed" in flat, flat
    assert any(a.startswith("server-1: restart haproxy") for a in flat), flat
    assert any(a.startswith("server-2: restart kube-scheduler") for a in flat), flat
    assert f"server-3: write {keepalived.CHECK_SCRIPT}: mode 700 -> 755" in flat, flat
    assert not any("restart keepalived" in a for a in flat), flat
    assert all(c.startswith(c.split(": ", 1)[0] + ": would ") for p in dry.phases for c in p.changes)
    run = labkit.up(spec)
    assert planned(run) == plan
    assert labkit.up(spec).changed == 0


def test_up_under_the_chaos_probes_loses_no_write(cluster, tmp_path) -> None:
    """`up --probe`: a rolling change (an edited scheduler unit on every server, so each
    restarts in turn) with the probes writing through the VIP; nothing lost, the steps on
    the timeline."""
    lab, spec = cluster
    for s in ("server-1", "server-2", "server-3"):
        labkit.ssh(lab, s, "echo '# local edit' >> /etc/systemd/system/kube-scheduler.service")
    r = subprocess.run([sys.executable, "-m", "hakube.cli", "up", str(spec), "--probe", "--json",
                        "--report", str(tmp_path / "report")], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = labkit.json.loads(r.stdout)
    probes = doc["probes"]
    assert probes["lost"] == 0 and probes["phantom"] == 0 and probes["ok"], probes["verdict"]
    assert probes["acknowledged"] > 20
    steps = [e["detail"] for e in probes["events"] if e["kind"] == "step"]
    assert any("restarted kube-scheduler" in s for s in steps) and "phase control plane" in steps
    assert (tmp_path / "report" / "index.html").exists()
    assert labkit.up(spec).changed == 0


def test_certs_lists_every_certificate_and_finds_a_host_copy_that_differs(cluster) -> None:
    lab, spec = cluster

    def certs():
        r = subprocess.run([sys.executable, "-m", "hakube.cli", "certs", str(spec), "--json"],
                           capture_output=True, text=True, timeout=120)
        return r.returncode, labkit.json.loads(r.stdout)

    code, rows = certs()
    assert code == 0 and rows and all(r["on_host"] == "matches" for r in rows), rows
    assert {r["host"] for r in rows} == {m.name for m in lab.machines}
    assert min(r["days_left"] for r in rows) > 800
    labkit.ssh(lab, "server-2", "echo >> /etc/kubernetes/pki/apiserver.crt")
    code, rows = certs()
    assert code == 1
    assert [(r["host"], r["path"]) for r in rows if r["on_host"] != "matches"] == \
        [("server-2", "/etc/kubernetes/pki/apiserver.crt")]
    labkit.up(spec)  # puts it back (and restarts that apiserver)
    assert certs()[0] == 0


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
    """A rolling change of the etcd election timeout and of an apiserver flag, under the
    probes: each etcd leader hands its leadership over before it restarts, each apiserver
    is drained on every HAProxy first and taken back after its /readyz; nothing is lost.
    (Last in this module: the cluster keeps the changed settings.)"""
    lab, spec = cluster
    changed = labkit.variant(spec, "rolled", datastore={"etcd": {"electionTimeoutMs": 1200}},
                             kubernetes={"apiserverExtraArgs": {"event-ttl": "2h"}})
    r = subprocess.run([sys.executable, "-m", "hakube.cli", "up", str(changed), "--probe", "--json",
                        "--report", str(tmp_path / "report")], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    probes = labkit.json.loads(r.stdout)["probes"]
    assert probes["lost"] == 0 and probes["phantom"] == 0 and probes["ok"], probes["verdict"]
    steps = [e["detail"] for e in probes["events"] if e["kind"] == "step"]
    assert sum("restarted etcd" in s for s in steps) == 3, steps
    assert sum("restarted kube-apiserver" in s for s in steps) == 3, steps
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
