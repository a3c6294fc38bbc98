"""The connector interface, command results and errors, and the per-run, per-host log."""

from __future__ import annotations

import datetime as dt
import shlex
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import HakubeError


@dataclass(frozen=True)
class Result:
    host: str
    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class CommandError(HakubeError):
    """A command failed on a host. The message can be pasted into a shell to retry it."""

    def __init__(self, result: Result, what: str = ""):
        self.result = result
        tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
        lines = [f"{result.host}: {what or 'command'} failed (exit {result.exit_status})",
                 f"  command: {result.command}"]
        lines += [f"  | {line}" for line in tail] or ["  (no output)"]
        super().__init__("\n".join(lines))


class ConnectError(HakubeError):
    """A host could not be reached or refused our credentials."""


class Connector(Protocol):
    host: str  # the host's name in the spec

    async def run(self, command: str, *, input: str | bytes | None = None, check: bool = True,
                  timeout: float | None = None, what: str = "", log_output: bool = True) -> Result: ...

    async def put(self, path: str, content: bytes, *, mode: int = 0o644, owner: str = "root",
                  group: str = "root", secret: bool = False) -> None: ...

    async def close(self) -> None: ...


def quote_command(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


class RunLog:
    """Every command and its output, one file per host, under the run's folder.

    Secrets are never written: file contents are logged by path, size and mode only, and a
    command can ask not to have its output logged.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()

    @classmethod
    def for_cluster(cls, state_dir: Path, kind: str = "up") -> "RunLog":
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return cls(state_dir / "runs" / f"{stamp}-{kind}")

    def write(self, host: str, text: str) -> None:
        stamp = dt.datetime.now().strftime("%H:%M:%S.%f")[:-3]
        with self._lock, open(self.folder / f"{host}.log", "a") as fh:
            for i, line in enumerate(text.rstrip("\n").splitlines() or [""]):
                fh.write(f"{stamp} {line}\n" if i == 0 else f"             {line}\n")

    def result(self, r: Result, log_output: bool = True) -> None:
        self.write(r.host, f"$ {r.command}\n-> exit {r.exit_status}")
        if log_output:
            for name, text in (("stdout", r.stdout), ("stderr", r.stderr)):
                if text.strip():
                    self.write(r.host, "\n".join(f"  {name}| {line}" for line in text.rstrip().splitlines()))
