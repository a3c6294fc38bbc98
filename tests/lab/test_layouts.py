"""Report 4's architecture, made HA, for real: etcd on 3 hosts of its own, HAProxy and
keepalived on 2 load-balancer hosts of their own, 3 servers with only the control plane,
1 agent joined through the VIP, monitoring on (Prometheus on the servers scrapes the etcd
hosts). Then the same servers on an existing etcd given by its endpoints and files (the
etcd hosts, handed over as if another team ran them).

One lab for the module (9 machines); each test builds on the one before, as a person
would: deploy, break it the ways this shape allows, hand the datastore over, break again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from hakube.chaos.api import run_scenario
from hakube.errors import HakubeError
from hakube.lab import faults
from hakube.spec import load
from hakube.verify.status import gather

from . import labkit

pytestmark = pytest.mark.lab
NAME = "hktest-split"
ETCD_HOSTS = ["etcd-1", "etcd-2", "etcd-3"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with labkit.lab_cluster(NAME, servers=3, agents=1, loadbalancers=2, etcd=3,
                            logs=tmp_path_factory.mktemp("evidence")) as (lab, spec):
        yield lab, labkit.variant(spec, "monitoring", addons={"monitoring": {"enabled": True}})


def _sha(lab, machine: str, path: str) -> str:
    return labkit.ssh(lab, machine, f"sha256sum {path}").stdout.split()[0]


def test_deploys_with_etcd_and_load_balancers_on_hosts_of_their_own(cluster) -> None:
    lab, spec = cluster
    assert labkit.up(spec).changed > 0
    assert labkit.kubectl(lab, NAME, "get", "--raw", "/readyz").stdout.strip() == "ok"
    assert labkit.etcd_health(lab, NAME) == {h: True for h in ETCD_HOSTS}
    assert sorted(m["name"] for m in labkit.etcd_members(lab, NAME)["members"]) == ETCD_HOSTS
    for s in ("server-1", "server-2", "server-3"):  # servers run no etcd member
        r = labkit.ssh(lab, s, "systemctl is-active etcd; test -e /var/lib/etcd/hktest-split", check=False)
        assert r.returncode != 0 and "inactive" in r.stdout
        unit = labkit.ssh(lab, s, "cat /etc/systemd/system/kube-apiserver.service").stdout
        assert all(f"https://{lab.machine(e).address}:2379" in unit for e in ETCD_HOSTS)
    holders = labkit.vip_holders(lab, str(lab.vip_first))
    assert len(holders) == 1 and holders[0] in ("lb-1", "lb-2")
    st = asyncio.run(gather(load(spec)))
    assert st.healthy, st.verdict
    assert sorted(m.name for m in st.etcd) == ETCD_HOSTS
    assert labkit.up(spec, dry_run=True).changed == 0
    report = labkit.up(spec)
    assert report.changed == 0, [c for p in report.phases for c in p.changes]


def test_monitoring_scrapes_everything_and_alerts_reach_status(cluster) -> None:
    """Prometheus on every server scrapes etcd on its own hosts (mutual TLS), the
    apiservers, HAProxy on the load-balancer hosts, every node exporter and the API through
    the VIP; a crashed etcd host turns into HA alerts that `hakube status` shows as soon as
    Prometheus sees them (pending; they fire after their `for:`, which the unit tier's
    `promtool test rules` cases prove)."""
    lab, spec = cluster
    prometheus = f"http://{lab.machine('server-1').address}:9090"
    deadline, down, jobs = time.monotonic() + 90, None, set()
    while time.monotonic() < deadline:
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        down = [(t["labels"]["job"], t["lastError"]) for t in targets if t["health"] != "up"]
        jobs = {t["labels"]["job"] for t in targets}
        etcd = {t["labels"].get("instance", "") for t in targets if t["labels"]["job"] == "etcd"}
        if not down and {"etcd", "apiserver", "haproxy", "node", "api-endpoint"} <= jobs and len(etcd) == 3:
            break
        time.sleep(5)
    assert not down and len(etcd) == 3, (down, jobs, etcd)
    loaded = load(spec)
    faults.crash(NAME, "etcd-3")
    try:
        deadline, notes = time.monotonic() + 90, []
        while time.monotonic() < deadline:
            notes = asyncio.run(gather(loaded)).notes
            if all(any(n.startswith(f"alert {a} ") for n in notes) for a in ("EtcdMembersDown", "NodeDown")):
                break
            time.sleep(5)
        assert any(n.startswith("alert EtcdMembersDown ") for n in notes), notes
        assert any(n.startswith("alert NodeDown ") for n in notes), notes
    finally:
        faults.start(NAME, "etcd-3")
    # (losing one of the etcd hosts stalls the apiservers' etcd clients for 20-30 s on this
    # layout: alerts of that outage may fire and take their time to resolve)
    deadline, st = time.monotonic() + 180, None
    while time.monotonic() < deadline:
        st = asyncio.run(gather(loaded))
        if st.healthy:
            break
        time.sleep(3)
    assert st.healthy, (st.problems, st.notes)


@pytest.mark.parametrize("scenario", ["crash-lb-host", "crash-etcd-leader", "crash-two-servers"])
def test_scenario_loses_nothing(cluster, scenario) -> None:
    lab, spec = cluster
    loaded = load(spec)
    (trial,) = asyncio.run(run_scenario(loaded, scenario, trials=1, lab=NAME))
    assert trial.ok, trial.verdict
    assert trial.lost == 0 and trial.phantom == 0 and trial.failed_but_present == 0
    assert trial.acknowledged > 20
    assert trial.healthy_during_fault is False, f"status said healthy during {scenario}"
    if scenario == "crash-lb-host":
        assert trial.vip_moved_s is not None
    if scenario == "crash-etcd-leader":
        assert trial.leader_elected_s is not None
    if scenario == "crash-two-servers":
        assert any("two of 3 servers down" in c for c in trial.checks), trial.checks
    assert asyncio.run(gather(loaded)).healthy


def _existing_etcd_spec(lab, spec, tmp_path, ca: str) -> object:
    """The cluster's spec with its etcd hosts handed over: not in spec.hosts any more, the
    datastore given by endpoints, a CA and a client certificate of that etcd (copied out of
    hakube's state directory, as another team would hand them over)."""
    files = tmp_path / "existing-etcd"
    files.mkdir(exist_ok=True)
    pki = labkit.pki(NAME)
    shutil.copy(pki / f"{ca}.crt", files / "ca.crt")
    shutil.copy(pki / "etcd-healthcheck-client.crt", files / "client.crt")
    shutil.copy(pki / "etcd-healthcheck-client.key", files / "client.key")
    doc = yaml.safe_load(spec.read_text())
    doc["spec"]["hosts"] = [h for h in doc["spec"]["hosts"] if "etcd" not in h["roles"]]
    doc["spec"]["datastore"] = {
        "type": "external",
        "endpoints": [f"https://{lab.machine(e).address}:2379" for e in ETCD_HOSTS],
        "caFile": str(files / "ca.crt"), "certFile": str(files / "client.crt"), "keyFile": str(files / "client.key")}
    out = spec.with_name(f"cluster-existing-{ca}.yaml")
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def test_existing_etcd_is_checked_first_then_used(cluster, tmp_path) -> None:
    lab, spec = cluster
    key = "/etc/kubernetes/pki/apiserver-etcd-client.key"
    before = {s: _sha(lab, s, key) for s in ("server-1", "server-2", "server-3")}
    # a CA that did not sign etcd's certificates: refused before any host changes
    wrong = _existing_etcd_spec(lab, spec, tmp_path, ca="ca")
    with pytest.raises(HakubeError) as e:
        labkit.up(wrong)
    assert "existing etcd" in str(e.value) and "before changing anything" in str(e.value)
    assert {s: _sha(lab, s, key) for s in before} == before
    # the right files: copied to every server (the key 0600), apiservers restarted one at a time
    right = _existing_etcd_spec(lab, spec, tmp_path, ca="etcd-ca")
    # the hand-over restarts every apiserver (new credentials): under the write probes
    r = subprocess.run([sys.executable, "-m", "hakube.cli", "up", str(right), "--probe", "--json"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    probes = json.loads(r.stdout)["probes"]
    assert probes["lost"] == 0 and probes["phantom"] == 0 and probes["ok"], probes["verdict"]
    steps = [e["detail"] for e in probes["events"] if e["kind"] == "step"]
    assert sum("restarted kube-apiserver" in s for s in steps) == 3, steps
    given = hashlib.sha256((tmp_path / "existing-etcd" / "client.key").read_bytes()).hexdigest()
    for s in before:
        assert _sha(lab, s, key) == given
        assert labkit.ssh(lab, s, f"stat -c %a:%U {key}").stdout.strip() == "600:root"
    assert labkit.kubectl(lab, NAME, "get", "--raw", "/readyz").stdout.strip() == "ok"
    st = asyncio.run(gather(load(right)))
    assert st.healthy, st.verdict
    assert sorted(m.endpoint for m in st.etcd) == sorted(f"https://{lab.machine(e).address}:2379"
                                                         for e in ETCD_HOSTS)
    assert all(m.healthy for m in st.etcd)
    report = labkit.up(right)
    assert report.changed == 0, [c for p in report.phases for c in p.changes]
    # (the write probes above ran through the existing etcd; crash-two-servers on this
    # layout ran in test_scenario_loses_nothing: a second trial belongs in bench/)
