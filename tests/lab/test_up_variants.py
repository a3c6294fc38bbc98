"""The other front doors, each deployed for real once: nginx, agents-local proxies, and
pacemaker managing the VIP with the load balancer. Each must converge, serve the API
through its endpoint with TLS verified, and change nothing on a second run."""

from __future__ import annotations

import pytest

from . import labkit

pytestmark = pytest.mark.lab

VARIANTS = {
    "nginx": dict(servers=3, agents=0, changes=dict(loadBalancer={"provider": "nginx"})),
    "agents-local": dict(servers=3, agents=1, changes=dict(loadBalancer={"placement": "agents-local"})),
    "pacemaker": dict(servers=3, agents=0, changes=dict(vip={"provider": "pacemaker"})),
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
        assert labkit.up(spec, dry_run=True).changed == 0
        report = labkit.up(spec)
        assert report.changed == 0, [c for p in report.phases for c in p.changes]
