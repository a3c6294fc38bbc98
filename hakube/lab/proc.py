"""Running host commands for the lab, with errors a person can paste into a shell.

Every failure becomes a `LabError` that shows the command (shell-quoted), its exit code
and the tail of its output, because "exit status 1" alone tells nobody anything.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .errors import LabError

# Enough lines of a failed command's output to see the cause, few enough to read.
_TAIL_LINES = 15


def quote(cmd: Sequence[str]) -> str:
    """The command as you would type it into a shell."""
    return shlex.join(str(c) for c in cmd)


def run(
    cmd: Sequence[str | os.PathLike],
    *,
    check: bool = True,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float | None = 300,
    fix: str = "",
) -> subprocess.CompletedProcess[str]:
    """Run `cmd`, capture its output as text; raise `LabError` on failure when `check`.

    `fix` is appended to the error so the message says how to get out of it.
    """
    args = [str(c) for c in cmd]
    try:
        res = subprocess.run(
            args, capture_output=True, text=isinstance(input, str) or input is None,
            input=input, env=None if env is None else {**os.environ, **env}, cwd=cwd,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise LabError(f"`{args[0]}` is not installed on this host; run scripts/setup.sh") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"`{quote(args)}` did not finish within {timeout:.0f} s") from None
    if isinstance(res.stdout, bytes):  # binary input: decode for the message only
        res = subprocess.CompletedProcess(res.args, res.returncode,
                                          res.stdout.decode(errors="replace"),
                                          res.stderr.decode(errors="replace"))
    if check and res.returncode != 0:
        raise LabError(failure(args, res.returncode, (res.stdout or "") + (res.stderr or ""), fix))
    return res


def failure(cmd: Sequence[str], code: int, output: str, fix: str = "") -> str:
    """One message for a failed command: what ran, how it ended, the end of its output."""
    tail = " | ".join(line.strip() for line in output.strip().splitlines()[-3:] if line.strip())
    msg = f"`{quote(cmd)}` failed (exit {code})"
    if tail:
        msg += f": {tail}"
    if fix:
        msg += f"; {fix}"
    return msg


def stream(
    cmd: Sequence[str | os.PathLike],
    *,
    log: Path,
    on_line: Callable[[str], None] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    fix: str = "",
) -> None:
    """Run a long command, appending its output to `log` and passing each line to `on_line`.

    Used for builds that take minutes: the person watching sees the latest line, and the
    whole output stays in the log for when something goes wrong.
    """
    args = [str(c) for c in cmd]
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        out.write(f"$ {quote(args)}\n")
        out.flush()
        try:
            proc = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                errors="replace", env=None if env is None else {**os.environ, **env}, cwd=cwd,
                # its own process group, so an interruption can stop make AND its compilers
                start_new_session=True,
            )
        except FileNotFoundError:
            raise LabError(f"`{args[0]}` is not installed on this host; run scripts/setup.sh") from None
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                out.write(line)
                tail.append(line)
                if on_line and line.strip():
                    on_line(line.rstrip())
            code = proc.wait()
        except BaseException:
            # An interrupted build must not keep compiling in the background: kill the
            # whole group (make, go, compile...), not just its leader.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            raise
    if code != 0:
        raise LabError(failure(args, code, "".join(tail), fix or f"full output in {log}"))
