"""Monitoring that knows the cluster is highly available (`spec.addons.monitoring`).

Debian's packages run as systemd services (prometheus, prometheus-alertmanager,
prometheus-node-exporter, prometheus-blackbox-exporter: no container images exist here);
hakube writes their configuration only:

- node exporter on every host, with the textfile collector that carries hakube's own
  metrics;
- on every host that can hold the VIP, a timer that writes `hakube_vip_present` (is the
  VIP on this host?) every 5 s: summed over the hosts, 0 means no host holds it and 2
  means split brain, neither of which the VIP provider reports about itself;
- Prometheus, Alertmanager and the blackbox exporter on the monitoring hosts (default:
  the servers). Every Prometheus replica scrapes everything and sends every alert to every
  Alertmanager; the Alertmanagers gossip, so one notification goes out per alert even when
  a replica, or its host, is gone;
- alert rules for the ways an HA control plane fails (etcd quorum, apiservers, the load
  balancers, the VIP), with the cluster's own numbers (members, quorum) written in;
- an RBAC manifest letting the monitoring certificate read /metrics and the health
  endpoints (anonymous auth is off everywhere).

Example:
    >>> cfg = config_for(topo)
    >>> [t.host for t in cfg.monitoring_hosts]
    ['server-1', 'server-2', 'server-3']
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ... import paths
from ..base import File, RenderContext, Unit, regex_escape, template
from ...topology import HostPlan, Topology
from .. import etcd_backup, haproxy
from ...pki import EXPIRY_METRIC

# The CN of the client certificate Prometheus and the blackbox exporter present to the
# apiservers; the RBAC manifest below grants this user what they read.
MONITORING_USER = "hakube:monitoring"

PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
PROMETHEUS_DEFAULTS = "/etc/default/prometheus"
RULES = "/etc/prometheus/rules/hakube-ha.rules.yml"
ALERTMANAGER_CONFIG = "/etc/prometheus/alertmanager.yml"
ALERTMANAGER_DEFAULTS = "/etc/default/prometheus-alertmanager"
BLACKBOX_CONFIG = "/etc/prometheus/blackbox.yml"
BLACKBOX_DEFAULTS = "/etc/default/prometheus-blackbox-exporter"
NODE_EXPORTER_DEFAULTS = "/etc/default/prometheus-node-exporter"
VIP_SCRIPT = f"{paths.LIBEXEC}/vip-presence"
VIP_SERVICE = "/etc/systemd/system/hakube-vip-presence.service"
VIP_TIMER = "/etc/systemd/system/hakube-vip-presence.timer"
VIP_TEXTFILE = f"{paths.TEXTFILE_DIR}/hakube_vip.prom"
RBAC_MANIFEST = "manifests/monitoring-rbac.yaml"

PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
ALERTMANAGER_CLUSTER_PORT = 9094
NODE_EXPORTER_PORT = 9100
BLACKBOX_PORT = 9115
ETCD_CLIENT_PORT = 2379
# A ready apiserver answers /readyz and /livez in milliseconds; a probe that needs more
# than this fails clients too.
PROBE_TIMEOUT = "5s"
# Prometheus' default; a shorter scrape interval shortens it (it may not exceed the interval).
DEFAULT_SCRAPE_TIMEOUT_S = 10

# The services hakube runs, as node exporter's systemd collector reports them (state of
# each unit): enough to see what runs where, without every unit of the host.
SYSTEMD_UNITS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
                 "kube-proxy", "containerd", "k3s", "k3s-agent", "haproxy", "nginx", "keepalived",
                 "corosync", "pacemaker", "hakube-vip-presence")
# The units that must run on every host that can hold the VIP, by VIP provider; kube-vip
# runs as a static pod, not a unit.
VIP_UNITS = {"keepalived": ("keepalived.service",), "pacemaker": ("corosync.service", "pacemaker.service")}

# Where to look when the VIP is nowhere or in two places, by VIP provider.
VIP_HINTS = {
    "keepalived": "Check `systemctl status keepalived` and `journalctl -u keepalived` on the "
                  "VIP hosts: a member whose track script fails (no live load balancer or "
                  "apiserver on its host) is in FAULT and gives the VIP up, and members hear "
                  "each other through VRRP adverts (IP protocol 112).",
    "pacemaker": "`crm status` on a VIP host shows where pacemaker runs the VIP resource, or "
                 "why it does not; `corosync-cfgtool -s` shows whether the members hear each other.",
    "kube-vip": "The kube-vip pods' logs (`crictl logs`) on the VIP hosts say which one leads "
                "and why the address was given up.",
}


_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNIT_S = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as `15s` or `1h30m`."""
    m = _DURATION.match(duration)
    if not duration or not m:
        raise ValueError(f"{duration!r} is not a Prometheus duration such as 15s, 1m or 1h30m")
    return sum(int(v) * unit for v, unit in zip(m.groups(), _UNIT_S) if v)


@dataclass(frozen=True)
class Target:
    host: str  # host name: the `host` label of every series scraped from it
    address: str


@dataclass(frozen=True)
class MonitoringConfig:
    cluster: str
    scrape_interval: str
    scrape_timeout: str
    retention: str
    webhook_url: str | None
    hosts: tuple[Target, ...]  # node exporter runs on each
    monitoring_hosts: tuple[Target, ...]  # Prometheus, Alertmanager, blackbox exporter
    distribution: str
    etcd_members: tuple[Target, ...]  # empty with an external datastore
    etcdctl_command: str  # for the operator, on a server (alert descriptions)
    etcd_heartbeat_ms: int
    etcd_election_ms: int
    apiservers: tuple[Target, ...]
    apiserver_port: int
    lb_provider: str
    lb_targets: tuple[Target, ...]  # load balancers exposing Prometheus metrics
    lb_metrics_port: int
    endpoint_host: str  # the VIP or the external load balancer's address
    endpoint_port: int
    vip: str | None  # set when a VIP provider moves the endpoint address between hosts
    vip_hosts: tuple[Target, ...]
    vip_provider: str
    vip_hint: str
    vip_units: tuple[str, ...]  # systemd units every VIP host must run (empty: kube-vip)
    quorum: int
    tolerated_failures: int
    backup_schedule: str | None = None  # spec.backup's schedule (None: no scheduled backups)
    backup_every_s: int | None = None

    @property
    def servers(self) -> int:
        return len(self.apiservers)

    @property
    def etcd_count(self) -> int:
        """etcd members hakube runs (on the servers or on hosts of their own)."""
        return len(self.etcd_members)

    @property
    def api_probe_url(self) -> str:
        return f"https://{self.endpoint_host}:{self.endpoint_port}/readyz"

    def livez_url(self, t: Target) -> str:
        return f"https://{t.address}:{self.apiserver_port}/livez?exclude=etcd"

    @property
    def systemd_unit_include(self) -> str:
        """node exporter's unit regexp; `[.]` rather than `\\.`, which /etc/default files mangle."""
        return f"({'|'.join(SYSTEMD_UNITS)})[.]service"

    @property
    def vip_hosts_regex(self) -> str:
        return "|".join(regex_escape(t.host) for t in self.vip_hosts)

    def alertmanager_peers(self, name: str) -> tuple[Target, ...]:
        """The other Alertmanagers this host's Alertmanager gossips with."""
        return tuple(t for t in self.monitoring_hosts if t.host != name)


def config_for(topo: Topology) -> MonitoringConfig:
    mon = topo.addons.monitoring
    cp = topo.control_plane

    def targets(names) -> tuple[Target, ...]:
        return tuple(Target(n, topo.address(n)) for n in names)

    interval_s = seconds(mon.scrape_interval)
    seconds(mon.retention)  # a bad duration fails here, not in Prometheus at start
    timeout = mon.scrape_interval if interval_s < DEFAULT_SCRAPE_TIMEOUT_S else f"{DEFAULT_SCRAPE_TIMEOUT_S}s"

    if topo.distribution == "k3s":  # where K3s keeps its embedded etcd's certificates
        ca, crt, key = (f"{paths.K3S_TLS}/etcd/{f}" for f in ("server-ca.crt", "server-client.crt",
                                                              "server-client.key"))
    else:
        ca, crt, key = paths.ETCD_CA_CRT, paths.ETCD_HEALTH_CRT, paths.ETCD_HEALTH_KEY
    etcdctl = (f"ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:{ETCD_CLIENT_PORT} "
               f"--cacert {ca} --cert {crt} --key {key}")

    # Only HAProxy has a Prometheus exporter, and the haproxy component decides on which
    # hosts it listens (not on agents-local proxies, which bind 127.0.0.1 only).
    lb_targets = ()
    if cp.load_balancer.provider == "haproxy":
        lb_targets = tuple(Target(n, topo.address(n)) for n in topo.lb_hosts
                           if haproxy.config_for(topo, topo.host(n)).metrics)

    return MonitoringConfig(
        cluster=topo.name,
        scrape_interval=mon.scrape_interval,
        scrape_timeout=timeout,
        retention=mon.retention,
        webhook_url=mon.webhook_url,
        hosts=targets(h.name for h in topo.hosts),
        monitoring_hosts=targets(h.name for h in topo.hosts if h.runs("prometheus")),
        distribution=topo.distribution,
        etcd_members=targets(topo.etcd_hosts),
        etcdctl_command=etcdctl,
        etcd_heartbeat_ms=topo.datastore.etcd.heartbeat_interval_ms,
        etcd_election_ms=topo.datastore.etcd.election_timeout_ms,
        apiservers=targets(topo.servers),
        apiserver_port=topo.apiserver_port,
        lb_provider=cp.load_balancer.provider,
        lb_targets=lb_targets,
        lb_metrics_port=haproxy.METRICS_PORT,
        endpoint_host=topo.endpoint_host,
        endpoint_port=topo.endpoint_port,
        vip=topo.endpoint_host if topo.vip_hosts else None,
        vip_hosts=targets(topo.vip_hosts),
        vip_provider=cp.vip.provider,
        vip_hint=VIP_HINTS.get(cp.vip.provider, ""),
        vip_units=VIP_UNITS.get(cp.vip.provider, ()) if topo.vip_hosts else (),
        quorum=topo.quorum,
        tolerated_failures=topo.etcd_tolerated_failures,  # the etcd rules speak of etcd members
        backup_schedule=topo.backup.schedule if topo.backup else None,
        backup_every_s=etcd_backup.seconds(topo.backup.schedule) if topo.backup else None,
    )


_FILES = dict(prometheus_config=PROMETHEUS_CONFIG, rules=RULES, alertmanager_config=ALERTMANAGER_CONFIG,
              blackbox_config=BLACKBOX_CONFIG, vip_script=VIP_SCRIPT, vip_service=VIP_SERVICE,
              vip_textfile=VIP_TEXTFILE, backup_textfile=etcd_backup.TEXTFILE, backup_metric=etcd_backup.METRIC,
              cert_metric=EXPIRY_METRIC)
_PORTS = dict(prometheus=PROMETHEUS_PORT, alertmanager=ALERTMANAGER_PORT,
              alertmanager_cluster=ALERTMANAGER_CLUSTER_PORT, node=NODE_EXPORTER_PORT,
              blackbox=BLACKBOX_PORT, etcd=ETCD_CLIENT_PORT)


def _data(cfg: MonitoringConfig, host: Target | None = None) -> dict:
    return dict(m=cfg, host=host, paths=paths, files=_FILES, ports=_PORTS, user=MONITORING_USER,
                probe_timeout=PROBE_TIMEOUT)


def render(cfg: MonitoringConfig, host: HostPlan) -> list[File]:
    """Every monitoring file `host` receives (none when monitoring is disabled)."""
    me = Target(host.name, host.address)
    data = _data(cfg, me)

    def t(name: str) -> str:
        return template(__file__, name, **data)

    out: list[File] = []
    if host.runs("node-exporter"):
        out.append(File(NODE_EXPORTER_DEFAULTS, t("prometheus-node-exporter.default.j2")))
        if cfg.vip and any(v.host == host.name for v in cfg.vip_hosts):
            out += [
                File(VIP_SCRIPT, t("vip-presence.sh.j2"), 0o755),
                File(VIP_SERVICE, t("hakube-vip-presence.service.j2")),
                File(VIP_TIMER, t("hakube-vip-presence.timer.j2")),
            ]
    if host.runs("prometheus"):
        # Readable by Prometheus (user prometheus); nothing secret: certificates are
        # referenced by path.
        out += [
            File(PROMETHEUS_CONFIG, t("prometheus.yml.j2")),
            File(PROMETHEUS_DEFAULTS, t("prometheus.default.j2")),
            File(RULES, rules(cfg)),
        ]
    if host.runs("alertmanager"):
        # A webhook URL often carries a token (Slack, Teams, ...): readable by the
        # Alertmanager's user only, never world-readable.
        out += [
            # its receivers' URLs often carry a token
            File(ALERTMANAGER_CONFIG, t("alertmanager.yml.j2"), 0o640, "root", "prometheus", sensitive=True),
            File(ALERTMANAGER_DEFAULTS, t("prometheus-alertmanager.default.j2")),
        ]
    if host.runs("blackbox-exporter"):
        out += [
            File(BLACKBOX_CONFIG, t("blackbox.yml.j2")),
            File(BLACKBOX_DEFAULTS, t("prometheus-blackbox-exporter.default.j2")),
        ]
    return out


def rules(cfg: MonitoringConfig) -> str:
    """The alert rules file: the same on every monitoring host."""
    return template(__file__, "hakube-ha.rules.yml.j2", **_data(cfg))


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    if not ctx.topo.addons.monitoring.enabled:
        return []
    return render(config_for(ctx.topo), host)


def cluster_files(ctx: RenderContext) -> list[File]:
    if not ctx.topo.addons.monitoring.enabled:
        return []
    return [File(RBAC_MANIFEST, template(__file__, "monitoring-rbac.yaml.j2", user=MONITORING_USER))]


# ---- deploy facts: what the engine needs to run this component (engine/services.py) ----

# Each Debian-packaged service and the rendered files it reads (this component renders them
# all; a change restarts only the service that reads the file).
UNITS = (
    Unit("prometheus-node-exporter", borrowed=("/etc/default/prometheus-node-exporter",), needs="node-exporter"),
    Unit("prometheus", (), (paths.MONITORING_CA_CRT, paths.MONITORING_ETCD_CA_CRT,
                            paths.MONITORING_CLIENT_CRT, paths.MONITORING_CLIENT_KEY,
                            paths.MONITORING_ETCD_CLIENT_CRT, paths.MONITORING_ETCD_CLIENT_KEY),
         borrowed=("/etc/default/prometheus", "/etc/prometheus/prometheus.yml",
                   "/etc/prometheus/rules/hakube-ha.rules.yml"), needs="prometheus",
         leaves=("/var/lib/prometheus/metrics2",)),
    Unit("prometheus-alertmanager", borrowed=("/etc/default/prometheus-alertmanager",
                                              "/etc/prometheus/alertmanager.yml"), needs="alertmanager",
         leaves=("/var/lib/prometheus/alertmanager",)),
    Unit("prometheus-blackbox-exporter", (), (paths.MONITORING_CA_CRT,),
         borrowed=("/etc/default/prometheus-blackbox-exporter", "/etc/prometheus/blackbox.yml"),
         needs="blackbox-exporter"),
    # the VIP-presence exporter: a timer; its script is read afresh at every run
    Unit("hakube-vip-presence.timer",
         borrowed=("/etc/systemd/system/hakube-vip-presence.service",
                   "/etc/systemd/system/hakube-vip-presence.timer", f"{paths.LIBEXEC}/vip-presence"),
         ignore=(f"{paths.LIBEXEC}/vip-presence",)),
)
PACKAGES = {"node-exporter": ["prometheus-node-exporter"], "prometheus": ["prometheus"],
            "alertmanager": ["prometheus-alertmanager"], "blackbox-exporter": ["prometheus-blackbox-exporter"]}
