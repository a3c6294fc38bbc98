"""The run context of one `hakube up`, and the convergence of files and services as plans.

`Deploy` is what every step works with: the spec, the topology, the PKI, one connection
per host, the reporter, and what changed so far this run (a restart decision depends on
it). `file_actions` and `service_actions` plan; `converge_files` and `converge_service`
plan and execute (plan.execute), so no step branches on dry run to change a file or a unit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .. import state
from ..render import render
from ..topology import derive
from ..transport import connect_all
from ..transport.targets import ssh_targets
from ..components.base import File
from ..errors import HakubeError
from ..hashing import file_sha256
from ..pki import ClusterPKI, ExistingEtcd, Renewal
from ..render import Rendered
from ..spec import Loaded
from ..topology import HostPlan, Topology
from ..transport import CommandError, Connector, RunLog
from ..facts import host as facts
from . import restarts
from .changes import Desired, FileChange, PhaseReport, apply_files, plan_files
from .plan import Action, execute
from .services import Service
from .ui import Reporter


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


def _is_unit(path: str) -> bool:
    return path.endswith((".service", ".timer")) or "/systemd/" in path


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
    files: Rendered  # this run's one render (render.render, with its clash check)
    changed: dict[str, set[str]] = field(default_factory=dict)  # host -> paths changed (or planned) this run
    # names whose dead etcd member this run removed for a replacement: their node objects go too
    replaced: set[str] = field(default_factory=set)
    _digests: dict[Path, str] = field(default_factory=dict)

    def rendered(self, host: str) -> dict[str, File]:
        """Every file of every component for `host`, by path."""
        return {f.path: f for f in self.files.hosts.get(host, [])}

    def host(self, name: str) -> HostPlan:
        return self.topo.host(name)

    def component_files(self, host: str, components: tuple[str, ...]) -> list[Desired]:
        """The files `components` (package names: "etcd") render for `host`, from this run's one render."""
        return [Desired.of(f) for c in components for f in self.files.component_files(host, c)]

    async def gate(self, check) -> None:
        """Run a health gate (a coroutine function); a dry run waits for nothing."""
        if not self.dry_run:
            await check()

    # -- files -----------------------------------------------------------------------------

    async def file_actions(self, host: str, desired: list[Desired]) -> list[Action]:
        """One action per file of `host` whose content, mode or owner differ from `desired`.
        The planned paths count as changed this run (restarts depend on them)."""
        conn = self.conns[host]
        changes = await plan_files(conn, desired, with_diff=self.dry_run, remember=not self.dry_run)
        self.changed.setdefault(host, set()).update(c.desired.path for c in changes)
        return [self._write(host, c) for c in changes]

    def _write(self, host: str, c: FileChange) -> Action:
        async def run() -> None:
            await apply_files(self.conns[host], [c])
        return Action(host, f"write {c}", run, detail=c.diff, path=c.desired.path)

    async def converge_files(self, report: PhaseReport, host: str, desired: list[Desired]) -> list[Action]:
        """Plan the files of `host` and execute the plan; returns its actions."""
        actions = await self.file_actions(host, desired)
        await execute(self, report, actions)
        return actions

    # -- services --------------------------------------------------------------------------

    async def service_actions(self, host: str, svc: Service, extra: list[Desired] | None = None,
                              cluster_managed: bool = False) -> list[Action]:
        """Write the unit's files; restart it only when one of its inputs changed this run,
        start it when it is not running, enable it.

        `cluster_managed`: a cluster manager (pacemaker) decides where the unit runs, so it
        stays disabled at boot and is never started here; a running copy is restarted
        when its inputs changed."""
        rendered = self.rendered(host)
        desired = self.component_files(host, svc.reads) + (extra or [])
        desired += [Desired.of(rendered[p]) for p in svc.borrowed if p in rendered]
        own = {d.path for d in desired}
        actions = await self.file_actions(host, desired)
        unit_changed = any(_is_unit(a.path) for a in actions)
        triggers = sorted(p for p in self.changed.get(host, ()) if svc.depends_on(p, own))
        st = (await facts.service_states(self.conns[host], [svc.unit]))[svc.unit]
        unit = svc.unit
        run = self.conns[host].run
        reload = "systemctl daemon-reload && " if unit_changed else ""
        commands = {  # (a start or restart goes through _start: its failure is a gate failure)
            "enable": lambda: run(f"{reload}systemctl enable {unit}", what=f"enabling {unit}"),
            "disable": lambda: run(f"{reload}systemctl disable {unit}", what=f"disabling {unit}"),
            "reload": lambda: run("systemctl daemon-reload", what="reloading systemd"),
            "apply": lambda: run(f"systemctl reload {unit}", what=f"reloading {unit}", timeout=120),
            "start": lambda: self._start(host, svc, "start", reload),
            "restart": ((lambda: run(f"{reload}systemctl restart {unit}", what=f"restarting {unit}", timeout=120))
                        if cluster_managed else (lambda: self._start(host, svc, "restart", reload))),
        }
        steps = [Action(host, step.sentence, commands[step.verb])
                 for step in restarts.decide(unit, st.active, st.enabled, triggers, unit_changed, cluster_managed,
                                             svc.reloads)]
        return actions + steps

    async def _start(self, host: str, svc: Service, verb: str, reload: str) -> None:
        try:
            # reset-failed: a unit that crash-looped in an earlier run is held back by
            # systemd's start rate limit; this run brings new configuration, so try again.
            await self.conns[host].run(f"{reload}systemctl reset-failed {svc.unit} 2>/dev/null; "
                                       f"systemctl {verb} {svc.unit}", what=f"{verb}ing {svc.unit}", timeout=120)
        except CommandError as e:
            raise GateError(host, f"{svc.unit} to {verb}", e.result.stderr.strip() or "it failed",
                            await self.journal(host, svc.unit)) from None
        if svc.settle:
            await self.wait_settled(host, svc)

    async def converge_service(self, report: PhaseReport, host: str, svc: Service,
                               extra: list[Desired] | None = None, cluster_managed: bool = False) -> list[Action]:
        """Plan the service on `host` and execute the plan; returns its actions."""
        actions = await self.service_actions(host, svc, extra, cluster_managed)
        await execute(self, report, actions)
        return actions

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
    st = p.stat()
    key = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    book = state.home() / "digests.json"
    try:
        known = json.loads(book.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    known = {k: v for k, v in known.items() if not k.startswith(f"{p.resolve()}|")}
    known[key] = file_sha256(p)
    book.parent.mkdir(parents=True, exist_ok=True)
    tmp = book.with_suffix(".tmp")
    tmp.write_text(json.dumps(known, indent=0))
    tmp.replace(book)
    return known[key]


@asynccontextmanager
async def session(loaded: Loaded, dry_run: bool, ui: Reporter, what: str,
                  hosts: list[str] | None = None, renew: Renewal | None = None) -> AsyncIterator[Deploy]:
    """Connect to the spec's hosts (or only `hosts`) and yield the run's Deploy: the one
    render, the PKI (leaf certificates renewed as `renew` says, else as the spec does), a
    run log named `what`. Every command (up, remove, reset) runs in one."""
    topo = derive(loaded.cluster)
    state_dir = state.cluster_dir(topo.name)
    log = RunLog.for_cluster(state_dir, f"{what}-dry-run" if dry_run else what)
    files = render(topo, state.secrets(topo.name))  # before connecting: a spec value no template takes stops here
    with ui.phase("connect"):
        targets = [t for t in ssh_targets(loaded) if hosts is None or t.name in hosts]
        conns = await connect_all(targets, log, loaded.cluster.spec.ssh.max_parallel)
        ui.info("ssh", f"connected to {len(conns)} hosts; log: {log.folder}")
    try:
        pki = ClusterPKI.load_or_create(state_dir, topo, ExistingEtcd.read(loaded), renew, dry_run)
        yield Deploy(loaded, topo, pki, conns, ui, log, dry_run, state_dir, files)
    finally:
        await asyncio.gather(*(c.close() for c in conns.values()), return_exceptions=True)
