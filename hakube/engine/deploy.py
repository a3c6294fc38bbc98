"""`hakube up`: from cluster.yaml to a running HA control plane, in the runbook's order.

The pipeline (ARCHITECTURE.md) is the list in `PIPELINE` below. Every phase reads facts
from the hosts, plans what must change (or says why nothing does), and applies exactly
that; with `dry_run` it only plans. A second run on a converged cluster changes nothing.

Example:
    >>> report = asyncio.run(up(load("cluster.yaml"), dry_run=True))
    >>> report.changed
    0
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .. import paths, state
from ..components import COMPONENTS
from ..components import etcd as etcd_component
from ..components.base import File, RenderContext
from ..errors import HakubeError
from ..timeouts import scaled
from ..pki import ClusterPKI
from ..spec import Loaded
from ..topology import HostPlan, Topology, derive
from ..transport import CommandError, Connector, RunLog, connect_all
from ..transport.targets import ssh_targets
from ..verify.clients import tls_context
from . import facts, services
from .changes import Desired, FileChange, PhaseReport, apply_files, plan_files
from .services import Service
from .ui import Reporter

ETCD_JOIN_TIMEOUT = 90.0
READY_TIMEOUT = 180.0
VIP_TIMEOUT = 60.0


class GateError(HakubeError):
    """A health gate did not pass: which host, what was expected, what was seen, the log."""

    def __init__(self, host: str, expected: str, seen: str, log_tail: str = "", hint: str = ""):
        text = f"{host}: health gate failed\n  expected: {expected}\n  seen: {seen}"
        if log_tail.strip():
            text += "\n  last lines of the service log:\n" + "\n".join(
                f"    | {ln}" for ln in log_tail.rstrip().splitlines())
        if hint:
            text += f"\n  {hint}"
        super().__init__(text)


@dataclass
class Deploy:
    """Everything one run of `up` works with."""

    loaded: Loaded
    topo: Topology
    pki: ClusterPKI
    conns: dict[str, Connector]
    ui: Reporter
    log: RunLog
    dry_run: bool
    state_dir: Path
    render_ctx: RenderContext
    changed: dict[str, set[str]] = field(default_factory=dict)  # host -> paths changed this run
    _digests: dict[Path, str] = field(default_factory=dict)
    _rendered: dict[str, dict[str, File]] = field(default_factory=dict)

    def rendered(self, host: str) -> dict[str, File]:
        """Every file of every component for `host`, rendered once per run."""
        if host not in self._rendered:
            h = self.host(host)
            self._rendered[host] = {f.path: f for m in COMPONENTS for f in m.host_files(self.render_ctx, h)}
        return self._rendered[host]

    # -- helpers ---------------------------------------------------------------------------

    def host(self, name: str) -> HostPlan:
        return self.topo.host(name)

    def component_files(self, host: HostPlan, modules) -> list[Desired]:
        out = []
        for m in modules:
            out += [Desired.of(f) for f in m.host_files(self.render_ctx, host)]
        return out

    async def converge_files(self, report: PhaseReport, host: str, desired: list[Desired]) -> list[FileChange]:
        """Plan the files of `host`, show the changes, and (unless dry run) write them."""
        conn = self.conns[host]
        changes = await plan_files(conn, desired, with_diff=self.dry_run, remember=not self.dry_run)
        for c in changes:
            self.ui.change(report, host, f"{'would write' if self.dry_run else 'wrote'} {c}")
            if c.diff:
                self.ui.detail(c.diff)
        if changes and not self.dry_run:
            await apply_files(conn, changes)
        self.changed.setdefault(host, set()).update(c.desired.path for c in changes)
        return changes

    async def converge_service(self, report: PhaseReport, host: str, svc: Service,
                               extra: list[Desired] | None = None, cluster_managed: bool = False) -> bool:
        """Write the unit's files; restart it only when one of its inputs changed this run,
        start it when it is not running, enable it. Returns whether it was (re)started.

        `cluster_managed`: a cluster manager (pacemaker) decides where the unit runs, so it
        stays disabled at boot and is never started here; a running copy is restarted
        when its inputs changed."""
        conn = self.conns[host]
        h = self.host(host)
        desired = self.component_files(h, svc.components) + (extra or [])
        desired += [Desired.of(self.rendered(host)[p]) for p in svc.borrowed if p in self.rendered(host)]
        own = {d.path for d in desired}
        changes = await self.converge_files(report, host, desired)
        unit_changed = any(c.desired.path.endswith((".service", ".timer")) or "/systemd/" in c.desired.path
                           for c in changes)
        triggers = sorted(p for p in self.changed.get(host, ()) if svc.depends_on(p, own))
        st = (await facts.service_states(conn, [svc.unit]))[svc.unit]
        if cluster_managed:
            return await self._converge_cluster_managed(report, host, svc, st, triggers, unit_changed)
        verb = None
        if st.active != "active":
            verb = "start"
        elif triggers:
            verb = "restart"
        if self.dry_run:
            if verb:
                why = f" ({', '.join(triggers)} changed)" if verb == "restart" else f" (it is {st.active})"
                self.ui.change(report, host, f"would {verb} {svc.unit}{why}")
            if st.enabled != "enabled":
                self.ui.change(report, host, f"would enable {svc.unit}")
            return bool(verb)
        if unit_changed:
            await conn.run("systemctl daemon-reload", what="reloading systemd")
        if st.enabled != "enabled":
            await conn.run(f"systemctl enable {svc.unit}", what=f"enabling {svc.unit}")
            self.ui.change(report, host, f"enabled {svc.unit}")
        if verb:
            try:
                # reset-failed: a unit that crash-looped in an earlier run is held back by
                # systemd's start rate limit; this run brings new configuration, so try again.
                await conn.run(f"systemctl reset-failed {svc.unit} 2>/dev/null; systemctl {verb} {svc.unit}",
                               what=f"{verb}ing {svc.unit}", timeout=120)
            except CommandError as e:
                raise GateError(host, f"{svc.unit} to {verb}", e.result.stderr.strip() or "it failed",
                                await self.journal(host, svc.unit)) from None
            self.ui.change(report, host, f"{verb}ed {svc.unit}"
                           + (f" ({', '.join(triggers)} changed)" if verb == "restart" else ""))
            if svc.settle:
                await self.wait_settled(host, svc)
        return bool(verb)

    async def _converge_cluster_managed(self, report: PhaseReport, host: str, svc: Service,
                                        st: facts.ServiceState, triggers: list[str], unit_changed: bool) -> bool:
        conn = self.conns[host]
        restart = st.active == "active" and bool(triggers)
        if self.dry_run:
            if st.enabled == "enabled":
                self.ui.change(report, host, f"would disable {svc.unit} at boot (pacemaker starts it)")
            if restart:
                self.ui.change(report, host, f"would restart {svc.unit} ({', '.join(triggers)} changed)")
            return restart
        if unit_changed:
            await conn.run("systemctl daemon-reload")
        if st.enabled == "enabled":
            await conn.run(f"systemctl disable {svc.unit}", what=f"disabling {svc.unit}")
            self.ui.change(report, host, f"disabled {svc.unit} at boot (pacemaker starts it)")
        if restart:
            await conn.run(f"systemctl restart {svc.unit}", what=f"restarting {svc.unit}", timeout=120)
            self.ui.change(report, host, f"restarted {svc.unit} ({', '.join(triggers)} changed)")
        return restart

    async def wait_settled(self, host: str, svc: Service) -> None:
        """Gate: the unit's main process still runs `svc.settle` seconds after starting
        (same PID, still active): a crash loop would show a new PID or another state."""
        async def show() -> dict[str, str]:
            r = await self.conns[host].run(f"systemctl show -p ActiveState -p MainPID {svc.unit}", check=False)
            return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)

        first = await show()
        await asyncio.sleep(svc.settle)
        now = await show()
        if now.get("ActiveState") != "active" or now.get("MainPID") != first.get("MainPID"):
            raise GateError(host, f"{svc.unit} running steadily for {svc.settle:g} s",
                            f"{now.get('ActiveState')}, main PID {first.get('MainPID')} -> {now.get('MainPID')}",
                            await self.journal(host, svc.unit))

    async def journal(self, host: str, unit: str, lines: int = 20) -> str:
        try:
            r = await self.conns[host].run(f"journalctl -u {unit} -n {lines} --no-pager -o cat", check=False,
                                           timeout=10)
            return r.stdout
        except Exception:
            return ""

    def local_digest(self, p: Path) -> str:
        """sha256 of a local file, remembered across runs by (path, size, mtime): hashing
        the binaries again on every no-change run would cost seconds for nothing."""
        if p not in self._digests:
            self._digests[p] = _cached_digest(p)
        return self._digests[p]

    async def each(self, hosts, fn, parallel: bool = True) -> None:
        """Run `fn(host)` for each host: in parallel (bounded by the connections), or in order."""
        hosts = list(hosts)
        if parallel:
            await asyncio.gather(*(fn(h) for h in hosts))
        else:
            for h in hosts:
                await fn(h)


def _cached_digest(p: Path) -> str:
    import json

    st = p.stat()
    key = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    book = state.home() / "digests.json"
    try:
        known = json.loads(book.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    known = {k: v for k, v in known.items() if not k.startswith(f"{p.resolve()}|")}
    known[key] = h.hexdigest()
    book.parent.mkdir(parents=True, exist_ok=True)
    tmp = book.with_suffix(".tmp")
    tmp.write_text(json.dumps(known, indent=0))
    tmp.replace(book)
    return known[key]


# ---- phases ------------------------------------------------------------------------------------


async def phase_facts(d: Deploy) -> None:
    with d.ui.phase("facts") as report:
        async def one(h: str):
            info = await facts.os_info(d.conns[h])
            if not info.systemd:
                raise HakubeError(f"{h}: systemd is not running there; hakube manages services with systemd")
            if info.arch not in ("x86_64", "aarch64"):
                raise HakubeError(f"{h}: unsupported architecture {info.arch}")
            d.ui.info(h, f"{info.id} {info.version} {info.arch}")
        await d.each(d.conns, one)
        del report


async def phase_packages(d: Deploy) -> None:
    with d.ui.phase("packages") as report:
        async def one(h: str):
            wanted = sorted({p for c in d.host(h).components for p in services.PACKAGES.get(c, [])})
            missing = await facts.missing_packages(d.conns[h], wanted)
            if not missing:
                d.ui.info(h, f"all {len(wanted)} packages installed")
                return
            if d.dry_run:
                d.ui.change(report, h, f"would install {' '.join(missing)}")
                return
            # Services are held back (policy-rc.d): hakube starts them itself, configured.
            await d.conns[h].run(
                "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && "
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                f"--no-install-recommends {' '.join(missing)}; rc=$?; rm -f /usr/sbin/policy-rc.d; exit $rc",
                what="installing packages", timeout=900)
            d.ui.change(report, h, f"installed {' '.join(missing)}")
        await d.each(d.conns, one)


def _binary_source(d: Deploy, name: str) -> Path | None:
    base = d.loaded.resolve(d.loaded.cluster.spec.distribution.binaries)
    if base is None:
        return None
    for p in (base / name, base / "bin" / name):
        if p.is_file():
            return p
    raise HakubeError(f"spec.distribution.binaries: {name} is not in {base} (nor in {base}/bin); "
                      "fix: put the release binaries there, or remove the field to download them")


async def phase_binaries(d: Deploy) -> None:
    if d.topo.distribution != "kubernetes":
        return
    with d.ui.phase("binaries") as report:
        async def one(h: str):
            names = sorted({b for c in d.host(h).components for b in services.KUBERNETES_BINARIES.get(c, [])})
            if not names:
                return
            desired, downloads = [], []
            for n in names:
                src = _binary_source(d, n)
                if src is None:
                    downloads.append(n)
                else:
                    desired.append(Desired.binary(f"{paths.BIN}/{n}", src, d.local_digest(src)))
            changes = await d.converge_files(report, h, desired)
            if not changes:
                d.ui.info(h, f"{', '.join(names)} up to date")
            for n in downloads:
                await _download_binary(d, report, h, n)
        await d.each(d.conns, one)


async def _download_binary(d: Deploy, report: PhaseReport, host: str, name: str) -> None:
    """Official release download on the host, verified against the published sha256."""
    ver = d.topo.version if d.topo.version.startswith("v") else f"v{d.topo.version}"
    url = f"https://dl.k8s.io/release/{ver}/bin/linux/$(dpkg --print-architecture)/{name}"
    dest = f"{paths.BIN}/{name}"
    check = (f"want=$(curl -fsSL {url}.sha256) && [ -f {dest} ] && "
             f"[ \"$(sha256sum {dest} | cut -d' ' -f1)\" = \"$want\" ]")
    if (await d.conns[host].run(check, check=False, timeout=60)).ok:
        return
    if d.dry_run:
        d.ui.change(report, host, f"would download {name} {ver}")
        return
    await d.conns[host].run(
        f"set -e; want=$(curl -fsSL {url}.sha256); curl -fsSL -o {dest}.hakube-tmp {url}; "
        f"echo \"$want  {dest}.hakube-tmp\" | sha256sum -c --quiet; chmod 755 {dest}.hakube-tmp; "
        f"mv -f {dest}.hakube-tmp {dest}", what=f"downloading {name}", timeout=600)
    d.changed.setdefault(host, set()).add(dest)
    d.ui.change(report, host, f"downloaded {name} {ver}")


async def phase_pki(d: Deploy) -> None:
    with d.ui.phase("certificates") as report:
        for c in d.pki.changes:
            d.ui.change(report, "local", c)

        async def one(h: str):
            changes = await d.converge_files(report, h, [Desired.of(f) for f in d.pki.files_for(d.host(h))])
            if not changes:
                d.ui.info(h, "certificates up to date")
        await d.each(d.conns, one)


# -- etcd --------------------------------------------------------------------------------------


async def phase_etcd(d: Deploy) -> None:
    """Bootstrap a new etcd cluster only when no member is healthy anywhere and no server
    holds etcd data; otherwise join through a healthy member, one server at a time."""
    if not d.topo.servers or "etcd" not in d.host(d.topo.servers[0]).components:
        return
    with d.ui.phase("etcd") as report:
        data_dir = etcd_component.member_for(d.topo, d.host(d.topo.servers[0])).data_dir
        views = dict(zip(d.topo.servers, await asyncio.gather(
            *(facts.etcd_view(d.conns[s], data_dir) for s in d.topo.servers))))
        healthy = [s for s, v in views.items() if v.healthy]
        with_data = [s for s, v in views.items() if v.has_data]
        if not healthy and with_data:
            # The cluster exists but no member runs (e.g. after a full power loss): start the
            # members that have data together; bootstrapping here would fork a second cluster.
            d.ui.info("etcd", f"no healthy member; starting the members with data: {', '.join(with_data)}")
            await d.each(with_data, lambda s: _converge_member(d, report, s, views[s], None))
            await d.each(with_data, lambda s: _wait_etcd_healthy(d, s))
            views.update(zip(with_data, await asyncio.gather(
                *(facts.etcd_view(d.conns[s], data_dir) for s in with_data))))
            healthy = [s for s in with_data if views[s].healthy]
        for s in d.topo.server_join_order:  # one at a time: concurrent joins can lose quorum
            source = next((x for x in healthy if x != s), None) or (healthy[0] if healthy else None)
            if source and not d.dry_run:
                # fresh: the membership changed with every join before this one
                views[source] = await facts.etcd_view(d.conns[source], data_dir)
            members = views[source].members if source else ()
            await _converge_member(d, report, s, views[s], members if source else None, source)
            if not d.dry_run:
                await _wait_etcd_healthy(d, s)
                views[s] = await facts.etcd_view(d.conns[s], data_dir)
            if s not in healthy:  # (in a dry run: as if it had joined, so the next ones plan a join)
                healthy.append(s)
            d.ui.ok(s, "etcd member healthy" if not d.dry_run else "etcd planned")
        if not d.dry_run:
            ids = {views[s].cluster_id for s in d.topo.servers}
            if len(ids) != 1:
                raise GateError("etcd", "one cluster id on every server", f"cluster ids {sorted(map(str, ids))}")


async def _converge_member(d: Deploy, report: PhaseReport, s: str, view: facts.EtcdView,
                           members: tuple[facts.EtcdMember, ...] | None, source: str | None = None) -> None:
    conn = d.conns[s]
    h = d.host(s)
    peer = etcd_component.peer_url(h.address)
    mine = next((m for m in (members or ()) if m.name == s or peer in m.peer_urls), None)
    initial: tuple[tuple[str, str], ...] | None = None
    state: str | None = None
    if members is None and not view.has_data:
        # no cluster anywhere: this is the bootstrap server (first in join order)
        initial, state = ((s, peer),), "new"
        d.ui.change(report, s, ("would bootstrap" if d.dry_run else "bootstrapping") + " a new etcd cluster")
    elif members is not None and (mine is None or not view.has_data):
        if mine is not None:
            # data lost but still a member: remove the stale entry, add it again, rejoin empty
            d.ui.change(report, s, f"{'would rejoin' if d.dry_run else 'rejoining'}: its etcd data is gone "
                                   f"(removing stale member {mine.id} through {source})")
            if not d.dry_run:
                await d.conns[source].run(f"{facts.ETCDCTL} --endpoints https://127.0.0.1:2379 member remove {mine.id}",
                                          what="removing the stale etcd member")
        else:
            d.ui.change(report, s, f"{'would join' if d.dry_run else 'joining'} the etcd cluster through {source}")
        others = [(m.name, m.peer_urls[0]) for m in members if m is not mine and m.name and m.peer_urls]
        initial, state = tuple(others) + ((s, peer),), "existing"
        if not d.dry_run:
            if view.has_data:  # data of another cluster (not a member here): keep it aside, never delete
                await conn.run(f"systemctl stop etcd; mv {shlex.quote(etcd_component.DATA_ROOT)}/{d.topo.name} "
                               f"{shlex.quote(etcd_component.DATA_ROOT)}/{d.topo.name}.stale-$(date +%s)",
                               what="moving foreign etcd data aside")
            else:
                await conn.run("systemctl stop etcd", check=False)
            await _member_add(d, source, s, peer)
    else:
        # an existing member with data: keep the initial-* settings it was started with, so
        # the file (and the member) stay untouched on re-runs
        old = await facts.read_text(conn, etcd_component.CONFIG)
        initial, state = _initial_from(old) if old else (None, None)
        if initial is None:
            names = [(m.name, m.peer_urls[0]) for m in (members or ()) if m.name and m.peer_urls]
            initial, state = (tuple(names) or ((s, peer),)), "existing"
    m = etcd_component.member_for(d.topo, h, initial, state)
    extra = [Desired.of(f) for f in etcd_component.render(m)]
    svc = Service("etcd", (), services.ETCD.pki)
    own = {x.path for x in extra}
    await d.converge_files(report, s, extra)
    triggers = sorted(p for p in d.changed.get(s, ()) if p in own or p in svc.pki)
    st = (await facts.service_states(conn, ["etcd"]))["etcd"]
    if d.dry_run:
        if st.active != "active" or triggers:
            d.ui.change(report, s, "would " + ("start" if st.active != "active" else "restart") + " etcd")
        return
    if any(p == etcd_component.UNIT for p in d.changed.get(s, ())):
        await conn.run("systemctl daemon-reload")
    if st.enabled != "enabled":
        await conn.run("systemctl enable etcd", what="enabling etcd")
    if st.active != "active" or triggers:
        verb = "start" if st.active != "active" else "restart"
        # --no-block: a joining member becomes "started" only once it reaches the others,
        # which the health gate below waits for with a clear error instead of a hang.
        await conn.run(f"systemctl --no-block {verb} etcd", what=f"{verb}ing etcd")
        d.ui.change(report, s, f"{verb}ed etcd")


async def _member_add(d: Deploy, source: str, name: str, peer: str, timeout: float = 60.0) -> None:
    """`member add`, retried while etcd refuses it as "unhealthy cluster": with strict
    reconfiguration checks (the default) etcd adds a voter only once every member has been
    connected for a few seconds, which a member that just joined has not."""
    cmd = f"{facts.ETCDCTL} --endpoints https://127.0.0.1:2379 member add {name} --peer-urls={peer}"
    deadline = time.monotonic() + scaled(timeout)
    while True:
        r = await d.conns[source].run(cmd, check=False, timeout=30)
        if r.ok:
            return
        if "unhealthy cluster" not in r.stderr or time.monotonic() > deadline:
            raise CommandError(r, f"adding {name} to etcd")
        await asyncio.sleep(1)


def _initial_from(text: str) -> tuple[tuple[tuple[str, str], ...] | None, str | None]:
    import yaml

    try:
        doc = yaml.safe_load(text) or {}
        pairs = tuple(tuple(x.split("=", 1)) for x in str(doc["initial-cluster"]).split(","))
        return pairs, str(doc["initial-cluster-state"])  # type: ignore[return-value]
    except Exception:
        return None, None


async def _wait_etcd_healthy(d: Deploy, s: str) -> None:
    conn = d.conns[s]
    deadline = time.monotonic() + scaled(ETCD_JOIN_TIMEOUT)
    seen = ""
    with d.ui.waiting(f"{s}: waiting for the etcd member to be healthy"):
        while time.monotonic() < deadline:
            r = await conn.run(f"{facts.ETCDCTL} --endpoints https://127.0.0.1:2379 endpoint health", check=False,
                               timeout=10)
            if r.ok:  # etcdctl prints its verdict on stderr; the exit code is the answer
                return
            seen = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no answer"]
            seen = seen[0]
            await asyncio.sleep(1)
    raise GateError(s, f"etcd member healthy within {scaled(ETCD_JOIN_TIMEOUT):.0f} s", seen, await d.journal(s, "etcd"),
                    "fix what the log says, then run `hakube up` again: it continues from here")


# -- control plane ---------------------------------------------------------------------------


async def phase_control_plane(d: Deploy) -> None:
    if d.topo.distribution != "kubernetes":
        return
    with d.ui.phase("control plane") as report:
        for s in d.topo.server_join_order:  # one server at a time, each gated on /readyz
            for svc in services.CONTROL_PLANE:
                await d.converge_service(report, s, svc)
            if not d.dry_run:
                await wait_apiserver_ready(d, s)
                d.ui.ok(s, "apiserver ready (/readyz)")


async def wait_apiserver_ready(d: Deploy, s: str, timeout: float = READY_TIMEOUT) -> None:
    url = f"https://127.0.0.1:{d.topo.apiserver_port}/readyz"
    cmd = (f"curl -sS --max-time 5 --cacert {paths.CA_CRT} --cert {paths.LB_CHECK_CRT} "
           f"--key {paths.LB_CHECK_KEY} -o /dev/stderr -w '%{{http_code}}' {url}")
    deadline = time.monotonic() + scaled(timeout)
    seen = "no answer"
    with d.ui.waiting(f"{s}: waiting for kube-apiserver /readyz"):
        while time.monotonic() < deadline:
            r = await d.conns[s].run(cmd, check=False, timeout=10)
            if r.stdout.strip() == "200":
                return
            seen = f"HTTP {r.stdout.strip() or '-'}: " + " ".join(r.stderr.split())[-300:]
            await asyncio.sleep(1)
    raise GateError(s, f"{url} answers 200 within {scaled(timeout):.0f} s", seen, await d.journal(s, "kube-apiserver"))


# -- front door ------------------------------------------------------------------------------


async def phase_front_door(d: Deploy) -> None:
    cp = d.loaded.cluster.spec.control_plane
    with d.ui.phase("front door") as report:
        lb = services.LOAD_BALANCERS[cp.load_balancer.provider]
        # pacemaker runs the load balancer together with the VIP, on one host at a time
        by_pacemaker = cp.vip.provider == "pacemaker"
        # one host at a time: restarting every load balancer at once is an outage
        for h in d.topo.lb_hosts:
            await d.converge_service(report, h, lb, cluster_managed=by_pacemaker and h in d.topo.vip_hosts)
        if cp.vip.provider == "keepalived":
            for h in d.topo.vip_hosts:
                await d.converge_service(report, h, services.KEEPALIVED)
        elif cp.vip.provider == "pacemaker":
            await _converge_pacemaker(d, report)
        if not d.dry_run:
            if d.topo.vip_hosts:
                holder = await wait_vip_single_holder(d)
                d.ui.ok(holder, f"holds the VIP {d.topo.endpoint_host}")
            await wait_endpoint_ready(d)
            d.ui.ok("local", f"{d.topo.api_url} ready, TLS verified")


async def _converge_pacemaker(d: Deploy, report: PhaseReport) -> None:
    from ..components import pacemaker

    corosync = Service("corosync", (pacemaker,))
    for h in d.topo.vip_hosts:
        await d.converge_service(report, h, corosync)
    for h in d.topo.vip_hosts:
        await d.converge_service(report, h, Service("pacemaker", ()))
    crm = getattr(pacemaker, "CRM_SCRIPT", "/etc/hakube/pacemaker.crm")
    first = d.topo.vip_hosts[0]
    if d.dry_run:
        return
    if crm in d.changed.get(first, set()) or not (await d.conns[first].run(
            "crm_resource --list 2>/dev/null | grep -q hakube", check=False)).ok:
        await _wait_pacemaker_quorum(d, first)
        await d.conns[first].run(f"crm configure load update {crm}", what="loading the pacemaker resources",
                                 timeout=120)
        d.ui.change(report, first, f"loaded {crm} into pacemaker")


async def _wait_pacemaker_quorum(d: Deploy, host: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        r = await d.conns[host].run("crm_mon -1 2>/dev/null | grep -q 'partition with quorum'", check=False)
        if r.ok:
            return
        await asyncio.sleep(2)
    raise GateError(host, "pacemaker partition with quorum", "no quorum", await d.journal(host, "pacemaker"))


async def vip_holders(d: Deploy) -> list[str]:
    vip = d.topo.endpoint_host

    async def holds(h: str) -> bool:
        r = await d.conns[h].run(f"ip -o -4 addr show to {vip}/32", check=False, timeout=10)
        return bool(r.stdout.strip())

    results = await asyncio.gather(*(holds(h) for h in d.topo.vip_hosts))
    return [h for h, r in zip(d.topo.vip_hosts, results) if r]


async def wait_vip_single_holder(d: Deploy, timeout: float = VIP_TIMEOUT) -> str:
    deadline = time.monotonic() + scaled(timeout)
    holders: list[str] = []
    with d.ui.waiting(f"waiting for exactly one host to hold the VIP {d.topo.endpoint_host}"):
        while time.monotonic() < deadline:
            holders = await vip_holders(d)
            if len(holders) == 1:
                return holders[0]
            await asyncio.sleep(1)
    unit = "keepalived" if d.loaded.cluster.spec.control_plane.vip.provider == "keepalived" else "pacemaker"
    host = d.topo.vip_hosts[0]
    raise GateError(host, f"the VIP {d.topo.endpoint_host} on exactly one of {', '.join(d.topo.vip_hosts)}",
                    f"held by {', '.join(holders) or 'no host'}", await d.journal(host, unit))


def admin_client(d_state: Path, timeout: float = 5.0) -> httpx.Client:
    """An HTTPS client with the cluster CA (verification ON) and the admin certificate."""
    return httpx.Client(verify=tls_context(d_state / "pki", "ca", "admin"), timeout=timeout)


async def wait_endpoint_ready(d: Deploy, timeout: float = VIP_TIMEOUT) -> None:
    url = f"{d.topo.api_url}/readyz"
    deadline = time.monotonic() + scaled(timeout)
    seen = "no answer"
    with admin_client(d.state_dir) as client, d.ui.waiting(f"waiting for {url} from this machine"):
        while time.monotonic() < deadline:
            try:
                r = await asyncio.to_thread(client.get, url)
                if r.status_code == 200:
                    return
                seen = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as e:
                seen = f"{type(e).__name__}: {e}"
            await asyncio.sleep(1)
    raise GateError("local", f"{url} answers 200 with TLS verification on", seen,
                    hint="check that this machine can reach the VIP and that a load balancer holds it")


# -- kubeconfig --------------------------------------------------------------------------------


async def phase_kubeconfig(d: Deploy) -> None:
    from ..kubeconfig import write_kubeconfig

    with d.ui.phase("kubeconfig") as report:
        path = d.state_dir / "kubeconfig"
        if d.dry_run:
            d.ui.info("local", f"would check {path}")
            return
        if write_kubeconfig(d.topo, d.state_dir, path):
            d.ui.change(report, "local", f"wrote {path}")
        else:
            d.ui.info("local", f"{path} up to date")


from .nodes import phase_addons, phase_monitoring, phase_nodes  # noqa: E402  (the later steps live in their own module)

# The pipeline: an ordered list that reads like the runbook it replaces.
PIPELINE = [
    phase_facts,          # every host reachable, systemd, a known architecture
    phase_packages,       # Debian packages (the lab image has them all: no change there)
    phase_binaries,       # Kubernetes binaries from spec.distribution.binaries or a release download
    phase_pki,            # certificates before any service that reads them
    phase_etcd,           # bootstrap once, then join one server at a time
    phase_control_plane,  # one server at a time, each gated on /readyz
    phase_front_door,     # load balancers, then the VIP; gated on the VIP answering
    phase_kubeconfig,     # points at the front door, verified with TLS on
    phase_nodes,          # containerd, pod network, kubelet, kube-proxy; agents in parallel; gated on Ready
    phase_addons,         # hakube's RBAC, HA CoreDNS, monitoring RBAC, dashboard, ingress, MetalLB
    phase_monitoring,     # node exporter, VIP presence, Prometheus + Alertmanager (when enabled)
]


async def up(loaded: Loaded, dry_run: bool = False, ui: Reporter | None = None) -> Reporter:
    """Converge the cluster described by `loaded`. Raises HakubeError with a clear message."""
    ui = ui or Reporter()
    topo = derive(loaded.cluster)
    if topo.distribution == "k3s":
        # The k3s files render and are tested (hakube render); its deploy steps (token,
        # bootstrap server, joins through the front door) slot into PIPELINE as their own
        # phases and are not written yet: refuse rather than half-deploy.
        raise HakubeError("deploying the k3s distribution is not implemented yet; `hakube render` writes "
                          "every k3s file (config.yaml, units, token) for review; use distribution: kubernetes")
    state_dir = state.cluster_dir(topo.name)
    log = RunLog.for_cluster(state_dir, "up-dry-run" if dry_run else "up")
    secrets = state.secrets(topo.name)
    with ui.phase("connect"):
        targets = ssh_targets(loaded)
        conns = await connect_all(targets, log, loaded.cluster.spec.ssh.max_parallel)
        ui.info("ssh", f"connected to {len(conns)} hosts; log: {log.folder}")
    try:
        pki = ClusterPKI.load_or_create(state_dir, topo)
        d = Deploy(loaded, topo, pki, conns, ui, log, dry_run, state_dir,
                   RenderContext(topo=topo, secrets=secrets))
        for phase in PIPELINE:
            await phase(d)
    finally:
        await asyncio.gather(*(c.close() for c in conns.values()), return_exceptions=True)
    return ui
