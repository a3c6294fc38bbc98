"""HAProxy in front of every apiserver (placement servers, dedicated or agents-local).

TCP passthrough: TLS is end to end between clients and apiservers, so client certificates
keep working and HAProxy never sees a key it does not need. Health checks are HTTPS
requests to /readyz made with a client certificate, because anonymous auth is off
(kubernetes here, and K3s by default): see haproxy.cfg.j2 for the reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import paths
from ..base import File, RenderContext, Unit, template
from ...topology import HostPlan, Topology

CONFIG = "/etc/haproxy/haproxy.cfg"
METRICS_PORT = 8405  # HAProxy's built-in Prometheus exporter (monitoring scrapes it)
HEALTH_PORT = 8404  # on 127.0.0.1: "is this HAProxy alive?", asked by keepalived's track script


@dataclass(frozen=True)
class Backend:
    name: str
    address: str
    port: int


@dataclass(frozen=True)
class HAProxyConfig:
    host: str
    bind_address: str  # "*" or 127.0.0.1 (agents-local)
    port: int
    backends: tuple[Backend, ...]
    check_interval_ms: int
    check_fall: int
    check_rise: int
    connect_timeout_ms: int
    metrics: bool


def config_for(topo: Topology, host: HostPlan) -> HAProxyConfig:
    lb = topo.control_plane.load_balancer
    local_only = lb.placement == "agents-local"
    return HAProxyConfig(
        host=host.name,
        bind_address="127.0.0.1" if local_only else "*",
        port=topo.agent_endpoint_port if local_only else topo.endpoint_port,
        backends=tuple(Backend(s, topo.address(s), topo.apiserver_port) for s in topo.servers),
        check_interval_ms=lb.check_interval_ms,
        check_fall=lb.check_fall,
        check_rise=lb.check_rise,
        connect_timeout_ms=lb.connect_timeout_ms,
        metrics=topo.addons.monitoring.enabled and not local_only,
    )


def render(cfg: HAProxyConfig) -> list[File]:
    return [File(CONFIG, template(__file__, "haproxy.cfg.j2", c=cfg, paths=paths, metrics_port=METRICS_PORT,
                                      health_port=HEALTH_PORT))]


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    if not host.runs("haproxy"):
        return []
    return render(config_for(ctx.topo, host))


# ---- deploy facts: what the engine needs to run this component (engine/services.py) ----

# what the running HAProxy leaves: its admin socket, master socket, pid file, and the log
# socket in its chroot
# reloads: Debian's unit checks the new configuration, then the master process starts new
# workers on it while the old ones finish their connections (no connection is refused)
UNITS = (Unit("haproxy", ("haproxy",), (paths.CA_CRT, paths.LB_CHECK_PEM), reloads=True,
              leaves=("/run/haproxy", "/run/haproxy-master.sock", "/run/haproxy.pid", "/var/lib/haproxy/dev")),)
PACKAGES = {"haproxy": ["haproxy"]}
