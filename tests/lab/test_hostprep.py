"""Host preparation on a real host: `lab up` mounts a cgroup controller the host lacks.

The test makes a host that lacks one enabled v1 controller without touching this host:
a private mount namespace (unshare) in which one controller's hierarchy is unmounted.
Every lab command then runs inside it (nsenter), as if this were the whole host. Without
hakube's host preparation the machine's processes would sit at that hierarchy's real
root, shared with the host and every machine (or, for a hierarchy nothing has created
yet, the machine would not boot at all: issue 9); with it, the machine has a cgroup of
its own there, made by podman, and boots.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hakube.lab import hostprep, labstate

from .conftest import SCALE, unique_name

CANDIDATES = ("hugetlb", "perf_event", "blkio", "net_cls,net_prio")


def _unmountable() -> str | None:
    """An optional v1 controller mounted on its own at /sys/fs/cgroup/NAME, or None."""
    p = hostprep.read_host()
    if p.layout not in ("v1", "hybrid"):
        return None
    for name in CANDIDATES:
        path = f"{hostprep.CGROUP_ROOT}/{name}"
        if p.mounted.get(name.split(",")[0]) == path and not os.path.islink(path):
            return name
    return None


@pytest.fixture
def private_host():
    """A mount namespace of this host's (its own copy of the cgroup mounts); yields a
    function that runs a command inside it."""
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "unchanged",
                               "sleep", str(int(1800 * SCALE))])
    prefix = ["nsenter", "-t", str(holder.pid), "-m", "--"]

    def run(*cmd: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([*prefix, *cmd], capture_output=True, text=True,
                             timeout=timeout * SCALE)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    try:
        # wait until the namespace exists (unshare has exec'd sleep)
        for _ in range(100):
            if Path(f"/proc/{holder.pid}/ns/mnt").resolve() != Path("/proc/self/ns/mnt").resolve():
                break
            subprocess.run(["sleep", "0.05"])
        # the cgroup mounts of the namespace become its own, so unmounting one there
        # leaves this host's untouched
        run("mount", "--make-rprivate", hostprep.CGROUP_ROOT)
        yield run
    finally:
        holder.kill()
        holder.wait()


def test_lab_up_mounts_a_controller_the_host_lacks_and_the_machine_gets_its_own_cgroup(private_host):
    controller = _unmountable()
    if controller is None:
        pytest.skip("this host has no separately mounted optional v1 controller to take away "
                    "(cgroup v2, or everything co-mounted)")
    path = f"{hostprep.CGROUP_ROOT}/{controller}"
    private_host("umount", path)
    assert path in Path("/proc/self/mountinfo").read_text().split(), "this host keeps its own mount"

    doctor = json.loads(private_host(sys.executable, "-m", "hakube.lab", "doctor", "--json",
                                     check=False).stdout)
    assert f"mount cgroup v1 hierarchy {controller} on {path}" in doctor["cgroups"]["toPrepare"]

    name = unique_name()
    try:
        up = private_host(sys.executable, "-m", "hakube.lab", "up", "--name", name,
                          "--servers", "1", "--agents", "0")
        assert f"host: mounted cgroup v1 hierarchy {controller} on {path}" in up.stdout
        lab = labstate.require(name)
        m = lab.machines[0]
        info = json.loads(private_host("podman", "container", "inspect", m.container).stdout)[0]
        pid, cid = info["State"]["Pid"], info["Id"]
        first = controller.split(",")[0]
        line = next(ln for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                    if first in ln.split(":")[1].split(","))
        assert cid in line.split(":", 2)[2], (
            f"the machine's {controller} cgroup is {line!r}: not its own (host preparation missing?)")
        # and the machine sees it as the root of its own hierarchy
        inside = private_host("podman", "exec", m.container, "cat", "/proc/1/cgroup").stdout
        assert any(first in ln.split(":")[1].split(",") and ln.endswith(":/")
                   for ln in inside.splitlines()), inside
        second = private_host(sys.executable, "-m", "hakube.lab", "up", "--name", name,
                              "--servers", "1", "--agents", "0")
        assert "host: mounted" not in second.stdout, "prepared once, then nothing to do"
    finally:
        down = private_host(sys.executable, "-m", "hakube.lab", "down", "--name", name, check=False)
        assert down.returncode == 0, down.stderr


def test_lab_up_stops_at_once_with_the_machine_log_when_a_machine_dies(tmp_path):
    """A machine whose first process exits: `lab up` says so with its log, long before
    the SSH timeout. The machine is made to die by emptying its /etc/machine-id, which
    hakube-init refuses (a real first-process failure, no stand-in)."""
    import time

    from hakube.lab import lifecycle, machines

    name = unique_name()
    try:
        lifecycle.up(name, servers=1, agents=0)
        lab = labstate.require(name)
        m = lab.machines[0]
        subprocess.run(["podman", "stop", "--time", "10", m.container], check=True,
                       capture_output=True)
        empty = tmp_path / "machine-id"
        empty.write_text("")
        subprocess.run(["podman", "cp", str(empty), f"{m.container}:/etc/machine-id"],
                       check=True, capture_output=True)
        started = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "hakube.lab", "up", "--name", name,
                              "--servers", "1", "--agents", "0"], capture_output=True, text=True,
                             timeout=300)
        took = time.monotonic() - started
        assert res.returncode == 1, res.stdout + res.stderr
        assert "stopped while booting" in res.stderr
        assert "/etc/machine-id is empty" in res.stderr  # the machine's own log line
        assert "hakube lab doctor" in res.stderr
        assert "Traceback" not in res.stderr
        assert took < 60 * SCALE, f"took {took:.0f} s: should not wait for the SSH timeout"
        assert machines.state(m) == "exited"
    finally:
        lifecycle.down(name)
