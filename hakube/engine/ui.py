"""Progress while deploying, and the summary table at the end."""

from __future__ import annotations

import time
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .changes import PhaseReport


class Reporter:
    """Prints a line per phase and per host action; collects the summary."""

    def __init__(self, console: Console | None = None, quiet: bool = False, on_step=None):
        self.console = console or Console(soft_wrap=True)
        self.quiet = quiet
        # told each phase and each change as it happens (chaos.around puts them on a timeline)
        self.on_step = on_step
        self.phases: list[PhaseReport] = []
        self.warnings: list[str] = []  # worth the operator's attention, changed nothing
        self._t0 = time.monotonic()

    @contextmanager
    def phase(self, name: str):
        report = PhaseReport(name)
        self.phases.append(report)
        if self.on_step:
            self.on_step(f"phase {name}")
        start = time.monotonic()
        if not self.quiet:
            self.console.print(f"[bold cyan]==>[/bold cyan] [bold]{escape(name)}[/bold]")
        try:
            yield report
        finally:
            report.seconds = time.monotonic() - start

    def change(self, report: PhaseReport, host: str, text: str) -> None:
        report.changes.append(f"{host}: {text}")
        if self.on_step:
            self.on_step(f"{host}: {text}")
        if not self.quiet:
            self.console.print(f"    [yellow]~[/yellow] {escape(host)}: {escape(text)}", highlight=False)

    def info(self, host: str, text: str) -> None:
        if not self.quiet:
            self.console.print(f"    [dim]{escape(host)}: {escape(text)}[/dim]", highlight=False)

    def warn(self, host: str, text: str) -> None:
        self.warnings.append(f"{host}: {text}")
        if not self.quiet:
            self.console.print(f"    [yellow]![/yellow] {escape(host)}: {escape(text)}", highlight=False)

    def ok(self, host: str, text: str) -> None:
        if not self.quiet:
            self.console.print(f"    [green]✓[/green] {escape(host)}: {escape(text)}", highlight=False)

    def detail(self, text: str) -> None:
        if not self.quiet and text:
            self.console.print(text, highlight=False, markup=False)

    @contextmanager
    def waiting(self, text: str):
        if self.quiet:
            yield
            return
        with self.console.status(text):
            yield

    @property
    def changed(self) -> int:
        return sum(len(p.changes) for p in self.phases)

    def summary(self, dry_run: bool) -> Table:
        table = Table(title="summary" + (" (dry run: nothing was changed)" if dry_run else ""),
                      title_justify="left")
        table.add_column("phase")
        table.add_column("changes", justify="right")
        table.add_column("seconds", justify="right")
        for p in self.phases:
            table.add_row(escape(p.name), str(len(p.changes)) if p.changes else "-", f"{p.seconds:.1f}")
        table.add_row("[bold]total[/bold]", f"[bold]{self.changed}[/bold]",
                      f"[bold]{time.monotonic() - self._t0:.1f}[/bold]")
        return table

    def as_dict(self, dry_run: bool) -> dict:
        return {"dryRun": dry_run, "changes": self.changed,
                "seconds": round(time.monotonic() - self._t0, 2), "warnings": list(self.warnings),
                "phases": [{"name": p.name, "changes": p.changes, "seconds": round(p.seconds, 2)}
                           for p in self.phases]}
