"""Reaching lab machines with the system's ssh, with the lab's key and strict host keys.

This is how a person (and the lab's own readiness checks) talks to a machine; hakube's
deploy uses its own SSH transport with the same key and known_hosts from cluster.yaml.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence

from .errors import LabError
from .labstate import Lab, Machine
from .proc import quote


def argv(lab: Lab, m: Machine, command: Sequence[str] = (), *, batch: bool = True,
         connect_timeout: float = 5) -> list[str]:
    """The ssh command line for `m`, ready to run or paste."""
    opts = [
        "-i", str(lab.key_file),
        "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={lab.known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"ConnectTimeout={connect_timeout:g}",
        "-o", "LogLevel=ERROR",
    ]
    if batch:
        opts += ["-o", "BatchMode=yes"]
    return ["ssh", *opts, f"root@{m.address}", *command]


def run(lab: Lab, m: Machine, command: str, *, timeout: float = 60,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a shell command on `m`; raise LabError on failure when `check`."""
    cmd = argv(lab, m, [command])
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        if not check:
            return subprocess.CompletedProcess(cmd, 124, "", f"timed out after {timeout:g} s")
        raise LabError(f"on {m.name}: `{command}` did not finish within {timeout:g} s "
                       f"({quote(cmd)})") from None
    if check and res.returncode != 0:
        out = (res.stdout + res.stderr).strip().splitlines()[-3:]
        raise LabError(f"on {m.name}: `{command}` failed (exit {res.returncode}): "
                       f"{' | '.join(out)}; try `hakube lab ssh {m.name} --name {lab.name}`")
    return res


def wait(lab: Lab, m: Machine, timeout: float = 90,
         stopped: Callable[[], str | None] | None = None) -> None:
    """Wait until sshd on `m` accepts the lab's key with strict host-key checking.

    `stopped` is asked between attempts; when it returns a message (the machine is no
    longer running), waiting ends at once with that message instead of at the timeout.
    """
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        res = run(lab, m, "true", timeout=10, check=False)
        if res.returncode == 0:
            return
        if stopped and (why := stopped()):
            raise LabError(why)
        last = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
        last = last[0]
        time.sleep(0.5)
    raise LabError(f"{m.name} ({m.address}) did not accept SSH within {timeout:g} s"
                   f"{': ' + last if last else ''}; see `podman logs {m.container}`")
