"""Fixtures for lab tests: real machines (podman + systemd) on this host, as root.

Every lab here is named `hktest-<random>` so it never collides with a user's lab, and is
torn down even when a test fails. On failure the journal of every machine is saved under
the test session's tmp folder first (the evidence outlives the machines).
HAKUBE_KEEP_LAB=1 keeps the labs for inspection (the one keep switch, labkit.py reads it
too); HAKUBE_TIMEOUT_SCALE stretches every timeout on slow machines, hakube's own gates
included (hakube/timeouts.py).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from hakube import timeouts
from hakube.lab import labstate, machines, ssh
from hakube.lab.labstate import Lab

from . import labkit

SCALE = timeouts.scale()


def pytest_collection_modifyitems(config, items):
    reason = None
    if os.geteuid() != 0:
        reason = "lab tests need root (they create interfaces and privileged containers)"
    elif not shutil.which("podman") or not shutil.which("nft"):
        reason = "lab tests need podman and nftables (scripts/setup.sh)"
    here = Path(__file__).parent
    for item in items:
        if Path(item.fspath).is_relative_to(here):
            item.add_marker(pytest.mark.lab)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def lab_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `hakube lab ARGS` (the lab's typer app, as the main CLI mounts it)."""
    res = subprocess.run([sys.executable, "-m", "hakube.lab", *args], capture_output=True,
                         text=True, timeout=1800 * SCALE)
    if check and res.returncode != 0:
        raise AssertionError(f"hakube lab {' '.join(args)} failed ({res.returncode}):\n"
                             f"{res.stdout}\n{res.stderr}")
    return res


# `hakube lab up` output of each lab the fixtures created, by lab name.
UP_OUTPUT: dict[str, subprocess.CompletedProcess[str]] = {}


def unique_name() -> str:
    return f"hktest-{secrets.token_hex(3)}"


def save_evidence(lab: Lab, dest: Path) -> None:
    """Journal and podman log of every machine, and the lab's record, into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "state.json").write_text(lab.model_dump_json(indent=2))
    for m in lab.machines:
        # The journal lives on a volume: read it even from a stopped machine through podman
        # when SSH cannot reach it.
        if machines.state(m) == "running":
            res = ssh.run(lab, m, "journalctl --no-pager -o short-precise", timeout=60, check=False)
            text = res.stdout or res.stderr
        else:
            text = f"(machine {machines.state(m)}: journal not read)"
        (dest / f"{m.name}.journal.txt").write_text(text)
        logs = subprocess.run(["podman", "logs", m.container], capture_output=True, text=True)
        (dest / f"{m.name}.podman-logs.txt").write_text(logs.stdout + logs.stderr)


@contextmanager
def temporary_lab(name: str, servers: int, agents: int, evidence_dir, failed=lambda: False):
    """Create lab `name` through the CLI and yield its record; always remove it afterwards.

    Evidence (journals, podman logs, record) is saved into `evidence_dir()` first when
    the body raised or `failed()` says a test using the lab failed.
    """
    broke = False
    try:
        UP_OUTPUT[name] = lab_cli("up", "--name", name, "--servers", str(servers),
                                  "--agents", str(agents))
        yield labstate.require(name)
    except BaseException:
        broke = True
        raise
    finally:
        record = labstate.load(name)
        if record and (broke or failed()):
            dest = evidence_dir()
            try:
                save_evidence(record, dest)
                print(f"\nlab {name}: evidence saved in {dest}", file=sys.stderr)
            except Exception as e:  # evidence is best effort; the teardown must still run
                print(f"\nlab {name}: saving evidence failed: {e}", file=sys.stderr)
        if os.environ.get("HAKUBE_KEEP_LAB") == "1":
            print(f"\nlab {name} kept (HAKUBE_KEEP_LAB=1)", file=sys.stderr)
        else:
            lab_cli("down", "--name", name, check=False)


@pytest.fixture(scope="module")
def lab(request, tmp_path_factory):
    """A lab of 3 servers and 2 agents, shared by a module's tests (each leaves it healthy)."""
    name = unique_name()
    failed_before = request.session.testsfailed
    with temporary_lab(name, 3, 2,
                       evidence_dir=lambda: tmp_path_factory.mktemp(f"evidence-{name}"),
                       failed=lambda: request.session.testsfailed > failed_before) as lab:
        yield lab


# ---- the default layout's lab, shared by test_up.py and test_up_chaos.py ----------------
# Both need the default layout (3 servers, agents); one lab and one cold deploy serve both
# (minutes of CI). test_up.py runs first (file order) and ends with a cluster deployed from
# scratch after its reset, which test_up_chaos.py then breaks in every way it knows. The lab
# goes as soon as the next test belongs to neither module, so it never loads the 2 cores
# under the modules after them.
DEFAULT_LAB = "hktest-up"
SHARING = ("test_up.py", "test_up_chaos.py")
_SHARED: dict = {}


@pytest.fixture(scope="module")
def default_lab(request, tmp_path_factory):
    """The lab of test_up.py and test_up_chaos.py: 5 servers and 2 agents; yields (lab,
    path of its cluster.yaml, naming all 7). Made by the first module that asks (a module
    scope, not a session one: pytest would keep handing out a session value after the
    hook below removed the lab), kept for the other, removed at the end of the session
    at the latest."""
    if "lab" not in _SHARED:
        stack = ExitStack()
        _SHARED["lab"] = stack.enter_context(labkit.lab_cluster(
            DEFAULT_LAB, servers=5, agents=2, logs=tmp_path_factory.mktemp("evidence-default-lab")))
        _SHARED["stack"] = stack
        request.session.config.add_cleanup(_close_default_lab)
    return _SHARED["lab"]


def _close_default_lab() -> None:
    stack = _SHARED.pop("stack", None)
    _SHARED.pop("lab", None)
    if stack is not None:
        stack.close()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    if "stack" in _SHARED and (nextitem is None or Path(nextitem.fspath).name not in SHARING):
        _close_default_lab()


# ---- time per module: CI's budget stays visible ---------------------------------------
# first start and last finish of each lab module's tests (its shared lab's set-up and
# teardown fall inside: they run in its first and last test's protocol)
_MODULE_SPAN: dict[str, list[float]] = {}


def pytest_runtest_logstart(nodeid, location):
    span = _MODULE_SPAN.setdefault(location[0], [time.monotonic(), 0.0])
    span[1] = time.monotonic()


def pytest_runtest_logfinish(nodeid, location):
    _MODULE_SPAN[location[0]][1] = time.monotonic()


def pytest_terminal_summary(terminalreporter):
    lab_modules = {m: s for m, s in _MODULE_SPAN.items() if m.startswith("tests/lab/")}
    if not lab_modules:
        return
    terminalreporter.section("time per lab module")
    for module, (start, end) in lab_modules.items():
        terminalreporter.write_line(f"{end - start:8.1f} s  {module}")
    total = sum(end - start for start, end in lab_modules.values())
    terminalreporter.write_line(f"{total:8.1f} s  all lab modules")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Keep each phase's report on the test item: fixtures read it to know a test failed.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    if report.failed and report.when in ("setup", "call"):
        _save_active_evidence(item)
    return report


def _save_active_evidence(item) -> None:
    """Every live deploy lab's journals and run logs, under this test's evidence folder."""
    if not labkit.ACTIVE:
        return
    base = item.config._tmp_path_factory.getbasetemp() / "evidence" / item.name[:80]
    for name, lab in list(labkit.ACTIVE.items()):
        try:
            labkit.save_logs(lab, base / name)
            print(f"\n{item.nodeid}: evidence of lab {name} saved in {base / name}", file=sys.stderr)
        except Exception as e:  # evidence is best effort: the test's own failure is what counts
            print(f"\n{item.nodeid}: saving evidence of lab {name} failed: {e}", file=sys.stderr)


@pytest.fixture
def another_lab(request, tmp_path_factory):
    """A second, small lab (1 server, 1 agent) created on demand: `another_lab()`."""
    stack = ExitStack()

    def failed() -> bool:
        rep = getattr(request.node, "rep_call", None)
        return rep is not None and rep.failed

    def create():
        name = unique_name()
        return stack.enter_context(temporary_lab(
            name, 1, 1, evidence_dir=lambda: tmp_path_factory.mktemp(f"evidence-{name}"),
            failed=failed))

    with stack:
        yield create


# ---- probes ------------------------------------------------------------------------------


def tcp_open(address: str, port: int = 22, timeout: float = 2.0) -> bool:
    """Can this host open a TCP connection to address:port?"""
    try:
        with socket.create_connection((address, port), timeout=timeout * SCALE):
            return True
    except OSError:
        return False


def reaches(lab: Lab, src: str, dst: str) -> bool:
    """Can machine `src` reach machine `dst` (ICMP echo and a TCP connect to sshd)?"""
    target = str(lab.machine(dst).address)
    cmd = (f"ping -c 1 -W {max(1, round(2 * SCALE))} {target} >/dev/null 2>&1 && "
           f"python3 -c \"import socket; socket.create_connection(('{target}', 22), "
           f"timeout={2 * SCALE})\"")
    return ssh.run(lab, lab.machine(src), cmd, timeout=30 * SCALE, check=False).returncode == 0


def cannot_reach(lab: Lab, src: str, dst: str) -> bool:
    """Neither ping nor a TCP connect gets from `src` to `dst`."""
    target = str(lab.machine(dst).address)
    ping = ssh.run(lab, lab.machine(src), f"ping -c 2 -W 1 {target}", timeout=30 * SCALE,
                   check=False)
    tcp = ssh.run(lab, lab.machine(src),
                  f"python3 -c \"import socket; socket.create_connection(('{target}', 22), "
                  f"timeout=2)\"", timeout=30 * SCALE, check=False)
    return ping.returncode != 0 and tcp.returncode != 0


def on(lab: Lab, machine: str, command: str) -> str:
    """Run a command on a machine; its stdout, stripped."""
    return ssh.run(lab, lab.machine(machine), command, timeout=120 * SCALE).stdout.strip()


def eventually(check, timeout: float = 30, interval: float = 0.5):
    deadline = time.monotonic() + timeout * SCALE
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


__all__ = ["UP_OUTPUT", "SCALE", "cannot_reach", "eventually", "lab_cli", "on", "reaches",
           "tcp_open", "temporary_lab"]
