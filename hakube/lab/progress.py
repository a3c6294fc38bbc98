"""How long operations tell a person what they are doing.

The library reports through a `Progress` object; the CLI passes a rich one, tests and
scripts the silent default. Keeping rich out of the library's signatures means a build
can run the same way under the CLI, pytest, or a benchmark.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.status import Status


class Progress:
    """Silent progress: records nothing, shows nothing. Subclass to show something."""

    @contextmanager
    def step(self, title: str) -> Iterator["Step"]:
        """A phase of work; `detail()` on the yielded step updates its latest line."""
        yield Step()

    def note(self, text: str) -> None:
        """A one-off sentence ("node image up to date: hakube-node:ab12cd")."""


class Step:
    def detail(self, text: str) -> None:
        """The latest thing this step did (e.g. the last line of a compiler)."""


class RichProgress(Progress):
    """Progress on a terminal: one spinner line per step with its elapsed time.

    Finished steps stay on screen with a check mark and their duration, so the output
    of a cold `lab prepare` doubles as a timing record.
    """

    def __init__(self, console=None) -> None:
        self.console = console or Console(stderr=True)

    @contextmanager
    def step(self, title: str) -> Iterator[Step]:
        started = time.monotonic()
        step = _RichStep(title, started)
        with Status(title, console=self.console) as status:
            step.status = status
            try:
                yield step
            except BaseException:
                self.console.print(f"[red]✗[/] {title} ({time.monotonic() - started:.1f} s)")
                raise
        self.console.print(f"[green]✓[/] {title} ({time.monotonic() - started:.1f} s)")

    def note(self, text: str) -> None:
        self.console.print(f"  {text}")


class _RichStep(Step):
    def __init__(self, title: str, started: float) -> None:
        self.title = title
        self.started = started
        self.status = None
        self._last = 0.0

    def detail(self, text: str) -> None:
        now = time.monotonic()
        # Compilers print thousands of lines; redrawing 10 times a second is plenty.
        if self.status is None or now - self._last < 0.1:
            return
        self._last = now
        text = text if len(text) <= 80 else text[:77] + "..."
        self.status.update(
            f"{self.title} [dim]({now - self.started:.0f} s) {_escape(text)}[/]"
        )


def _escape(text: str) -> str:
    return escape(text)
