"""`hakube lab ...`: real machines on this computer to deploy to and to break.

Thin over the library (lifecycle, faults, binaries, image): parse, call, print. Every
LabError becomes one line on stderr and exit code 1, never a traceback.
The main CLI mounts `app` as `hakube lab`; `python -m hakube.lab` runs it alone.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from . import doctor as doctor_api
from . import faults as faults_api
from . import labstate, lifecycle, plan
from . import ssh as ssh_api
from .errors import LabError
from .progress import RichProgress

app = typer.Typer(
    help="Lab machines on this computer (podman + systemd + sshd) to deploy to and break.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

NameOpt = Annotated[str, typer.Option("--name", "-n", help="Lab name (several labs can coexist).")]


def _fail(e: Exception) -> NoReturn:
    err.print(f"[red]error:[/] {e}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def prepare() -> None:
    """Build the node image and the Kubernetes binaries (once; cached) and nothing else."""
    try:
        image, k8s = lifecycle.prepare(RichProgress(err))
    except LabError as e:
        _fail(e)
    out.print(f"node image:  {image}")
    out.print(f"binaries:    {k8s.bin_dir}")
    out.print(f"images:      {k8s.images_dir} (sandbox image {k8s.sandbox_image})")


@app.command()
def doctor(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Check this host for lab machines: cgroups, limits, tools, disk, caches; with fixes.

    Exit code 0 when every check is ok or a warning, 1 when one failed. Nothing on the
    host is changed: the cgroup check says what `lab up` would prepare."""
    report = doctor_api.run_checks()
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        mark = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}
        for c in report.checks:
            out.print(f"{mark[c.verdict]} [bold]{c.name}[/]: {c.found}", highlight=False)
            if c.fix:
                out.print(f"    fix: {c.fix}", highlight=False)
        words = {"ok": "[green]ready[/]: lab machines can run on this host",
                 "warn": "[yellow]ready, with warnings[/] (see above)",
                 "fail": "[red]not ready[/]: fix the failed checks above"}
        out.print(words[report.verdict])
    if report.verdict == "fail":
        raise typer.Exit(1)


@app.command()
def up(
    name: NameOpt = plan.DEFAULT_NAME,
    servers: Annotated[int, typer.Option(help="Machines with the role server.")] = 3,
    agents: Annotated[int, typer.Option(help="Machines with the role agent.")] = 2,
    loadbalancers: Annotated[int, typer.Option(help="Dedicated load-balancer machines.")] = 0,
    etcd: Annotated[int, typer.Option(help="Machines that run only etcd (role etcd).")] = 0,
) -> None:
    """Create the lab's machines (or repair them) and write a ready cluster.yaml."""
    try:
        result = lifecycle.up(name, servers, agents, loadbalancers, RichProgress(err), etcd=etcd)
    except LabError as e:
        _fail(e)
    for change in result.changes:
        out.print(f"  [green]+[/] {change}", highlight=False)
    if not result.changed:
        out.print(f"lab {name!r} is already up: nothing changed")
    not_running = {m: s for m, s in result.systems.items() if s != "running"}
    for m, s in not_running.items():
        err.print(f"[yellow]warning:[/] {m}: systemd reports {s}", highlight=False)
    out.print(f"lab {name!r}: {len(result.lab.machines)} machines on {result.lab.subnet}")
    out.print(f"cluster.yaml: {result.lab.cluster_yaml}")
    out.print(f"next: hakube up {result.lab.cluster_yaml}", highlight=False)


@app.command()
def status(
    name: NameOpt = plan.DEFAULT_NAME,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The lab's machines: name, role, address, state, faults."""
    try:
        st = lifecycle.status(name)
    except LabError as e:
        _fail(e)
    if as_json:
        print(json.dumps(st, indent=2))
        return
    table = Table(title=f"lab {st['name']} on {st['subnet']} (VIPs {st['vipRange']})")
    for col in ("machine", "role", "address", "state", "link", "faults"):
        table.add_column(col)
    for m in st["machines"]:
        table.add_row(m["name"], m["role"], m["address"], m["state"], m["link"],
                      ", ".join(m["faults"]) or "-")
    out.print(table)
    out.print(f"cluster.yaml: {st['clusterYaml']}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(
    machine: Annotated[str, typer.Argument(help="Machine name, e.g. server-1.")],
    command: Annotated[list[str] | None, typer.Argument(help="Command to run (after --).")] = None,
    name: NameOpt = plan.DEFAULT_NAME,
) -> None:
    """Open a shell on MACHINE, or run a command: hakube lab ssh server-1 -- uptime."""
    try:
        lab = labstate.require(name)
        m = lab.machine(machine)
    except LabError as e:
        _fail(e)
    argv = ssh_api.argv(lab, m, command or [], batch=bool(command))
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@app.command()
def down(name: NameOpt = plan.DEFAULT_NAME) -> None:
    """Remove the lab: machines, volumes, links, bridge, nftables table, keys, record."""
    try:
        changes = lifecycle.down(name)
    except LabError as e:
        _fail(e)
    for change in changes:
        out.print(f"  [red]-[/] {change}", highlight=False)
    out.print(f"lab {name!r} removed" if changes else f"lab {name!r} does not exist: nothing to do")


@app.command()
def fault(
    action: Annotated[str, typer.Argument(help=", ".join(faults_api.ACTIONS))],
    machine: Annotated[str, typer.Argument(help="The machine, e.g. server-1.")],
    other: Annotated[str | None, typer.Argument(help="Second machine (cut, heal of a cut).")] = None,
    name: NameOpt = plan.DEFAULT_NAME,
) -> None:
    """Break (or repair) a machine; returns once the fault has taken effect."""
    try:
        lifecycle.check_host()
        out.print(faults_api.apply(name, action, machine, other), highlight=False)
    except LabError as e:
        _fail(e)


def main() -> None:
    # A terminated build must still clean up (temporary folders, chroot mounts, compilers):
    # turn SIGTERM into SystemExit, which runs every `finally` on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    app()
