"""etcd, TLS for peers and clients (distribution kubernetes): on every server, or on the
hosts with the role etcd (`topo.etcd_hosts`).

Members join one at a time (ARCHITECTURE.md, step 4), so each member's configuration
names the members that exist when it joins: the first host starts a new cluster of
one, and host k joins an existing cluster of the first k hosts. etcd reads the
`initial-*` settings only when its data directory is empty, so this stays true after the
cluster has grown, and a re-run renders the same bytes (no restart).
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import paths
from ..base import File, RenderContext, Unit, UnsafeValue, template
from ...topology import HostPlan, Topology

CONFIG = "/etc/etcd/etcd.conf.yml"
UNIT = "/etc/systemd/system/etcd.service"
DATA_ROOT = "/var/lib/etcd"


@dataclass(frozen=True)
class EtcdMember:
    name: str
    address: str
    data_dir: str
    initial_cluster: tuple[tuple[str, str], ...]  # (name, peer URL) of members at join time
    initial_state: str  # "new" for the bootstrap server, "existing" for a joining one
    cluster_token: str
    heartbeat_ms: int
    election_ms: int

    @property
    def peer_url(self) -> str:
        return peer_url(self.address)

    @property
    def client_url(self) -> str:
        return f"https://{self.address}:2379"

    @property
    def initial_cluster_value(self) -> str:
        """etcd's `initial-cluster`: name=peer-URL pairs, comma-separated. A `,` or `=` in a
        name or URL would make up other members, and is refused."""
        for part in (p for pair in self.initial_cluster for p in pair):
            if "," in part or "=" in part:
                raise UnsafeValue(part, "',' and '=' separate the members of initial-cluster", "etcd.conf.yml")
        return ",".join(f"{name}={url}" for name, url in self.initial_cluster)


def peer_url(address: str) -> str:
    return f"https://{address}:2380"


def member_for(topo: Topology, host: HostPlan,
               initial_cluster: tuple[tuple[str, str], ...] | None = None,
               initial_state: str | None = None) -> EtcdMember:
    """The member's settings; by default as in a fresh cluster joined in order.

    The deploy passes `initial_cluster`/`initial_state` from the live membership when a
    member joins a cluster that already exists (for example after its data was lost).
    """
    order = topo.etcd_hosts
    idx = order.index(host.name)
    if initial_cluster is None:
        initial_cluster = tuple((n, peer_url(topo.address(n))) for n in order[: idx + 1])
    if initial_state is None:
        initial_state = "new" if idx == 0 else "existing"
    tuning = topo.datastore.etcd
    return EtcdMember(
        name=host.name,
        address=host.address,
        data_dir=f"{DATA_ROOT}/{topo.name}",
        initial_cluster=initial_cluster,
        initial_state=initial_state,
        cluster_token=f"hakube-{topo.name}",
        heartbeat_ms=tuning.heartbeat_interval_ms,
        election_ms=tuning.election_timeout_ms,
    )


def render(m: EtcdMember) -> list[File]:
    data = dict(m=m, paths=paths)
    return [
        File(CONFIG, template(__file__, "etcd.conf.yml.j2", **data), 0o644, "root", "etcd"),
        File(UNIT, template(__file__, "etcd.service.j2", **data)),
    ]


def host_files(ctx: RenderContext, host: HostPlan) -> list[File]:
    if not host.runs("etcd"):
        return []
    return render(member_for(ctx.topo, host))


# ---- deploy facts: what the engine needs to run this component (engine/services.py) ----

UNITS = (Unit("etcd", ("etcd",), (paths.ETCD_CA_CRT, paths.ETCD_SERVER_CRT, paths.ETCD_SERVER_KEY,
                                  paths.ETCD_PEER_CRT, paths.ETCD_PEER_KEY), leaves=(DATA_ROOT,)),)
PACKAGES = {"etcd": ["etcd-server", "etcd-client"]}
