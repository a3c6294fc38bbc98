"""nginx as the API front door (`loadBalancer.provider: nginx`): a TCP stream proxy.

TCP passthrough to every apiserver, as with HAProxy: TLS stays end to end, so client
certificates keep working. The rendered nginx.conf is complete and holds nothing but the
stream proxy: no `http {}` block, so Debian's default site on port 80 is never loaded.

What passive health checks mean for failover (open-source nginx has no active checks;
`health_check` is NGINX Plus only):
- nginx learns that an apiserver is down only when a real client connection to it fails.
  A stopped apiserver refuses at once (RST) and the connection moves to the next server
  without the client noticing. A crashed or unplugged machine sends nothing, so the first
  connection after the crash waits `proxy_connect_timeout` (spec connectTimeoutMs) before
  it moves on; the server is then skipped for `fail_timeout`, after which one real
  connection probes it again (and pays the timeout again if it is still dead).
- nginx cannot see an apiserver that accepts TCP but is not ready (lost etcd, still
  starting): it keeps sending clients there. HAProxy's authenticated /readyz check does
  see it; choose HAProxy when that matters. The keepalived track script still moves the
  VIP away from a host whose front door cannot reach a live apiserver.
- Connections already open to a server that crashes are not cut by nginx: clients notice
  through their own timeouts (client-go's HTTP/2 health pings: 30 s idle + 15 s) and
  reconnect.
spec.controlPlane.loadBalancer.checkIntervalMs/checkFall/checkRise therefore do not apply
to nginx; connectTimeoutMs does.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base import File, RenderContext, Unit, template
from ...topology import HostPlan, Topology

CONFIG = "/etc/nginx/nginx.conf"
# Debian's nginx.service has no Restart=: without this, a crashed nginx stays down.
UNIT_DROPIN = "/etc/systemd/system/nginx.service.d/10-hakube.conf"
# Where Debian's libnginx-mod-stream installs the module (its own
# /etc/nginx/modules-enabled/50-mod-stream.conf loads the same file by a relative path).
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"

# Passive checks: one failed connect marks a server down for FAIL_TIMEOUT_S seconds.
# A failure here is a refused or timed-out connect, already retried on the next server,
# so it costs one client up to connectTimeoutMs; waiting for more failures before skipping
# a dead server only makes more clients pay it. A false positive costs little: the other
# apiservers take the load for a few seconds. A recovered server gets traffic again
# within FAIL_TIMEOUT_S; a dead one delays one connection per FAIL_TIMEOUT_S.
MAX_FAILS = 1
FAIL_TIMEOUT_S = 10
# Idle time after which nginx closes a proxied connection. Watches without events stay
# open up to the apiserver's --min-request-timeout (30 min, randomised up to 2x), and
# `kubectl exec`/`logs -f` can sit idle for long: one hour stays above both.
PROXY_TIMEOUT = "1h"


@dataclass(frozen=True)
class Upstream:
    name: str
    address: str
    port: int


@dataclass(frozen=True)
class NginxConfig:
    host: str
    listen_address: str | None  # None: every address (the VIP included); 127.0.0.1 for agents-local
    port: int
    upstreams: tuple[Upstream, ...]
    connect_timeout_ms: int
    max_fails: int
    fail_timeout_s: int
    proxy_timeout: str
    restart_on_failure: bool  # False when pacemaker starts and stops nginx

    @property
    def listen(self) -> str:
        return f"{self.listen_address}:{self.port}" if self.listen_address else str(self.port)


def config_for(topo: Topology, host: HostPlan) -> NginxConfig:
    lb = topo.control_plane.load_balancer
    local_only = lb.placement == "agents-local"
    return NginxConfig(
        host=host.name,
        listen_address="127.0.0.1" if local_only else None,
        # agents reach the API at 127.0.0.1:<agent endpoint port> (agents-local)
        port=topo.agent_endpoint_port if local_only else topo.endpoint_port,
        upstreams=tuple(Upstream(s, topo.address(s), topo.apiserver_port) for s in topo.servers),
        connect_timeout_ms=lb.connect_timeout_ms,
        max_fails=MAX_FAILS,
        fail_timeout_s=FAIL_TIMEOUT_S,
        proxy_timeout=PROXY_TIMEOUT,
        restart_on_failure=not host.runs("pacemaker"),
    )


def render(cfg: NginxConfig) -> list[File]:
    files = [File(CONFIG, template(__file__, "nginx.conf.j2", c=cfg, stream_module=STREAM_MODULE))]
    if cfg.restart_on_failure:
        files.append(File(UNIT_DROPIN, template(__file__, "nginx-restart.conf.j2", c=cfg)))
    return files


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    if not host.runs("nginx"):
        return []
    return render(config_for(ctx.topo, host))


# ---- deploy facts: what the engine needs to run this component (engine/services.py) ----

UNITS = (Unit("nginx", ("nginx",)),)
PACKAGES = {"nginx": ["nginx", "libnginx-mod-stream"]}
