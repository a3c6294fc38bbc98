"""Monitoring: what is rendered, checked by the tools that will read it.

promtool checks prometheus.yml and the rules, and runs fixtures/monitoring/ha-rules.test.yml:
for every alert, a failure that fires it and a healthy (or merely transient) state that
does not. Its exp_annotations are the sentences an operator reads; when the wording in
hakube-ha.rules.yml.j2 changes, promtool prints the old and new text to copy there.
amtool checks alertmanager.yml, the blackbox exporter its own file, systemd-analyze the
VIP presence units. fixtures/monitoring/cluster.yaml is the layout the rule tests assume.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hakube import paths
from hakube.components import monitoring
from hakube.components.base import File, RenderContext
from hakube.spec import loads
from hakube.topology import Topology, derive

from .conftest import FIXTURES, SECRETS

HERE = FIXTURES / "monitoring"
RULE_TESTS = HERE / "ha-rules.test.yml"
BASE = yaml.safe_load((HERE / "cluster.yaml").read_text())


def _edit(fn):
    def make() -> dict:
        d = copy.deepcopy(BASE)
        fn(d["spec"])
        return d
    return make


def _set(path: str, value):
    def fn(spec: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            spec = spec.setdefault(p, {})
        spec[last] = value
    return fn


def _hosts(keep: tuple[str, ...] = (), add: tuple[dict, ...] = ()):
    def fn(spec: dict) -> None:
        if keep:
            spec["hosts"] = [h for h in spec["hosts"] if h["name"] in keep]
        spec["hosts"] += list(add)
    return fn


def _both(*fns):
    def fn(spec: dict) -> None:
        for f in fns:
            f(spec)
    return fn


# Layouts that take different branches of the templates.
VARIANTS = {
    "ha3": _edit(lambda s: None),
    "no-webhook": _edit(lambda s: s["addons"]["monitoring"].pop("webhookUrl")),
    "nginx": _edit(_set("controlPlane.loadBalancer.provider", "nginx")),
    "vip-none": _edit(_set("controlPlane.vip.provider", "none")),
    "pacemaker": _edit(_set("controlPlane.vip.provider", "pacemaker")),
    "agents-local": _edit(_set("controlPlane.loadBalancer.placement", "agents-local")),
    "dedicated": _edit(_both(_set("controlPlane.loadBalancer.placement", "dedicated"), _hosts(add=(
        {"name": "lb-1", "address": "10.0.0.31", "roles": ["loadbalancer"]},
        {"name": "lb-2", "address": "10.0.0.32", "roles": ["loadbalancer"]})))),
    # (scheduled backups are of hakube's own etcd: not with k3s)
    "k3s": _edit(_both(_set("distribution", {"name": "k3s", "version": "v1.30.5+k3s1"}),
                       lambda s: s.pop("backup"))),
    "one-server": _edit(_hosts(keep=("server-1", "agent-1"))),
    "five-servers": _edit(_hosts(add=(
        {"name": "server-4", "address": "10.0.0.14", "roles": ["server"]},
        {"name": "server-5", "address": "10.0.0.15", "roles": ["server"]}))),
    "monitoring-hosts": _edit(_set("addons.monitoring.hosts", ["server-2", "agent-1"])),
    "fast-scrape": _edit(_set("addons.monitoring.scrapeInterval", "5s")),
}


def topo(variant: str = "ha3") -> Topology:
    return derive(loads(yaml.safe_dump(VARIANTS[variant]())).cluster)


def host_files(t: Topology) -> dict[str, dict[str, File]]:
    ctx = RenderContext(topo=t, secrets=SECRETS)
    return {h.name: {f.path: f for f in monitoring.host_files(ctx, h)} for h in t.hosts}


def first_monitoring_host(t: Topology) -> dict[str, File]:
    name = next(h.name for h in t.hosts if h.runs("prometheus"))
    return host_files(t)[name]


def run(cmd: list[str], cwd: Path | None = None) -> str:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"`{' '.join(cmd)}` failed:\n{out}"
    return out


def under(root: Path, content: str, referenced: list[str]) -> str:
    """`content` with the absolute paths it references moved under `root`.

    promtool opens the files a configuration names (rules, certificates); on this machine
    they live under a temporary root instead. Nothing else in the text changes.
    """
    for p in sorted(referenced, key=len, reverse=True):
        assert p in content, f"{p} is not referenced"
        content = content.replace(p, f"{root}{p}")
    return content


# ---- Prometheus ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_promtool_checks_prometheus_config_and_rules(variant: str, tmp_path: Path) -> None:
    files = first_monitoring_host(topo(variant))
    config = files[monitoring.PROMETHEUS_CONFIG].content
    certs = [p for p in (paths.MONITORING_CA_CRT, paths.MONITORING_CLIENT_CRT, paths.MONITORING_CLIENT_KEY,
                         paths.MONITORING_ETCD_CA_CRT, paths.MONITORING_ETCD_CLIENT_CRT,
                         paths.MONITORING_ETCD_CLIENT_KEY) if p in config]
    for p in certs:  # promtool only checks that certificate files exist
        (tmp_path / p.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p.lstrip("/")).touch()
    rules = tmp_path / monitoring.RULES.lstrip("/")
    rules.parent.mkdir(parents=True, exist_ok=True)
    rules.write_text(files[monitoring.RULES].content)
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(under(tmp_path, config, certs + [monitoring.RULES]))
    out = run(["promtool", "check", "config", str(cfg)])
    assert "SUCCESS" in out and " rules found" in out  # the rules file was checked too
    run(["promtool", "check", "rules", str(rules)])


def test_promtool_rule_unit_tests_pass(tmp_path: Path) -> None:
    files = first_monitoring_host(topo())
    (tmp_path / "hakube-ha.rules.yml").write_text(files[monitoring.RULES].content)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    out = run(["promtool", "test", "rules", RULE_TESTS.name], cwd=tmp_path)
    assert "SUCCESS" in out


def _alert_names(rules_text: str) -> set[str]:
    doc = yaml.safe_load(rules_text)
    return {r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r}


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    alerts = _alert_names(first_monitoring_host(topo())[monitoring.RULES].content)
    cases = [c for g in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in g["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert alerts - firing == set(), "alerts without a test that fires them"
    assert alerts - quiet == set(), "alerts without a test that they stay quiet"
    assert (firing | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_rules_carry_the_cluster_size_from_the_topology() -> None:
    def rule(variant: str, alert: str) -> dict | None:
        doc = yaml.safe_load(first_monitoring_host(topo(variant))[monitoring.RULES].content)
        return next((r for g in doc["groups"] for r in g["rules"] if r.get("alert") == alert), None)

    assert rule("ha3", "EtcdInsufficientMembers")["expr"].endswith("< 2")
    assert rule("ha3", "EtcdQuorumAtRisk")["expr"].endswith("== 2")
    assert rule("five-servers", "EtcdInsufficientMembers")["expr"].endswith("< 3")
    assert rule("five-servers", "EtcdQuorumAtRisk")["expr"].endswith("== 3")
    assert rule("five-servers", "LoadBalancerBackendDown")["expr"].endswith("< 5")
    # One server tolerates no failure: "at risk" would fire forever.
    assert rule("one-server", "EtcdQuorumAtRisk") is None
    assert rule("one-server", "EtcdInsufficientMembers")["expr"].endswith("< 1")
    # Nothing to alert on where there is nothing to scrape.
    assert rule("nginx", "LoadBalancerBackendDown") is None
    assert rule("agents-local", "LoadBalancerBackendDown") is None
    assert rule("vip-none", "VIPNotHeld") is None
    assert rule("dedicated", "LoadBalancerBackendDown")["expr"].endswith("< 3")


def test_scrape_targets_follow_the_topology() -> None:
    def jobs(variant: str) -> dict[str, list[dict]]:
        cfg = yaml.safe_load(first_monitoring_host(topo(variant))[monitoring.PROMETHEUS_CONFIG].content)
        return {j["job_name"]: j["static_configs"] for j in cfg["scrape_configs"]}

    def targets(static_configs: list[dict]) -> list[str]:
        return [t for sc in static_configs for t in sc["targets"]]

    j = jobs("ha3")
    assert targets(j["etcd"]) == ["10.0.0.11:2379", "10.0.0.12:2379", "10.0.0.13:2379"]
    assert targets(j["apiserver"]) == ["10.0.0.11:6444", "10.0.0.12:6444", "10.0.0.13:6444"]
    assert targets(j["haproxy"]) == ["10.0.0.11:8405", "10.0.0.12:8405", "10.0.0.13:8405"]
    assert targets(j["api-endpoint"]) == ["https://10.0.0.100:6443/readyz"]
    assert len(targets(j["node"])) == 5
    assert targets(jobs("dedicated")["haproxy"]) == ["10.0.0.31:8405", "10.0.0.32:8405"]
    assert "haproxy" not in jobs("nginx") and "haproxy" not in jobs("agents-local")
    assert targets(jobs("agents-local")["apiserver"])[0] == "10.0.0.11:6443"


def test_replicas_are_labelled_and_alerts_deduplicated() -> None:
    for name, files in host_files(topo()).items():
        if monitoring.PROMETHEUS_CONFIG not in files:
            continue
        cfg = yaml.safe_load(files[monitoring.PROMETHEUS_CONFIG].content)
        assert cfg["global"]["external_labels"] == {"cluster": "mon", "replica": name}
        assert {"action": "labeldrop", "regex": "replica"} in cfg["alerting"]["alert_relabel_configs"]
        assert cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
            "10.0.0.11:9093", "10.0.0.12:9093", "10.0.0.13:9093"]


def test_scrape_timeout_never_exceeds_the_interval() -> None:
    g = yaml.safe_load(first_monitoring_host(topo("fast-scrape"))[monitoring.PROMETHEUS_CONFIG].content)["global"]
    assert (g["scrape_interval"], g["scrape_timeout"]) == ("5s", "5s")


# ---- Alertmanager and the blackbox exporter ------------------------------------------------------


@pytest.mark.parametrize("variant", ["ha3", "no-webhook", "one-server"])
def test_amtool_checks_alertmanager_config(variant: str, tmp_path: Path) -> None:
    f = first_monitoring_host(topo(variant))[monitoring.ALERTMANAGER_CONFIG]
    assert f.mode == 0o640 and f.group == "prometheus"  # a webhook URL may carry a token
    (tmp_path / "alertmanager.yml").write_text(f.content)
    out = run(["amtool", "check-config", str(tmp_path / "alertmanager.yml")])
    receivers = yaml.safe_load(f.content)["receivers"]
    if variant == "no-webhook":
        assert receivers == [{"name": "none"}]
    else:
        assert receivers[0]["webhook_configs"][0]["url"] == BASE["spec"]["addons"]["monitoring"]["webhookUrl"]
    assert "SUCCESS" in out


def test_alertmanager_peers_are_the_other_monitoring_hosts() -> None:
    for variant, monitoring_hosts in [("ha3", ["server-1", "server-2", "server-3"]),
                                      ("monitoring-hosts", ["server-2", "agent-1"]),
                                      ("one-server", ["server-1"])]:
        t = topo(variant)
        for name, files in host_files(t).items():
            if name not in monitoring_hosts:
                continue
            args = files[monitoring.ALERTMANAGER_DEFAULTS].content.split('ARGS="')[1].split('"')[0].split()
            peers = [a.split("=", 1)[1] for a in args if a.startswith("--cluster.peer=")]
            assert peers == [f"{t.address(o)}:9094" for o in monitoring_hosts if o != name]
            assert f"--cluster.listen-address={t.address(name)}:9094" in args


@pytest.mark.skipif(shutil.which("prometheus-blackbox-exporter") is None,
                    reason="needs the Debian package prometheus-blackbox-exporter (not in scripts/setup.sh yet)")
def test_blackbox_exporter_checks_its_config(tmp_path: Path) -> None:
    f = first_monitoring_host(topo())[monitoring.BLACKBOX_CONFIG]
    (tmp_path / "blackbox.yml").write_text(f.content)
    out = run(["prometheus-blackbox-exporter", "--config.check", f"--config.file={tmp_path / 'blackbox.yml'}"])
    assert "Config file is ok" in out


# ---- Node exporter and the VIP presence metric ---------------------------------------------------


@pytest.mark.parametrize("vip,expected", [("127.0.0.1", 1), ("192.0.2.1", 0)])
def test_vip_presence_script_writes_a_valid_textfile(vip: str, expected: int, tmp_path: Path) -> None:
    script = host_files(topo())["server-1"][monitoring.VIP_SCRIPT].content
    assert "\nvip=10.0.0.100\n" in script
    # The script as rendered, run against an address this machine has (or not) and
    # writing into a temporary textfile directory.
    script = under(tmp_path, script, [paths.TEXTFILE_DIR]).replace("\nvip=10.0.0.100\n", f"\nvip={vip}\n")
    (tmp_path / paths.TEXTFILE_DIR.lstrip("/")).mkdir(parents=True)
    (tmp_path / "vip-presence").write_text(script)
    run(["sh", str(tmp_path / "vip-presence")])
    out = tmp_path / monitoring.VIP_TEXTFILE.lstrip("/")
    text = out.read_text()
    assert f'hakube_vip_present{{vip="{vip}"}} {expected}\n' in text
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)
    assert os.listdir(out.parent) == [out.name]  # no temporary file left behind
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_vip_presence_units(tmp_path: Path) -> None:
    files = host_files(topo())["server-1"]
    # A root with this machine's unit files, so that the units' dependencies resolve.
    shutil.copytree("/usr/lib/systemd/system", tmp_path / "usr/lib/systemd/system", symlinks=True)
    for f in (files[monitoring.VIP_SCRIPT], files[monitoring.VIP_SERVICE], files[monitoring.VIP_TIMER]):
        dest = tmp_path / f.path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(f.content)
        dest.chmod(f.mode)
    r = subprocess.run(["systemd-analyze", "verify", f"--root={tmp_path}",
                        monitoring.VIP_SERVICE.lstrip("/"), monitoring.VIP_TIMER.lstrip("/")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    ours = [line for line in (r.stdout + r.stderr).splitlines() if "hakube" in line]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr


# ---- Where things run ------------------------------------------------------------------------------


def test_node_exporter_everywhere_prometheus_only_on_monitoring_hosts() -> None:
    for variant, expected in [("ha3", {"server-1", "server-2", "server-3"}),
                              ("monitoring-hosts", {"server-2", "agent-1"})]:
        t = topo(variant)
        files = host_files(t)
        for h in t.hosts:
            assert monitoring.NODE_EXPORTER_DEFAULTS in files[h.name]
            on = h.name in expected
            for path in (monitoring.PROMETHEUS_CONFIG, monitoring.RULES, monitoring.ALERTMANAGER_CONFIG,
                         monitoring.BLACKBOX_CONFIG):
                assert (path in files[h.name]) == on, f"{variant}: {path} on {h.name}"


def test_vip_presence_only_where_the_vip_can_be() -> None:
    for variant in ("ha3", "dedicated", "vip-none"):
        t = topo(variant)
        files = host_files(t)
        for h in t.hosts:
            assert (monitoring.VIP_TIMER in files[h.name]) == (h.name in t.vip_hosts), f"{variant}: {h.name}"
    assert not any(monitoring.VIP_SCRIPT in fs for fs in host_files(topo("vip-none")).values())


def test_nothing_when_monitoring_is_disabled() -> None:
    d = VARIANTS["ha3"]()
    d["spec"]["addons"]["monitoring"]["enabled"] = False
    t = derive(loads(yaml.safe_dump(d)).cluster)
    ctx = RenderContext(topo=t, secrets=SECRETS)
    assert all(monitoring.host_files(ctx, h) == [] for h in t.hosts)
    assert monitoring.cluster_files(ctx) == []


def test_rbac_grants_the_monitoring_user_the_health_and_metrics_urls() -> None:
    [f] = monitoring.cluster_files(RenderContext(topo=topo(), secrets=SECRETS))
    role, binding = yaml.safe_load_all(f.content)
    assert role["kind"] == "ClusterRole"
    assert role["rules"] == [{"nonResourceURLs": ["/metrics", "/livez", "/readyz", "/healthz"], "verbs": ["get"]}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                    "name": monitoring.MONITORING_USER}]


def test_every_file_has_the_header_and_rendering_is_deterministic() -> None:
    for variant in sorted(VARIANTS):
        a, b = host_files(topo(variant)), host_files(topo(variant))
        assert a == b, f"{variant}: two renders differ"
        for fs in a.values():
            for f in fs.values():
                assert "generated by hakube" in "\n".join(f.content.splitlines()[:2]), f.path
                assert f.mode & 0o002 == 0, f"{f.path} is world-writable"
