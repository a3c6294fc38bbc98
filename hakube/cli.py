"""The `hakube` command: a thin layer over the library (parsing and printing only).

Exit codes: 0 success, 1 the spec or the cluster has a problem, 2 wrong usage.
"""

from __future__ import annotations

import enum
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__, state
from .errors import HakubeError
from .output import check_new_file, write_new_file
from .spec import SpecError, load
from .spec.example import example
from .spec.problems import Problem
from .topology import Topology, derive

app = typer.Typer(
    help="hakube: highly-available Kubernetes on your own machines, deployed over SSH "
         "from one cluster.yaml, and proven by failure tests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # paragraphs in docstrings reflow to the terminal's width
)
# soft_wrap: long lines stay whole when piped (grep, logs), the terminal wraps them.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

SpecFile = typer.Argument(..., help="The cluster spec (cluster.yaml).", show_default=False)
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of text.")


def _version(value: bool) -> None:
    if value:
        out.print(f"hakube {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


# ---- helpers --------------------------------------------------------------------------------


def _print_problems(source: str, problems: list[Problem]) -> None:
    for p in problems:
        color = "red" if p.severity == "error" else "yellow"
        where = f"{source}:{p.line}" if p.line else source
        field = f"[bold]{escape(p.path)}[/bold]: " if p.path else ""
        err.print(f"[{color}]{p.severity}[/{color}] {escape(where)}: {field}{escape(p.message)}", highlight=False)
        if p.fix:
            err.print(f"    fix: {escape(p.fix)}", highlight=False)


def _load(file: Path, quiet: bool = False):
    loaded = load(file)
    if loaded.warnings and not quiet:
        _print_problems(str(file), loaded.warnings)
    return loaded


ProbeOpt = typer.Option(False, "--probe", help="Run the chaos probes through the VIP while it runs, and "
                                               "end with their figures (the cluster must be up already).")
ReportOpt = typer.Option(None, "--report", help="With --probe: an HTML timeline of the probes and the "
                                                "run's steps, here.")


def _operate(loaded, name: str, operation, ui, probe: bool, report: Optional[Path], as_json: bool,
             dry_run: bool = False, extra: Optional[dict] = None):
    """Run an operation that changes the cluster (`operation()` returns its coroutine),
    under the chaos probes when asked; print the probes' figures (or the JSON document:
    the run's changes, `extra`, the probes). Exit 1 when the probes found a fault."""
    import asyncio

    if report and not probe:
        raise HakubeError("--report draws the probes' timeline: give --probe with it")
    probes = result = None
    if probe:
        from .chaos.around import probe_around

        def run(step):
            ui.on_step = step
            return operation()
        probes, result = asyncio.run(probe_around(loaded, run, name=name))
    else:
        result = asyncio.run(operation())
    if probes is not None and report:
        from .chaos.report import write_html

        page = write_html([probes], report)
        if not as_json:
            out.print(f"probe report: {page}")
    if as_json:
        doc = ui.as_dict(dry_run) | (extra(result) if extra else {})
        if probes is not None:
            doc["probes"] = probes.as_dict()
        out.print_json(json.dumps(doc))
        if probes is not None and not probes.ok:
            raise typer.Exit(1)
        return probes, result
    if probes is not None:
        color = "green" if probes.ok else "red"
        out.print(f"[{color}]probes: {escape(probes.verdict)}[/{color}]; write outage {probes.write_downtime_s} s "
                  f"(total {probes.total_write_outage_s} s), read outage {probes.read_downtime_s} s, "
                  f"{probes.acknowledged} writes acknowledged", highlight=False)
        if not probes.ok:
            raise typer.Exit(1)
    return probes, result


def _confirm(given: bool, as_json: bool, what: str, question: str) -> None:
    """A destructive command goes on with --yes (or --dry-run), or when a person at a
    terminal says yes; from a script without --yes it stops and says what it would do."""
    if given:
        return
    if as_json or not sys.stdin.isatty():
        raise HakubeError(f"{what}; give --yes to confirm (or --dry-run to see the plan)")
    typer.confirm(question, abort=True)


def _day2(loaded, name: str, operation, as_json: bool, dry_run: bool, done, probe: bool = False,
          report: Optional[Path] = None, extra=lambda r: r.as_dict() if r else {}) -> None:
    """Run a command that changes a running cluster (remove, reboot, reset, restore):
    `operation(ui)` returns its coroutine; print its steps and summary, or its JSON, and
    `done(result)`, the sentence of a completed run."""
    from .engine.ui import Reporter

    ui = Reporter(console=err if as_json else out, quiet=as_json)
    _, result = _operate(loaded, name, lambda: operation(ui), ui, probe, report, as_json, dry_run, extra=extra)
    if as_json:
        return
    out.print(ui.summary(dry_run))
    if dry_run:
        out.print(f"{ui.changed} change(s) planned; run without --dry-run to apply them")
    else:
        out.print(done(result))


# ---- commands -------------------------------------------------------------------------------


@app.command()
def init(
    output: Path = typer.Option(Path("cluster.yaml"), "-o", "--output", help="Where to write the example."),
    lab: bool = typer.Option(False, "--lab", help="Fill in the local lab's addresses, key and binaries "
                                                 "(the lab must exist: `hakube lab up` writes the same file)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    name: str = typer.Option("hakube", "--name", help="With --lab: which lab."),
) -> None:
    """Write a commented example cluster.yaml to start from.

    Example: hakube init -o cluster.yaml && $EDITOR cluster.yaml && hakube validate cluster.yaml
    """
    check_new_file(output, force)
    if lab:
        from .lab import spec_text  # the lab knows its own addresses, key and binaries
        text = spec_text(output_name=output.name, name=name)
    else:
        text = example(file=output.name)
    write_new_file(output, text, force)
    out.print(f"wrote {output}; next: hakube validate {output}")


@app.command()
def validate(file: Path = SpecFile, as_json: bool = JsonOpt) -> None:
    """Check a cluster spec; report every problem at once.

    Each problem names its field path, its line and a fix. Exit code 1 when there is an
    error (warnings alone pass).

    Example: hakube validate cluster.yaml
    """
    try:
        loaded = load(file)
        problems, ok = loaded.warnings, True
    except SpecError as e:
        problems, ok = e.problems, False
    if as_json:
        out.print_json(json.dumps({"file": str(file), "valid": ok,
                                   "problems": [p.as_dict() for p in problems]}))
    else:
        _print_problems(str(file), problems)
        if ok:
            out.print(f"{file}: valid" + (f" ({len(problems)} warning(s))" if problems else ""))
        else:
            n = sum(p.severity == "error" for p in problems)
            err.print(f"{file}: invalid, {n} error(s)")
    raise typer.Exit(0 if ok else 1)


@app.command()
def plan(file: Path = SpecFile, as_json: bool = JsonOpt) -> None:
    """Show what the spec implies, without contacting any host.

    Bootstrap server and join order, quorum and tolerated failures, the API endpoint that
    clients and agents use, the certificate SANs, and the components on each host.
    Deterministic.

    Example: hakube plan cluster.yaml --json | jq .certificateSANs
    """
    topo = derive(_load(file, quiet=as_json).cluster)
    if as_json:
        out.print_json(json.dumps(topo.as_dict()))
        return
    _print_plan(topo)


def _print_plan(t: Topology) -> None:
    d = t.as_dict()
    out.print(f"[bold]cluster {t.name}[/bold]: {t.distribution} {t.version}")
    out.print(f"  servers: {len(t.servers)}, tolerates {t.tolerated_failures} server failure(s)")
    if t.etcd_hosts:
        where = "on the servers" if t.etcd_on_servers else "on hosts of its own"
        out.print(f"  etcd {where}: {len(t.etcd_hosts)} members, quorum {t.quorum}, tolerates "
                  f"{t.etcd_tolerated_failures} member failure(s)")
        out.print(f"  etcd bootstrap: {t.etcd_hosts[0]} (only if no etcd member is healthy anywhere)")
        out.print(f"  etcd join order (one at a time): {' -> '.join(t.etcd_hosts)}")
    else:
        out.print(f"  datastore: an existing one at {', '.join(t.etcd_client_urls)} (checked before any change)")
    out.print(f"  server join order (one at a time): {' -> '.join(t.server_join_order)}")
    out.print(f"  agents (in parallel): {', '.join(t.agents) or 'none'}")
    out.print(f"  API endpoint (kubectl, kubeconfig): {t.api_url}")
    out.print(f"  API endpoint used by agents: {t.agent_api_url}")
    out.print(f"  apiservers listen on port {t.apiserver_port}")
    lb, vip = d["loadBalancer"], d["vip"]
    out.print(f"  load balancer: {lb['provider']} on {', '.join(lb['hosts']) or 'none'} ({lb['placement']})")
    out.print(f"  VIP: {vip['address']} by {vip['provider']}"
              + (f" on {', '.join(vip['hosts'])} (VRRP router id {vip['virtualRouterId']})" if vip['hosts'] else ""))
    out.print(f"  certificate SANs: {', '.join(t.sans)}")
    table = Table(title="hosts", title_justify="left")
    for col in ("host", "address", "roles", "pod CIDR", "components"):
        table.add_column(col)
    for h in t.hosts:
        table.add_row(h.name, h.address, ",".join(h.roles), h.pod_cidr or "-", ", ".join(h.components))
    out.print(table)


@app.command("render")
def render_cmd(
    file: Path = SpecFile,
    output: Path = typer.Option(..., "-o", "--output", help="Directory to write into.", show_default=False),
) -> None:
    """Write every file each host will receive, without contacting any host.

    Files go to DIR/<host>/<absolute path>, cluster-level manifests to DIR/_cluster/.
    DIR is written whole or not at all: the files go to a new folder beside it, which
    replaces DIR once complete. DIR may be missing, empty, or an earlier render (it holds
    a `.hakube-render` file), which is replaced entirely, stale files included; any other
    folder, a file, or a symbolic link (never followed) is refused, and so is a missing
    parent folder. Nothing is written when the spec is invalid.
    Secrets (VRRP password, K3s token) come from the cluster's state directory, created on
    first use, so rendering twice gives identical files.

    Example: hakube render cluster.yaml -o out/ && haproxy -c -f out/server-1/etc/haproxy/haproxy.cfg
    """
    from .render import CLUSTER_DIR, check_output, publish, render

    topo = derive(_load(file).cluster)
    check_output(output)  # before the state directory is touched: a wrong -o changes nothing
    rendered = render(topo, state.secrets(topo.name))
    written = publish(rendered, output)
    per_host = ", ".join(f"{h}: {len(fs)}" for h, fs in rendered.hosts.items())
    out.print(f"wrote {len(written)} files to {output}/ ({per_host}; {CLUSTER_DIR}: {len(rendered.cluster)})")


@app.command()
def up(
    file: Path = SpecFile,
    dry_run: bool = typer.Option(False, "--dry-run", help="Read the hosts and show what would change, "
                                                          "with file diffs; change nothing."),
    as_json: bool = JsonOpt,
    probe: bool = ProbeOpt,
    report: Optional[Path] = ReportOpt,
) -> None:
    """Deploy or converge the cluster over SSH; a second run changes nothing.

    Phases run in the runbook's order (facts, packages, binaries, certificates, etcd one
    server at a time, control plane gated on /readyz, load balancers and VIP gated on the VIP
    answering, kubeconfig). Every command is logged per host under the cluster's state
    directory. On failure it names the host, what was expected, what was seen and the
    service's log; running it again continues from where it stopped.

    Example: hakube up cluster.yaml --dry-run && hakube up cluster.yaml
    """

    from .engine.deploy import up as deploy_up
    from .engine.ui import Reporter

    loaded = _load(file, quiet=as_json)
    ui = Reporter(console=err if as_json else out, quiet=as_json)
    probes, _ = _operate(loaded, "up", lambda: deploy_up(loaded, dry_run=dry_run, ui=ui), ui, probe, report,
                         as_json, dry_run)
    if as_json:
        return
    out.print(ui.summary(dry_run))
    if ui.changed == 0:
        out.print("[green]no changes[/green]: the cluster already matches the spec")
    elif dry_run:
        out.print(f"{ui.changed} change(s) planned; run without --dry-run to apply them")
    else:
        out.print(f"[green]converged[/green] with {ui.changed} change(s); "
                  f"kubeconfig: {state.cluster_dir(loaded.cluster.name) / 'kubeconfig'}")


@app.command()
def remove(
    file: Path = SpecFile,
    hosts: list[str] = typer.Argument(..., help="The hosts to take out, as cluster.yaml names them.",
                                      show_default=False),
    yes: bool = typer.Option(False, "--yes", help="Do not ask before taking them out and resetting them."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the hand-off, drain, removal and reset; "
                                                          "change nothing."),
    as_json: bool = JsonOpt,
    probe: bool = ProbeOpt,
    report: Optional[Path] = ReportOpt,
) -> None:
    """Take hosts out of the running cluster safely, then reset them.

    Refused (nothing changes) when what stays would not keep etcd's quorum, would tolerate
    no failure where the cluster tolerates one now (3 servers -> 2), or would leave one
    apiserver, one VIP host or no load balancer. Otherwise, one host at a time: the VIP and
    etcd leadership move away, its apiserver is drained on every load balancer, the node is
    cordoned and its pods evicted (PodDisruptionBudgets honoured), its etcd member and node
    object are removed. The hosts that stay then drop it from their load balancers and VIP
    peers one host at a time, and it is reset (`hakube reset`). Keep the hosts in
    cluster.yaml until this finishes, then delete them there: `hakube up` changes nothing.

    Example: hakube remove cluster.yaml server-4 server-5 --dry-run && hakube remove cluster.yaml server-4 server-5 --yes --probe
    """
    from .engine.remove import remove as remove_hosts

    loaded = _load(file, quiet=as_json)
    _confirm(yes or dry_run, as_json, f"remove takes {', '.join(hosts)} out of cluster {loaded.cluster.name} "
             "and resets them", f"Take {', '.join(hosts)} out of cluster {loaded.cluster.name} and reset them?")
    _day2(loaded, "remove", lambda ui: remove_hosts(loaded, hosts, dry_run=dry_run, ui=ui), as_json, dry_run,
          lambda done: f"[green]removed[/green] {', '.join(done.hosts)}: now delete "
                       f"{'them' if len(done.hosts) > 1 else 'it'} from {file}; `hakube up {file}` then changes nothing",
          probe, report)


@app.command()
def reboot(
    file: Path = SpecFile,
    hosts: Optional[list[str]] = typer.Argument(None, help="Only these hosts (default: every host of the spec).",
                                                show_default=False),
    yes: bool = typer.Option(False, "--yes", help="Do not ask before rebooting the machines."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the order, the hand-offs and the gates; "
                                                          "reboot nothing."),
    as_json: bool = JsonOpt,
    probe: bool = ProbeOpt,
    report: Optional[Path] = ReportOpt,
) -> None:
    """Reboot machines one at a time, without losing quorum or a write (kernel updates).

    The VIP holder and the etcd leader go last. Before each machine goes down, the VIP and
    etcd leadership move away, its apiserver is drained on every load balancer, its node is
    cordoned and its pods evicted (PodDisruptionBudgets honoured). After it is back: its
    etcd member healthy, its apiserver ready and UP on every load balancer, the VIP whole,
    its node Ready and uncordoned, and only then the next machine. Refused (no machine
    reboots) when a reboot would cost etcd's quorum or leave no other apiserver, load
    balancer or VIP host; checked again before every machine.

    Example: hakube reboot cluster.yaml --dry-run && hakube reboot cluster.yaml --yes --probe
    """
    from .engine.reboot import reboot as reboot_hosts

    loaded = _load(file, quiet=as_json)
    which = ", ".join(hosts) if hosts else f"every machine of cluster {loaded.cluster.name}"
    _confirm(yes or dry_run, as_json, f"reboot restarts {which}, one at a time", f"Reboot {which}, one at a time?")
    _day2(loaded, "reboot", lambda ui: reboot_hosts(loaded, hosts, dry_run=dry_run, ui=ui), as_json, dry_run,
          lambda done: f"[green]rebooted[/green] {len(done.hosts)} machine(s), one at a time (away: "
                       + ", ".join(f"{h} {done.away_s[h]:.0f} s" for h in done.hosts) + ")",
          probe, report)


@app.command()
def reset(
    file: Path = SpecFile,
    hosts: Optional[list[str]] = typer.Argument(None, help="Only these hosts (default: every host of the spec).",
                                                show_default=False),
    yes: bool = typer.Option(False, "--yes", help="Do not ask before deleting the cluster's data."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be stopped, put back and removed."),
    as_json: bool = JsonOpt,
) -> None:
    """Take off the hosts everything hakube put there: as before the first `up`.

    Stops and disables hakube's services (a unit the host had enabled stays enabled), kills
    the containers, removes kube-proxy's rules, the pod bridge and routes and the VIP address,
    puts back the host's own copy of every file hakube overwrote and removes the others,
    empties the data folders the host already had (etcd, containerd, kubelet, Prometheus)
    and removes those hakube created, and its own state (/var/lib/hakube). Debian packages
    stay installed. The cluster's data is gone for good: take a backup first.

    A part of a running cluster is refused while its etcd or its node list still counts the
    hosts: `hakube remove` takes them out safely (and resets them). The local state
    directory (certificate authorities, keys) stays, so a new `up` on these hosts reuses it.

    Example: hakube reset cluster.yaml --dry-run && hakube reset cluster.yaml --yes
    """
    from .engine.reset import reset as reset_hosts

    loaded = _load(file, quiet=as_json)
    which = ", ".join(hosts) if hosts else f"every host of cluster {loaded.cluster.name}"
    _confirm(yes or dry_run, as_json, f"reset deletes the cluster's data on {which}",
             f"Reset {which}? Their etcd data, certificates and configuration are deleted")
    _day2(loaded, "reset", lambda ui: reset_hosts(loaded, hosts or None, dry_run=dry_run, ui=ui), as_json, dry_run,
          lambda done: f"[green]reset[/green] {len(done)} host(s); the local state "
                       f"({state.cluster_dir(loaded.cluster.name)}) stays: a new `hakube up` reuses its certificate "
                       "authorities",
          extra=lambda r: {"hosts": [x.as_dict() for x in r or []]})


@app.command()
def certs(
    file: Path = SpecFile,
    renew: bool = typer.Option(False, "--renew", help="Renew leaf certificates (the CAs stay) and roll them out: "
                               "one server at a time, with the day-2 hand-off before each restart."),
    within: Optional[str] = typer.Option(None, "--within", help="With --renew: only those that expire within "
                                         "this many days, e.g. 90d (default: every leaf certificate)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --renew: show what would be renewed and restarted; "
                                 "change nothing, here or on the hosts."),
    as_json: bool = JsonOpt,
    probe: bool = ProbeOpt,
    report: Optional[Path] = ReportOpt,
) -> None:
    """Every certificate hakube made, on every host: subject, issuer, expiry, days left, and
    whether the host's copy is the one in the state directory. Read-only, unless --renew.

    Exit code 1 when a host's copy differs or is missing (`hakube up` puts it back).

    With --renew: leaf certificates are reissued by the cluster's own CAs in the state
    directory and rolled out by `up`'s pipeline: every restart they need goes one server at
    a time, with the VIP, etcd leadership and the load balancers' traffic moved away first.
    `hakube up` does the same by itself for certificates within
    spec.certificates.renewBeforeDays (90) of their expiry.

    Example: hakube certs cluster.yaml --json | jq 'min_by(.days_left)';
    hakube certs cluster.yaml --renew --within 90d --probe
    """
    import asyncio

    from .verify.certs import gather_certs

    if renew:
        _renew_certs(file, within, dry_run, as_json, probe, report)
        return
    if within or dry_run or probe or report:
        raise HakubeError("--within, --dry-run, --probe and --report go with --renew (without it, certs only reads)")
    loaded = _load(file, quiet=True)
    rows = asyncio.run(gather_certs(loaded))
    bad = [r for r in rows if r.on_host not in ("matches",)]
    if as_json:
        out.print_json(json.dumps([r.as_dict() for r in rows]))
    else:
        table = Table(title=f"certificates of {loaded.cluster.name}", title_justify="left")
        for col in ("host", "path", "subject", "issuer", "expires", "days", "on host"):
            table.add_column(col)
        for r in rows:
            mark = "[green]✓[/]" if r.on_host == "matches" else f"[red]{escape(r.on_host)}[/]"
            table.add_row(r.host, r.path, escape(r.subject), escape(r.issuer), r.not_after[:10],
                          str(r.days_left), mark)
        out.print(table)
        dated = [r for r in rows if r.not_after != "-"]
        if dated:
            first = min(dated, key=lambda r: r.days_left)
            out.print(f"earliest expiry: {first.path} on {first.host}, {first.not_after[:10]} "
                      f"({first.days_left} days)", highlight=False)
        if bad:
            out.print(f"[red]{len(bad)} certificate(s) not as hakube made them[/]; `hakube up` puts them back")
    if bad:
        raise typer.Exit(1)


def _renew_certs(file: Path, within: Optional[str], dry_run: bool, as_json: bool, probe: bool,
                 report: Optional[Path]) -> None:
    from .engine.deploy import up as deploy_up
    from .engine.ui import Reporter
    from .pki import CERT_DAYS, Renewal

    if within is None:
        days, asked = CERT_DAYS + 1, "hakube certs --renew"
    else:
        text = within.strip().lower().removesuffix("d")
        if not text.isdigit() or not 1 <= int(text) <= CERT_DAYS:
            raise HakubeError(f"--within {within!r}: give a number of days from 1 to {CERT_DAYS}, e.g. --within 90d")
        days, asked = int(text), f"hakube certs --renew --within {int(text)}d"
    loaded = _load(file, quiet=as_json)
    ui = Reporter(console=err if as_json else out, quiet=as_json)
    renewal = Renewal(days, asked=asked)
    _operate(loaded, "certs-renew", lambda: deploy_up(loaded, dry_run=dry_run, ui=ui, renew=renewal,
                                                        what="certs-renew"),
             ui, probe, report, as_json, dry_run)
    if as_json:
        return
    out.print(ui.summary(dry_run))
    if ui.changed == 0:
        out.print(f"[green]nothing to renew[/green]: no leaf certificate expires within {days} days")
    elif dry_run:
        out.print(f"{ui.changed} change(s) planned; run without --dry-run to renew and roll them out")
    else:
        out.print(f"[green]renewed and rolled out[/green] with {ui.changed} change(s); `hakube certs {file}` "
                  "shows the new expiries")


@app.command()
def backup(
    file: Path = SpecFile,
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="The folder that holds backups "
                                          "(default: the cluster's state directory, backups/)."),
    with_secrets: bool = typer.Option(False, "--with-secrets", help="Also seal the CA keys and hakube's secrets "
                                      "into the backup, encrypted with a passphrase."),
    passphrase_file: Optional[Path] = typer.Option(None, "--passphrase-file", help="The passphrase's file (first "
                                                   "line); default: $HAKUBE_BACKUP_PASSPHRASE."),
    list_: bool = typer.Option(False, "--list", help="List the backups in the folder instead."),
    verify: Optional[Path] = typer.Option(None, "--verify", help="Check this backup again instead: sha256, "
                                          "restore, contents (and the secrets, given the passphrase)."),
    unseal: Optional[Path] = typer.Option(None, "--unseal", help="Open this backup's sealed secrets into the "
                                          "cluster's state directory (a new machine, before `hakube restore`); "
                                          "files already there are never overwritten."),
    as_json: bool = JsonOpt,
) -> None:
    """Take a verified etcd backup: a snapshot of the leader's data, brought to this machine
    with its sha256, restored into a scratch etcd here and compared key by key with the live
    cluster at the snapshot's revision. The manifest records what it holds and how it was checked.

    Exit code 1 when the verification finds a difference.

    Example: HAKUBE_BACKUP_PASSPHRASE=... hakube backup cluster.yaml --with-secrets; hakube backup cluster.yaml --list;
    on a new machine: hakube backup cluster.yaml --unseal BACKUP, then hakube restore cluster.yaml BACKUP
    """
    import asyncio

    from .backup import api as backups, vault
    from .verify.show import _size

    loaded = _load(file, quiet=True)
    folder = output or backups.default_dir(loaded)
    if list_:
        rows = backups.list_backups(folder)
        if as_json:
            out.print_json(json.dumps(rows))
            return
        if not rows:
            out.print(f"no backups in {folder}")
            return
        # one line per backup (not a table): names stay whole in a narrow or piped terminal
        out.print(f"backups in {folder}:", highlight=False)
        for r in rows:
            if "error" in r:
                out.print(f"  {r['name']}  [red]{escape(r['error'])}[/]", highlight=False)
                continue
            mark = "[green]verified[/]" if r["verified"] else "[red]verification failed[/]"
            out.print(f"  {r['name']}  from {r['member']}, {_size(r['bytes'])}, revision {r['revision']}, "
                      f"{r['keys']} keys, {mark}" + (", secrets sealed" if r["secrets"] else ""), highlight=False)
        return
    given = passphrase_file is not None or bool(os.environ.get(vault.ENV))
    secret = vault.passphrase(passphrase_file) if with_secrets or unseal or (verify and given) else None
    if unseal is not None:
        from . import state
        if not unseal.exists():
            raise HakubeError(f"{unseal}: no such backup (hakube backup {file} --list shows them)")
        folder = unseal if unseal.is_dir() else unseal.parent
        done = backups.unseal_backup(folder, secret, state.cluster_dir(loaded.cluster.name, create=False))
        if as_json:
            out.print_json(json.dumps(done))
        else:
            out.print(f"opened {folder}'s secrets into {done['stateDir']}: {len(done['written'])} files written"
                      + (f", {len(done['alreadyThere'])} already there and the same" if done["alreadyThere"] else ""),
                      highlight=False)
        return
    if verify is not None:
        if not verify.exists():
            raise HakubeError(f"{verify}: no such backup (hakube backup {file} --list shows them)")
        result = asyncio.run(backups.verify_backup(verify, secret))
        if as_json:
            out.print_json(json.dumps(result))
        else:
            for c in result["checks"]:
                out.print(f"[green]✓[/] {escape(c)}", highlight=False)
            for p in result["problems"]:
                out.print(f"[red]✗[/] {escape(p)}", highlight=False)
            out.print(f"[green]{verify}: verified[/]" if result["ok"] else f"[red]{verify}: NOT usable as it is[/]")
        raise typer.Exit(0 if result["ok"] else 1)
    say = (lambda s: None) if as_json else (lambda s: err.print(f"  {escape(s)}…", highlight=False))
    m = asyncio.run(backups.take_backup(loaded, folder, secret, say))
    if as_json:
        out.print_json(json.dumps(m))
    else:
        inv, ver = m["inventory"], m["verification"]
        out.print(f"backup {m['path']}: {_size(m['snapshot']['bytes'])} from {m['member']}, revision {inv['revision']}, "
                  f"{inv['keys']} keys, {len(inv['namespaces'])} namespaces", highlight=False)
        if ver["ok"]:
            out.print(f"[green]verified[/]: {escape(ver['how'])}", highlight=False)
        else:
            out.print("[red]verification failed[/]:")
            for p in ver["problems"]:
                out.print(f"  [red]✗[/] {escape(p)}", highlight=False)
        if m["secrets"]:
            out.print(f"secrets: {len(m['secrets']['files'])} files sealed in {m['secrets']['file']} "
                      "(the passphrase is not stored: keep it apart from the backup)", highlight=False)
        elif m["note"]:
            out.print(f"[yellow]note[/]: {escape(m['note'])}", highlight=False)
    if not m["verification"]["ok"]:
        raise typer.Exit(1)


@app.command()
def restore(
    file: Path = SpecFile,
    backup_dir: Path = typer.Argument(..., metavar="BACKUP", help="A backup folder (`hakube backup --list`).",
                                      show_default=False),
    yes: bool = typer.Option(False, "--yes", help="Do not ask before rebuilding etcd from the backup."),
    force: bool = typer.Option(False, "--force", help="Restore even though etcd still has quorum (every write "
                                                      "since the backup is lost)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show every step; change nothing."),
    as_json: bool = JsonOpt,
) -> None:
    """Disaster recovery: rebuild every etcd member from a backup, as a new cluster (new
    cluster ID, the same members), then bring the control plane back one server at a time.

    For a cluster that lost etcd's quorum for good. Refused while etcd has quorum unless
    --force (a restore throws away every write since the backup). The old data is removed
    from every member, so none can form a second cluster. `hakube up` afterwards changes nothing.

    Example: hakube restore cluster.yaml ~/.local/share/hakube/clusters/homelab/backups/homelab-20261202T180632Z --dry-run
    """
    from .engine.restore import restore as restore_cluster

    loaded = _load(file, quiet=as_json)
    if not backup_dir.exists():
        raise HakubeError(f"{backup_dir}: no such backup (hakube backup {file} --list shows them)")
    _confirm(yes or dry_run, as_json, f"restore rebuilds every etcd member of {loaded.cluster.name} from "
             f"{backup_dir}, losing every write since", f"Rebuild etcd of {loaded.cluster.name} from {backup_dir}?")
    _day2(loaded, "restore", lambda ui: restore_cluster(loaded, backup_dir, force, dry_run, ui), as_json, dry_run,
          lambda done: f"[green]restored[/green] {loaded.cluster.name} from {backup_dir} (revision {done.revision}): "
                       f"etcd cluster {done.cluster_id} on {', '.join(done.members)}; `hakube status {file}` shows it")


@app.command()
def kubeconfig(
    file: Path = SpecFile,
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Where to write it (default: the cluster's state directory)."),
    merge: bool = typer.Option(False, "--merge", help="Also add it to ~/.kube/config as context <cluster name>."),
) -> None:
    """Write an admin kubeconfig that points at the VIP, with TLS verification on.

    It is checked against the cluster before this command returns: the API is asked for its
    version through the endpoint, verifying the server certificate with the cluster CA.

    Example: hakube kubeconfig cluster.yaml -o demo.kubeconfig && kubectl --kubeconfig demo.kubeconfig get nodes
    """
    from .verify.clients import admin_client
    from .kubeconfig import kubeconfig_text, merge_into, write_kubeconfig

    loaded = _load(file)
    topo = derive(loaded.cluster)
    sdir = state.cluster_dir(topo.name)
    if not (sdir / "pki" / "admin.crt").exists():
        raise HakubeError(f"cluster {topo.name} has no certificates in {sdir} yet; run `hakube up {file}` first")
    path = output or sdir / "kubeconfig"
    write_kubeconfig(topo, sdir, path)
    try:
        with admin_client(sdir) as client:
            r = client.get(f"{topo.api_url}/version")
            r.raise_for_status()
            version = r.json().get("gitVersion", "?")
    except Exception as e:
        raise HakubeError(f"wrote {path}, but {topo.api_url} did not answer with TLS verification on: {e}; "
                          f"check `hakube up {file}` completed") from None
    out.print(f"wrote {path} (server {topo.api_url}, Kubernetes {version}, TLS verified)")
    if merge:
        target = Path(os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or Path.home() / ".kube" / "config")
        merge_into(target, kubeconfig_text(topo, sdir), topo.name)
        out.print(f"merged into {target} as context {topo.name}: kubectl --context {topo.name} get nodes")


@app.command()
def status(
    file: Path = SpecFile,
    as_json: bool = JsonOpt,
    watch: bool = typer.Option(False, "--watch", help="Refresh every 2 seconds until Ctrl-C."),
) -> None:
    """Show HA health at a glance; exit code 1 when anything is degraded.

    etcd members (health, leader, raft term and index, DB size), which host holds the VIP and
    each member's VRRP state, each load balancer's view of each apiserver, /readyz of every
    apiserver directly, nodes, CoreDNS placement, firing alerts, and a verdict line.

    Example: hakube status cluster.yaml --watch
    """
    import asyncio
    import time as _time

    from rich.live import Live

    from .verify.show import render as render_status
    from .verify.status import gather

    loaded = _load(file, quiet=True)
    if watch:
        with Live(console=out, auto_refresh=False) as live:
            while True:
                st = asyncio.run(gather(loaded))
                live.update(render_status(st), refresh=True)
                _time.sleep(2)
    st = asyncio.run(gather(loaded))
    if as_json:
        out.print_json(json.dumps(st.as_dict()))
    else:
        out.print(render_status(st))
    raise typer.Exit(0 if st.healthy else 1)


def _scenario_help() -> str:
    from .chaos.scenarios import SCENARIOS

    return "; ".join(f"{n}: {summary}" for n, (_, summary) in SCENARIOS.items())



class FaultMode(str, enum.Enum):
    auto = "auto"
    lab = "lab"
    ssh = "ssh"

@app.command()
def chaos(
    file: Path = SpecFile,
    scenario: Optional[str] = typer.Argument(None, help="Which failure to cause. " + _scenario_help(),
                                             show_default=False),
    list_them: bool = typer.Option(False, "--list", help="Show which scenarios apply to this cluster, and why "
                                                         "the others do not."),
    trials: int = typer.Option(1, "--trials", min=1, help="Repeat the scenario and report p50/p95/max."),
    as_json: bool = JsonOpt,
    report: Optional[Path] = typer.Option(None, "--report", help="Write an HTML report with a timeline here."),
    lab: Optional[str] = typer.Option(None, "--lab", help="The lab the cluster runs on (default: found by name)."),
    faults: FaultMode = typer.Option(FaultMode.auto, "--faults",
                               help="How to break machines: lab (real crash, partition, pause), ssh (real hosts: "
                                    "crash emulated by firewall + SIGKILL, stop, restart services, isolate, cut), "
                                    "auto (the lab when one runs this cluster)."),
) -> None:
    """Prove failover: break the cluster while writing through the VIP, measure, verify.

    Probes write uniquely numbered objects and read through the API endpoint at 10 Hz each;
    afterwards every object is read back: lost (acknowledged but absent) and phantom
    (present but never attempted) must both be 0. Measured: the longest windows without a
    successful write and read, and the time until the VIP moved, etcd elected a leader, the
    load balancers marked the dead backend down, and the cluster was healthy again.
    Exit code 1 when a trial fails.

    Example: hakube chaos cluster.yaml crash-vip-holder --trials 10 --report chaos-report/
    """
    import asyncio

    from .chaos.api import applicable, run_scenario
    from .chaos.report import FIGURES, summarize, write_html

    loaded = _load(file, quiet=True)
    if list_them:
        rows = applicable(loaded)
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        for r in rows:
            mark = "[green]✓[/]" if r["applies"] else "[dim]✗[/]"
            out.print(f"{mark} [bold]{r['scenario']}[/]: {escape(r['summary'])}"
                      + ("" if r["applies"] else f"\n    [dim]does not apply: it {escape(r['why'])}[/]"),
                      highlight=False)
        return
    if scenario is None:
        err.print("error: name a scenario, or give --list to see which apply to this cluster")
        raise typer.Exit(1)

    def on_event(e) -> None:
        if not as_json:
            out.print(f"  [dim]{e.t:7.2f}s[/dim] {escape(e.kind)}: {escape(e.detail)}", highlight=False)

    def on_trial(t) -> None:
        if not as_json:
            color = "green" if t.ok else "red"
            figures = ", ".join(f"{f.removesuffix('_s').replace('_', ' ')} {getattr(t, f)} s" for f in FIGURES
                                if getattr(t, f) is not None)
            out.print(f"[{color}]trial {t.trial}: {escape(t.verdict)}[/{color}]\n  {figures}", highlight=False)

    if not as_json:
        out.print(f"[bold]{scenario}[/bold] on {loaded.cluster.name}, {trials} trial(s)")
    results = asyncio.run(run_scenario(loaded, scenario, trials, lab, on_event, on_trial, faults.value))
    summary = summarize(results)
    if report:
        page = write_html(results, report)
        if not as_json:
            out.print(f"report: {page}")
    if as_json:
        out.print_json(json.dumps({"summary": summary, "trials": [t.as_dict() for t in results]}))
    else:
        table = Table(title=f"{scenario}: {summary['verdict']}", title_justify="left")
        for col in ("figure", "p50", "p95", "max"):
            table.add_column(col)
        for f in FIGURES:
            v = summary[f]
            if v is None and f == "proxy_outage_s":  # measured by one scenario only
                continue
            table.add_row(f, *(str(v[k]) for k in ("p50", "p95", "max")) if v else ("-", "-", "-"))
        out.print(table)
        out.print(f"lost {summary['lost']}, phantom {summary['phantom']}, indeterminate {summary['indeterminate']}")
    raise typer.Exit(0 if summary["verdict"] == "passed" else 1)


def _mount_lab() -> None:
    try:
        from .lab.cli import app as lab_app
    except ImportError:  # the lab package is optional for a host-only install
        return
    app.add_typer(lab_app, name="lab")


_mount_lab()


def main() -> None:
    """Console entry point: user errors become one clear message and exit code 1."""
    try:
        app()
    except SpecError as e:
        _print_problems(e.source, e.problems)
        err.print(f"{e.source}: invalid, {len(e.errors)} error(s); nothing was changed")
        sys.exit(1)
    except HakubeError as e:
        err.print(f"[red]error[/red]: {escape(str(e))}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:  # a bug: keep the screen readable, keep the details reachable
        if os.environ.get("HAKUBE_DEBUG"):
            raise
        err.print(f"[red]internal error[/red]: {type(e).__name__}: {escape(str(e))}\n"
                  "re-run with HAKUBE_DEBUG=1 for a traceback, and please report it")
        sys.exit(70)


if __name__ == "__main__":
    main()
