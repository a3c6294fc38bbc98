"""The other front doors, each deployed for real once and then broken: keepalived with
nginx (its track script: nginx stopped on the VIP holder), proxies on every agent (report 3: crash a server, every agent stays Ready), and
pacemaker holding the VIP with nginx as one resource group (report 2's front door). Each
must converge, serve the API through its endpoint with TLS verified, survive its
scenario with no acknowledged write lost, and change nothing on a second run.
(Pacemaker with HAProxy, report 1, is the front door of test_workloads.py.)"""

from __future__ import annotations

import asyncio

import pytest

from hakube.chaos.api import run_scenario
from hakube.spec import load
from hakube.verify.status import gather

from . import labkit

pytestmark = pytest.mark.lab

VARIANTS = {
    # keepalived tracks nginx: stopping nginx alone on the holder moves the VIP (a machine
    # crash is crash-vip-holder's, proven on the default layout and with pacemaker below)
    "nginx": dict(servers=3, agents=0, changes=dict(loadBalancer={"provider": "nginx"}),
                  scenario="stop-lb-on-vip-holder"),
    "agents-local": dict(servers=3, agents=2, changes=dict(loadBalancer={"placement": "agents-local"}),
                         scenario="crash-server-agents-local"),
    "pacemaker": dict(servers=3, agents=0, changes=dict(vip={"provider": "pacemaker"},
                                                        loadBalancer={"provider": "nginx"}),
                      scenario="crash-vip-holder"),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_converges_and_reruns_without_change(name, tmp_path) -> None:
    v = VARIANTS[name]
    lab_name = f"hktest-{name}"[:15]
    with labkit.lab_cluster(lab_name, servers=v["servers"], agents=v["agents"], logs=tmp_path / "evidence") as (lab, spec):
        spec = labkit.variant(spec, name, **v["changes"])
        assert labkit.up(spec).changed > 0
        vip = str(lab.vip_first)
        assert labkit.kubectl(lab, lab_name, "get", "--raw", "/readyz").stdout.strip() == "ok"
        assert labkit.etcd_health(lab, lab_name) == {"server-1": True, "server-2": True, "server-3": True}
        assert len(labkit.vip_holders(lab, vip)) == 1
        if name == "agents-local":
            # the agent reaches the API through its own proxy on 127.0.0.1, TLS verified
            r = labkit.ssh(lab, "agent-1", "curl -sS --cacert /etc/kubernetes/pki/ca.crt "
                                          "--cert /etc/kubernetes/pki/lb-check.crt --key /etc/kubernetes/pki/lb-check.key "
                                          "https://127.0.0.1:6443/livez")
            assert r.stdout.strip() == "ok"
        report = labkit.up(spec)  # (a dry run's "no changes" is test_up's)
        assert report.changed == 0, [c for p in report.phases for c in p.changes]
        loaded = load(spec)
        (trial,) = asyncio.run(run_scenario(loaded, v["scenario"], trials=1, lab=lab_name))
        assert trial.ok, trial.verdict
        assert trial.lost == 0 and trial.phantom == 0 and trial.failed_but_present == 0
        assert trial.acknowledged > 20
        if v["scenario"] in ("crash-vip-holder", "stop-lb-on-vip-holder"):
            assert trial.vip_moved_s is not None
        else:
            assert any("every agent stayed Ready" in c for c in trial.checks), trial.checks
            assert trial.proxy_outage_s is not None
        assert asyncio.run(gather(loaded)).healthy
