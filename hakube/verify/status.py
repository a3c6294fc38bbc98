"""`hakube status`: one screen of HA health, gathered in parallel in about a second.

Every fact is read live: etcd through its JSON gateway (status, members, leader, term,
index, DB size), each apiserver's /readyz directly, nodes and CoreDNS through the VIP,
the VIP holder, keepalived's view and each load balancer's view of its backends over SSH,
and firing alerts from Prometheus when monitoring is on. The verdict sums it up; any
degradation gives a non-zero exit code.

Example:
    >>> s = asyncio.run(gather(load("cluster.yaml")))
    >>> s.verdict
    'healthy: etcd 3/3, tolerates 1 more failure'
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from cryptography import x509

from .. import state
from ..components import etcd_backup
from ..facts import etcd as etcd_facts
from ..facts import haproxy as haproxy_facts
from ..facts import kube
from ..facts import vip as vip_facts
from ..spec import Loaded
from ..topology import Topology, derive
from ..transport import Connector, SSHConnector
from ..transport.targets import ssh_targets
from .clients import api_client, etcd_client, external_etcd_client


@dataclass
class EtcdMemberStatus:
    name: str
    endpoint: str
    healthy: bool
    leader: bool = False
    member_id: str = ""
    raft_term: int | None = None
    raft_index: int | None = None
    db_size: int | None = None
    error: str = ""


@dataclass
class VipMember:
    host: str
    holds_vip: bool | None  # None: unknown (unreachable)
    state: str  # MASTER, BACKUP, FAULT, STOPPED, UNREACHABLE (pacemaker: Started/Stopped)
    detail: str = ""


@dataclass
class Backend:
    lb: str
    server: str
    state: str  # UP, DOWN, MAINT, ... as the load balancer reports it
    detail: str = ""


@dataclass
class Apiserver:
    host: str
    ready: bool
    detail: str = ""


@dataclass
class Node:
    name: str
    ready: bool
    roles: str = ""


@dataclass
class CoreDNSPod:
    name: str
    node: str
    phase: str
    ready: bool
    reason: str = ""
    image: str = ""


@dataclass
class BackupSeen:
    """The last scheduled etcd snapshot one etcd host took (none: it never led at a tick)."""
    host: str
    name: str = ""
    age_s: int | None = None    # seconds since it was taken; None: this host has none
    bytes: int | None = None
    error: str = ""             # the host did not answer
    installed: bool = True      # its timer is there (False: cluster.yaml asks for it, `up` has not run)


@dataclass
class Status:
    cluster: str
    endpoint: str
    endpoint_ready: bool
    etcd: list[EtcdMemberStatus] = field(default_factory=list)
    vip: str = ""
    vip_members: list[VipMember] = field(default_factory=list)
    backends: list[Backend] = field(default_factory=list)
    apiservers: list[Apiserver] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    coredns: list[CoreDNSPod] = field(default_factory=list)
    coredns_desired: int | None = None
    alerts: list[dict] = field(default_factory=list)
    # the certificate of the state directory that expires first, and in how many days
    cert_first_expiry: str = ""
    cert_expiry_days: int | None = None
    # spec.backup: its period in seconds (None: no scheduled backups) and each etcd host's last
    backup_every_s: int | None = None
    backups: list[BackupSeen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def etcd_healthy(self) -> int:
        return sum(m.healthy for m in self.etcd)

    @property
    def tolerates(self) -> int:
        """How many more server failures etcd survives from here."""
        n = len(self.etcd)
        return max(0, self.etcd_healthy - (n // 2 + 1)) if n else 0

    @property
    def vip_holders(self) -> list[str]:
        return [m.host for m in self.vip_members if m.holds_vip]

    @property
    def verdict(self) -> str:
        etcd = f"etcd {self.etcd_healthy}/{len(self.etcd)} healthy, tolerates {self.tolerates} more failure" + \
            ("" if self.tolerates == 1 else "s")
        if self.healthy:
            return f"healthy: {etcd}"
        return f"degraded: {'; '.join(self.problems)}" + ("" if any(p.startswith("etcd") for p in self.problems)
                                                         else f"; {etcd}")

    @classmethod
    def from_facts(cls, d: dict) -> Status:
        """A Status from gathered facts as `as_dict` writes them (no verdict: `judge` adds it)."""
        kinds = {"etcd": EtcdMemberStatus, "vip_members": VipMember, "backends": Backend,
                 "apiservers": Apiserver, "nodes": Node, "coredns": CoreDNSPod, "backups": BackupSeen}
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__
                  and k not in ("problems", "notes")}
        for key, kind in kinds.items():
            fields[key] = [kind(**x) for x in fields.get(key, [])]
        return cls(**fields)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(healthy=self.healthy, verdict=self.verdict, vipHolders=self.vip_holders,
                 etcdHealthy=self.etcd_healthy, toleratedFailures=self.tolerates)
        return d


# ---- facts ----------------------------------------------------------------------------------


def etcd_endpoints(topo: Topology) -> list[tuple[str, str]]:
    """(name, client URL) of every etcd member to read: hakube's members (on the servers or
    on etcd hosts), or the endpoints of an existing etcd, named by their host part."""
    if topo.datastore.type == "external":
        return [(urlsplit(e).hostname or e, e) for e in topo.datastore.endpoints]
    return [(s, f"https://{topo.address(s)}:2379") for s in topo.etcd_hosts]


async def etcd_members(endpoints: list[tuple[str, str]], client: httpx.AsyncClient) -> list[EtcdMemberStatus]:
    """Each member's status and health, read through etcd's JSON gateway, in parallel."""
    async def one(s: str, ep: str) -> EtcdMemberStatus:
        m = EtcdMemberStatus(s, ep, False)
        try:
            r = await client.post(f"{ep}/v3/maintenance/status", json={})
            r.raise_for_status()
            st = etcd_facts.parse_status(r.json())
            m.member_id, m.leader = st.member_id, st.is_leader
            m.raft_term, m.raft_index, m.db_size = st.raft_term, st.raft_index, st.db_size
            h = await client.get(f"{ep}/health")
            if h.status_code == 200:
                m.healthy, m.error = etcd_facts.parse_health(h.json())
            else:
                m.healthy, m.error = False, f"HTTP {h.status_code}"
            if st.leader_id is None:
                m.healthy, m.error = False, "no leader"
        except (httpx.HTTPError, ValueError, KeyError) as e:
            m.error = _short(e)
        return m

    return list(await asyncio.gather(*(one(s, ep) for s, ep in endpoints)))


async def _apiservers(topo: Topology, client: httpx.AsyncClient) -> list[Apiserver]:
    async def one(s: str) -> Apiserver:
        try:
            r = await client.get(f"https://{topo.address(s)}:{topo.apiserver_port}/readyz")
            return Apiserver(s, r.status_code == 200, "" if r.status_code == 200 else f"HTTP {r.status_code}")
        except httpx.HTTPError as e:
            return Apiserver(s, False, _short(e))

    return list(await asyncio.gather(*(one(s) for s in topo.servers)))


async def _through_endpoint(topo: Topology, client: httpx.AsyncClient, st: Status) -> None:
    base = topo.api_url
    try:
        # "answers" and "ready" are different facts: during an etcd election the API
        # answers through the VIP while /readyz says not ready.
        r = await client.get(f"{base}/version")
        st.endpoint_ready = r.status_code == 200
        if not st.endpoint_ready:
            return
        ready = await client.get(f"{base}/readyz")
        if ready.status_code != 200:
            st.problems.append(f"the API answers through {base} but is not ready (HTTP {ready.status_code})")
        nodes, deploy, pods = await asyncio.gather(
            client.get(f"{base}/api/v1/nodes"),
            client.get(f"{base}/apis/apps/v1/namespaces/kube-system/deployments/coredns"),
            client.get(f"{base}/api/v1/namespaces/kube-system/pods", params={"labelSelector": "k8s-app=kube-dns"}))
    except httpx.HTTPError:
        st.endpoint_ready = False
        return
    if nodes.status_code == 200:
        st.nodes += [Node(n.name, n.ready, n.roles) for n in kube.parse_nodes(nodes.json()).values()]
    if deploy.status_code == 200:
        st.coredns_desired = deploy.json()["spec"].get("replicas")
    if pods.status_code == 200:
        for p in pods.json()["items"]:
            statuses = p["status"].get("containerStatuses", [])
            waiting = [c["state"]["waiting"].get("reason", "") for c in statuses if "waiting" in c.get("state", {})]
            st.coredns.append(CoreDNSPod(p["metadata"]["name"], p["spec"].get("nodeName", ""),
                                         p["status"].get("phase", ""),
                                         bool(statuses) and all(c.get("ready") for c in statuses),
                                         ", ".join(w for w in waiting if w),
                                         ", ".join(sorted({c.get("image", "") for c in p["spec"]["containers"]}))))


async def _ssh_views(topo: Topology, conns: dict[str, Connector], provider: str, lb: str) -> tuple[list[VipMember], list[Backend]]:
    vip = topo.endpoint_host

    async def vip_member(h: str) -> VipMember:
        c = conns.get(h)
        if c is None:
            return VipMember(h, None, "UNREACHABLE")
        r = await c.run(vip_facts.view_command(vip, provider), check=False, timeout=5)
        if r.exit_status == 255:
            return VipMember(h, None, "UNREACHABLE", r.stderr.strip()[:100])
        v = vip_facts.parse_view(r.stdout, provider)
        return VipMember(h, v.holds, v.state, v.detail)

    async def lb_view(h: str) -> list[Backend]:
        c = conns.get(h)
        if c is None:
            return [Backend(h, "-", "UNREACHABLE")]
        if lb != "haproxy":
            return [Backend(h, "*", "PASSIVE", "nginx open source has no active checks")]
        r = await c.run(haproxy_facts.SHOW_STAT, check=False, timeout=5)
        if not r.ok:
            return [Backend(h, "-", "UNREACHABLE" if r.exit_status == 255 else "NO-STATS", r.stderr.strip()[:100])]
        return [Backend(h, b.server, b.status, b.check) for b in haproxy_facts.parse_show_stat(r.stdout)]

    members, backends = await asyncio.gather(asyncio.gather(*(vip_member(h) for h in topo.vip_hosts)),
                                             asyncio.gather(*(lb_view(h) for h in topo.lb_hosts)))
    return list(members), standby([b for bs in backends for b in bs], members, provider)


def standby(backends: list[Backend], members: Sequence[VipMember], provider: str) -> list[Backend]:
    """pacemaker runs the load balancer in one group with the VIP, on its holder only:
    elsewhere a silent HAProxy is the design, not a fault (STANDBY)."""
    if provider != "pacemaker":
        return backends
    holders = {m.host for m in members if m.holds_vip}
    return [Backend(b.lb, "*", "STANDBY", "pacemaker runs it on the VIP holder only")
            if b.state == "NO-STATS" and b.lb not in holders else b for b in backends]


async def _backups(hosts: list[str], conns: dict[str, Connector]) -> list[BackupSeen]:
    """Each etcd host's last scheduled snapshot (its `last-success`: epoch, bytes, name)."""
    async def one(h: str) -> BackupSeen:
        c = conns.get(h)
        if c is None:
            return BackupSeen(h, error="unreachable")
        r = await c.run(f"cat {etcd_backup.LAST_SUCCESS} 2>/dev/null; echo; date +%s; "
                        f"test -e {etcd_backup.TIMER} && echo installed", check=False, timeout=5)
        lines = [ln.split() for ln in r.stdout.splitlines() if ln.strip()]
        installed = lines[-1:] == [["installed"]]
        lines = lines[:-1] if installed else lines
        if r.exit_status == 255 or not lines or not lines[-1][0].isdigit():
            return BackupSeen(h, error="unreachable")
        now = int(lines[-1][0])
        if len(lines) < 2 or len(lines[0]) != 3 or not lines[0][0].isdigit():
            return BackupSeen(h, installed=installed)
        taken, size, name = lines[0]
        return BackupSeen(h, name, max(0, now - int(taken)), int(size) if size.isdigit() else None,
                          installed=installed)

    return list(await asyncio.gather(*(one(h) for h in hosts)))


def _age(s: int) -> str:
    if s < 120:
        return f"{s} s"
    return f"{s // 3600} h" if s >= 7200 or s % 3600 == 0 else f"{s // 60} min"


async def _alerts(topo: Topology, st: Status) -> None:
    mon = [h.name for h in topo.hosts if "prometheus" in h.components]
    async with httpx.AsyncClient(timeout=2) as c:
        for h in mon:
            try:
                r = await c.get(f"http://{topo.address(h)}:9090/api/v1/alerts")
                alerts = r.json()["data"]["alerts"]
                st.alerts = [a for a in alerts if a.get("state") == "firing"]
                # pending: the condition holds and has not lasted its `for:` yet (an early warning)
                for name in sorted({a["labels"].get("alertname", "?") for a in alerts if a.get("state") == "pending"}):
                    st.notes.append(f"alert {name} pending: it fires if its condition lasts")
                return
            except (httpx.HTTPError, ValueError, KeyError):
                continue
    st.notes.append("monitoring is on but no Prometheus answered")


async def _connect(loaded: Loaded, hosts: list[str]) -> dict[str, Connector]:
    targets = {t.name: t for t in ssh_targets(loaded)}

    async def one(h: str):
        try:
            return await asyncio.wait_for(SSHConnector.open(targets[h], None), 3)
        except Exception:
            return None

    conns = await asyncio.gather(*(one(h) for h in hosts))
    return {h: c for h, c in zip(hosts, conns) if c is not None}


async def gather(loaded: Loaded) -> Status:
    """Read every health fact in parallel and judge them."""
    t0 = time.monotonic()
    topo = derive(loaded.cluster)
    sdir = state.cluster_dir(topo.name, create=False)
    spec = loaded.cluster.spec
    st = Status(topo.name, topo.api_url, False, vip=topo.endpoint_host)
    if not (sdir / "pki" / "admin.crt").exists():
        st.problems.append(f"no certificates in {sdir}: the cluster was not deployed from this machine (hakube up)")
        return st
    st.cert_first_expiry, st.cert_expiry_days = _first_expiry(sdir / "pki")
    backup_hosts = [h.name for h in topo.hosts if h.runs("etcd-backup")]
    ssh_hosts = sorted(set(topo.vip_hosts) | set(topo.lb_hosts) | set(backup_hosts))
    external = topo.datastore.type == "external"
    etcd_tls = external_etcd_client(loaded) if external else etcd_client(sdir)
    async with api_client(sdir) as api, etcd_tls as etcdc:
        read_etcd = external or (topo.etcd_hosts and topo.host(topo.etcd_hosts[0]).runs("etcd"))
        etcd_task = etcd_members(etcd_endpoints(topo), etcdc) if read_etcd else _none()
        conns_task = _connect(loaded, ssh_hosts)
        etcd, apis, conns, _ = await asyncio.gather(etcd_task, _apiservers(topo, api), conns_task,
                                                    _through_endpoint(topo, api, st))
    st.etcd, st.apiservers = etcd or [], apis
    try:
        st.vip_members, st.backends = await _ssh_views(topo, conns, spec.control_plane.vip.provider,
                                                       spec.control_plane.load_balancer.provider)
        if spec.backup is not None:
            st.backup_every_s = etcd_backup.seconds(spec.backup.schedule)
            st.backups = await _backups(backup_hosts, conns)
    finally:
        await asyncio.gather(*(c.close() for c in conns.values()), return_exceptions=True)
    if spec.addons.monitoring.enabled:
        await _alerts(topo, st)
    judge(st, topo.vip_hosts, {h.name for h in topo.hosts})
    st.seconds = round(time.monotonic() - t0, 2)
    return st


async def _none():
    return []


def _first_expiry(pki: Path) -> tuple[str, int | None]:
    """(name, days left) of the certificate in the state directory that expires first."""
    now = dt.datetime.now(dt.timezone.utc)
    first: tuple[str, int | None] = ("", None)
    for p in sorted(pki.rglob("*.crt")):
        try:
            end = x509.load_pem_x509_certificate(p.read_bytes()).not_valid_after_utc
        except (OSError, ValueError):
            continue
        days = (end - now).days
        if first[1] is None or days < first[1]:
            first = (str(p.relative_to(pki)), days)
    return first


# A certificate closer than this to its expiry makes the cluster degraded (status, and the
# CertificateExpiresSoon alert): time enough to renew without a rush.
CERT_WARNING_DAYS = 30


PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "RegistryUnavailable"}


def judge(st: Status, vip_hosts: Sequence[str], named: set[str] | None = None) -> None:
    """The verdict: append to `st.problems` (each makes the cluster degraded) and `st.notes`
    (worth saying, not a fault) from the facts gathered in `st`. Pure: fixture-tested in
    tests/unit/fixtures/steps/status/. `vip_hosts` are the hosts that may hold the VIP
    (none: the cluster has no VIP); `named`, the hosts cluster.yaml names: a backend or a
    node of a host it no longer names (a dead server being replaced, a host removed by
    hand) is noted, not a fault: `hakube up` takes it out of the load balancers."""
    p = st.problems
    gone: set[str] = set()
    if named is not None:
        gone_backends = sorted({b.server for b in st.backends if b.server not in named and b.server != "-"})
        gone_nodes = sorted(n.name for n in st.nodes if n.name not in named)
        for g in sorted(set(gone_backends) | set(gone_nodes)):
            where = [f"a backend of {', '.join(sorted({b.lb for b in st.backends if b.server == g}))}"
                     ] if g in gone_backends else []
            where += [f"a node ({'Ready' if any(n.ready for n in st.nodes if n.name == g) else 'not Ready'})"
                      ] if g in gone_nodes else []
            st.notes.append(f"{g} is not in cluster.yaml but is still {' and '.join(where)}; `hakube up` takes "
                            "it out of the load balancers (and deletes the node of a server it replaces)")
        gone = set(gone_backends) | set(gone_nodes)
    if st.etcd:
        bad = [m.name for m in st.etcd if not m.healthy]
        leaders = {m.member_id for m in st.etcd if m.leader}
        if st.etcd_healthy < len(st.etcd) // 2 + 1:
            p.append(f"etcd has no quorum: {st.etcd_healthy}/{len(st.etcd)} healthy (needs {len(st.etcd) // 2 + 1})")
        elif bad:
            p.append(f"etcd {st.etcd_healthy}/{len(st.etcd)} healthy ({', '.join(bad)} down), tolerates "
                     f"{st.tolerates} more failure" + ("" if st.tolerates == 1 else "s"))
        if st.etcd_healthy and not leaders:
            p.append("etcd has no leader")
    down = [a.host for a in st.apiservers if not a.ready]
    if down:
        p.append(f"apiserver not ready on {', '.join(down)}")
    if not st.endpoint_ready:
        p.append(f"the API does not answer through {st.endpoint}")
    if vip_hosts:
        holders = st.vip_holders
        if len(holders) == 0:
            p.append(f"no host holds the VIP {st.vip}")
        elif len(holders) > 1:
            p.append(f"the VIP {st.vip} is held by {len(holders)} hosts ({', '.join(holders)}): split brain")
        unreachable = [m.host for m in st.vip_members if m.state == "UNREACHABLE"]
        faulty = [m.host for m in st.vip_members if m.state in ("FAULT", "STOPPED")]
        if unreachable:
            p.append(f"unreachable: {', '.join(unreachable)}")
        if faulty:
            p.append(f"cannot take over the VIP: {', '.join(faulty)}")
    lb_silent = sorted({b.lb for b in st.backends if b.state == "NO-STATS"})
    if lb_silent:
        p.append(f"load balancer not answering: {', '.join(lb_silent)}")
    down_backends = sorted({f"{b.server} (seen by {b.lb})" for b in st.backends if b.server not in gone
                            and b.state not in ("UP", "PASSIVE", "STANDBY", "UNREACHABLE", "NO-STATS")
                            and not b.state.startswith("UP ")})
    lb_unreachable = sorted({b.lb for b in st.backends if b.state == "UNREACHABLE"} - set(
        m.host for m in st.vip_members if m.state == "UNREACHABLE"))
    if lb_unreachable:
        p.append(f"load balancer unreachable: {', '.join(lb_unreachable)}")
    if down_backends:
        p.append(f"load-balancer backends down: {', '.join(down_backends)}")
    not_ready = [n.name for n in st.nodes if not n.ready and n.name not in gone]
    if not_ready:
        p.append(f"nodes not Ready: {', '.join(not_ready)}")
    if st.coredns_desired is not None:
        nodes = {c.node for c in st.coredns if c.node}
        if len(nodes) < len([c for c in st.coredns if c.node]):
            p.append("CoreDNS replicas share a node")
        blocked = [c for c in st.coredns if not c.ready]
        # The kubelet's reasons for a container that waits on its image (ErrImageNeverPull:
        # pull policy Never and the image is not on the node).
        no_image = [c for c in blocked if set(c.reason.split(", ")) & PULL_FAILURES]
        if no_image:
            images = sorted({c.image for c in no_image if c.image}) or ["its image"]
            nodes = sorted({c.node for c in no_image if c.node})
            reasons = sorted({r for c in no_image for r in c.reason.split(", ") if r in PULL_FAILURES})
            st.notes.append(f"CoreDNS pods cannot start: their image {', '.join(images)} cannot be pulled "
                            f"({', '.join(reasons)} on {', '.join(nodes)}); cluster DNS is not served "
                            f"until the nodes can pull it or have it loaded")
        others = [c for c in blocked if c not in no_image]
        if others:
            reasons = sorted({c.reason or c.phase for c in others})
            st.notes.append(f"CoreDNS: {len(others)} of {len(st.coredns)} pods not ready ({', '.join(reasons)})")
    for a in st.alerts:
        p.append(f"alert {a['labels'].get('alertname')} firing")
    if st.cert_expiry_days is not None and st.cert_expiry_days < CERT_WARNING_DAYS:
        p.append(f"certificate {st.cert_first_expiry} expires in {st.cert_expiry_days} days "
                 "(`hakube certs` lists every certificate; `hakube certs FILE --renew` renews the leaf ones now, "
                 "`hakube up` within spec.certificates.renewBeforeDays)")
    if st.backup_every_s is not None and st.backups:
        _judge_backups(st)


def _judge_backups(st: Status) -> None:
    """The newest scheduled snapshot of the cluster: noted with its age; older than twice
    the schedule (or none at all, every etcd host answering) is a fault, as the alert
    EtcdBackupStale says. A host that does not answer may hold the newest: no verdict."""
    taken = [b for b in st.backups if b.age_s is not None]
    silent = [b.host for b in st.backups if b.error]
    missing = [b.host for b in st.backups if not b.error and not b.installed]
    every = st.backup_every_s or 0
    if missing:
        st.notes.append(f"scheduled etcd backups are in cluster.yaml but not on {', '.join(missing)} yet: "
                        "`hakube up` installs them")
    if not taken:
        if not silent and not missing:
            st.problems.append("no scheduled etcd backup on any etcd host: `hakube up` takes the first one; see "
                               "`journalctl -u hakube-etcd-backup` there")
        return
    newest = min(taken, key=lambda b: b.age_s or 0)
    age = newest.age_s or 0
    st.notes.append(f"newest scheduled etcd backup: {newest.name} on {newest.host}, {_age(age)} ago "
                    f"(every {_age(every)})")
    if age > 2 * every and not silent:
        st.problems.append(f"the newest scheduled etcd backup is {_age(age)} old, over twice the schedule "
                           f"({_age(every)}): see `journalctl -u hakube-etcd-backup` on the etcd leader")


def _short(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0][:120]
