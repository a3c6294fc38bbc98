"""kube-apiserver on every server (distribution kubernetes), as a systemd unit.

Each apiserver advertises its own address and listens on `topo.apiserver_port` (6444 when
the load balancer takes 6443 on the same host). It talks to etcd with a client certificate,
listing its own server's member first. Anonymous access is off, so every client, the load
balancer's health checks included, authenticates with a certificate.

Version-aware flags (minor version of spec.distribution.version):
- `--insecure-port=0` below 1.24, where the flag exists. 1.20 to 1.23 accept it as a
  no-op (1.20 removed insecure serving; the 1.20 binary says so when it starts), older
  binaries would serve unauthenticated on 8080 without it; 1.24 removed the flag.
- `--goaway-chance` only with several apiservers (see the unit's comments).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ... import paths
from ...topology import HostPlan, Topology
from ..base import File, RenderContext, Unit, UnsafeValue, systemd_quote, template

UNIT = "/etc/systemd/system/kube-apiserver.service"
ENCRYPTION_CONFIG = f"{paths.K8S}/encryption-config.yaml"
ENCRYPTION_KEY_NAME = "key1"
AUDIT_POLICY = f"{paths.K8S}/audit-policy.yaml"
AUDIT_LOG = "/var/log/kubernetes/audit.log"
BINARY = f"{paths.BIN}/kube-apiserver"
ETCD_CLIENT_PORT = 2379


@dataclass(frozen=True)
class APIServer:
    host: str
    advertise_address: str
    secure_port: int
    etcd_servers: tuple[str, ...]  # this server's own member (stacked), or the external endpoints
    local_etcd: bool  # an etcd member runs on this host (order after it, never require it)
    service_cidr: str
    node_port_range: str
    service_account_issuer: str
    insecure_port_flag: bool  # < 1.24
    goaway_chance: str | None  # only with several apiservers behind a load balancer
    feature_gates: str  # "A=true,B=false", sorted; "" for none
    extra_args: tuple[str, ...]  # topo.kubernetes_options.apiserverExtraArgs, quoted for systemd
    # audit log rotation: a week of history, at most 5 x 100 MB on the server's disk
    audit_max_age_days: int = 7
    audit_max_backups: int = 5
    audit_max_size_mb: int = 100


def flag_args(args: dict[str, str], where: str = "kube-apiserver.service") -> tuple[str, ...]:
    """`{name: value}` from the spec as `--name=value` words, sorted: deterministic.
    Each word is quoted for ExecStart= (`systemd_quote`, shared by every unit template)."""
    return tuple(systemd_quote(f"--{k.lstrip('-')}={v}", where) for k, v in sorted(args.items()))


def feature_gates(gates: dict[str, bool]) -> str:
    """`--feature-gates=` value: "A=true,B=false", sorted. A gate is a CamelCase name: one with
    `,` or `=` in it would set other gates than the one it names, and is refused."""
    for name in gates:
        if not re.fullmatch(r"[A-Za-z0-9]+", name):
            raise UnsafeValue(name, "a feature gate name has only letters and digits", "--feature-gates")
    return ",".join(f"{k}={'true' if v else 'false'}" for k, v in sorted(gates.items()))


def etcd_servers(topo: Topology, host: HostPlan) -> tuple[str, ...]:
    """The etcd endpoints: only this server's own member (stacked etcd), as kubeadm's
    stacked layout and K3s do; every endpoint when etcd runs elsewhere.

    Measured (bench/failover.py, crash-vip-holder on the lab): with every member listed,
    etcd's v3 client (3.4+) balances requests over all of them, so after a server crashes
    (no RST: its endpoint blackholes) every surviving apiserver keeps sending part of its
    requests to the dead member and failing /readyz; one trial in ten then lost writes for
    9 s AFTER the VIP had already moved. With only the local member, an apiserver depends on
    its own server alone: if that member fails, this apiserver fails /readyz and the load
    balancers stop using it, while the others carry on.
    """
    if not host.runs("etcd"):  # etcd on hosts of its own, or an existing etcd: every endpoint
        return topo.etcd_client_urls
    return (f"https://{host.address}:{ETCD_CLIENT_PORT}",)


def config_for(topo: Topology, host: HostPlan) -> APIServer:
    k8s = topo.kubernetes_options
    return APIServer(
        host=host.name,
        advertise_address=host.address,
        secure_port=topo.apiserver_port,
        etcd_servers=etcd_servers(topo, host),
        local_etcd=host.runs("etcd"),
        service_cidr=str(topo.network.service_cidr),
        node_port_range=topo.network.node_port_range,
        service_account_issuer=f"https://kubernetes.default.svc.{topo.network.cluster_domain}",
        insecure_port_flag=topo.minor < (1, 24),
        goaway_chance="0.001" if len(topo.servers) > 1 else None,
        feature_gates=feature_gates(k8s.feature_gates) if k8s else "",
        extra_args=flag_args(k8s.apiserver_extra_args) if k8s else (),
    )


def render(c: APIServer, encryption_key: str) -> list[File]:
    if not encryption_key:
        raise UnsafeValue("the Secrets encryption key is missing from the cluster's state directory "
                          "(secrets.yaml); hakube adds it on its next run")
    return [
        File(UNIT, template(__file__, "kube-apiserver.service.j2", c=c, paths=paths, binary=BINARY,
                            encryption_config=ENCRYPTION_CONFIG, audit_policy=AUDIT_POLICY,
                            audit_log=AUDIT_LOG)),
        File(ENCRYPTION_CONFIG, template(__file__, "encryption-config.yaml.j2", key=encryption_key,
                                         key_name=ENCRYPTION_KEY_NAME), 0o600),
        File(AUDIT_POLICY, template(__file__, "audit-policy.yaml.j2")),
    ]


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    if not host.runs("kube-apiserver"):
        return []
    return render(config_for(ctx.topo, host), ctx.secrets.encryption_key)


# ---- deploy facts: what the engine needs to run this component (engine/services.py) ----

UNITS = (Unit(
    "kube-apiserver", ("kube_apiserver",),
    (paths.CA_CRT, paths.ETCD_CA_CRT, paths.APISERVER_ETCD_CLIENT_CRT, paths.APISERVER_ETCD_CLIENT_KEY,
     paths.APISERVER_CRT, paths.APISERVER_KEY, paths.APISERVER_KUBELET_CLIENT_CRT,
     paths.APISERVER_KUBELET_CLIENT_KEY, paths.FRONT_PROXY_CA_CRT, paths.FRONT_PROXY_CLIENT_CRT,
     paths.FRONT_PROXY_CLIENT_KEY, paths.SA_KEY, paths.SA_PUB),
    f"{paths.BIN}/kube-apiserver",
    # kubectl on the server talks to its own apiserver; writing it needs no restart
    ignore=(paths.KUBECONFIG_ADMIN,), borrowed=(paths.KUBECONFIG_ADMIN,),
    leaves=(AUDIT_LOG.rsplit("/", 1)[0],)),)
PACKAGES = {"kube-apiserver": ["curl", "ca-certificates"]}
BINARIES = {"kube-apiserver": ["kube-apiserver", "kubectl"]}
