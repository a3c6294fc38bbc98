"""The spec: every invalid fixture is rejected with exactly the problems it declares.

Each file in fixtures/invalid/ starts with `# expect: SEVERITY PATH [TEXT]` lines; the
loader must report a problem of that severity at that path whose message or fix contains
TEXT. `line-N` as PATH means a problem reported at line N.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hakube.spec import SpecError, load, loads
from hakube.spec.example import example

FIXTURES = Path(__file__).parent / "fixtures"
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))
VALID = sorted((FIXTURES / "specs").glob("*.yaml"))


def expectations(path: Path) -> list[tuple[str, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("# expect: "):
            sev, where, *text = line[len("# expect: "):].split(" ", 2)
            out.append((sev, where, text[0] if text else ""))
    return out


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_spec_reports_every_declared_problem(path: Path) -> None:
    with pytest.raises(SpecError) as e:
        load(path)
    problems = e.value.problems
    expected = expectations(path)
    assert expected, f"{path.name} declares no expectation"
    for sev, where, text in expected:
        def matches(p):
            at = p.line == int(where[5:]) if where.startswith("line-") else p.path == where
            return p.severity == sev and at and text in f"{p.message} {p.fix}"
        assert any(matches(p) for p in problems), \
            f"{path.name}: no {sev} at {where} containing {text!r}; got:\n" + "\n".join(map(str, problems))
    # every problem points into the file, so the user can find it
    assert all(p.line for p in problems), [str(p) for p in problems if not p.line]


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_fixtures_load(path: Path) -> None:
    load(path)


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(SpecError) as e:
        load(FIXTURES / "invalid" / "many-problems.yaml")
    assert len(e.value.errors) >= 4


def test_typo_is_one_problem_with_a_suggestion() -> None:
    with pytest.raises(SpecError) as e:
        load(FIXTURES / "invalid" / "unknown-key.yaml")
    assert [(p.path, p.fix) for p in e.value.problems] == [
        ("spec.hosts[0].adress", "did you mean 'address'?")]


def test_two_servers_allowed_explicitly_is_a_warning() -> None:
    text = (FIXTURES / "invalid" / "two-servers.yaml").read_text().replace(
        "endpoint: {vip: 10.0.0.100}", "endpoint: {vip: 10.0.0.100}\n    allowTwoServers: true")
    loaded = loads(text)
    assert [p.severity for p in loaded.warnings if p.path == "spec.hosts"] == ["warning"]
    assert "tolerate no failure" in loaded.warnings[0].message


def test_four_servers_warn_how_many_failures_they_tolerate() -> None:
    text = (FIXTURES / "invalid" / "two-servers.yaml").read_text().replace(
        "    - {name: s2, address: 10.0.0.12, roles: [server]}",
        "\n".join(f"    - {{name: s{i}, address: 10.0.0.1{i}, roles: [server]}}" for i in range(2, 5)))
    loaded = loads(text)
    (w,) = [p for p in loaded.warnings if p.path == "spec.hosts"]
    assert "4 servers tolerate 1 failure(s)" in w.message and w.severity == "warning"


def test_example_written_by_init_is_valid(tmp_path: Path) -> None:
    f = tmp_path / "cluster.yaml"
    f.write_text(example())
    loaded = load(f)
    assert [h.name for h in loaded.cluster.servers] == ["server-1", "server-2", "server-3"]
    assert not [p for p in loaded.warnings if p.severity == "error"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hakube.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("name", ["many-problems", "malformed", "wrong-types"])
def test_cli_rejects_without_traceback(name: str) -> None:
    r = run_cli("validate", str(FIXTURES / "invalid" / f"{name}.yaml"))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr + r.stdout
    assert "error" in r.stderr


def test_cli_validate_json() -> None:
    r = run_cli("validate", "--json", str(FIXTURES / "invalid" / "duplicate-hosts.yaml"))
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["valid"] is False
    assert {p["path"] for p in data["problems"]} == {"spec.hosts[1].name", "spec.hosts[2].address"}


def test_cli_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    r = run_cli("plan", str(tmp_path / "nope.yaml"))
    assert r.returncode == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_cli_render_writes_nothing_for_an_invalid_spec(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run_cli("render", str(FIXTURES / "invalid" / "vip-is-host.yaml"), "-o", str(out))
    assert r.returncode == 1 and not out.exists()
