"""The spec: every invalid fixture is rejected with exactly the problems it declares.

Each file in fixtures/invalid/ starts with `# expect: SEVERITY PATH [TEXT]` lines; the
loader must report a problem of that severity at that path whose message or fix contains
TEXT. `line-N` as PATH means a problem reported at line N.
"""

from __future__ import annotations

import codecs
import json
import re
import resource
import subprocess
import sys
import time
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


@pytest.mark.parametrize("name", ["many-problems", "malformed", "wrong-types", "alias-bomb",
                                  "deep-nesting", "duplicate-key", "strict-types", "bad-interfaces",
                                  "security-overrides", "k3s-security-overrides"])
def test_cli_rejects_without_traceback(name: str) -> None:
    r = run_cli("validate", str(FIXTURES / "invalid" / f"{name}.yaml"))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr + r.stdout
    assert "internal error" not in r.stderr + r.stdout
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


# ---- hostile and broken input ------------------------------------------------------------


def test_alias_bomb_is_refused_fast_and_small() -> None:
    """342 bytes that expand to 9^9 strings: refused before any is constructed."""
    bomb = FIXTURES / "invalid" / "alias-bomb.yaml"
    start = time.monotonic()
    with pytest.raises(SpecError) as e:
        load(bomb)
    assert time.monotonic() - start < 2.0
    assert "alias bomb" in e.value.problems[0].message

    def cap_memory() -> None:  # 1 GiB of address space: expanding the bomb needs far more
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "hakube.cli", "validate", str(bomb)],
                       capture_output=True, text=True, preexec_fn=cap_memory, timeout=30, check=False)
    assert time.monotonic() - start < 10  # an interpreter start included
    assert r.returncode == 1 and "alias bomb" in r.stderr, r.stderr


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(SpecError) as e:
        loads("a: &a [1, *a]\n")
    assert "recursive alias" in e.value.problems[0].message


def test_modest_aliases_and_merge_keys_still_work() -> None:
    """Anchors reused a few times are fine; a merge key does not count as a duplicate key."""
    text = (FIXTURES / "specs" / "ha3.yaml").read_text().replace(
        "  ssh:\n    user: root", "  ssh: &ssh\n    user: root").replace(
        "- {name: server-2, address: 192.168.56.12, roles: [server]}",
        "- {name: server-2, address: 192.168.56.12, roles: [server], ssh: {<<: *ssh, user: admin}}")
    loaded = loads(text)
    assert loaded.cluster.spec.hosts[1].ssh.user == "admin"


def _write(tmp_path: Path, data: bytes) -> Path:
    f = tmp_path / "cluster.yaml"
    f.write_bytes(data)
    return f


SPEC_START = "apiVersion: hakube.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: t\n"


UNREADABLE = {
    "binary": (bytes(range(256)) * 8, "not a text YAML file"),
    "elf": (b"\x7fELF\x02\x01\x01" + b"\x00" * 64, "not a text YAML file"),
    "utf-16": (SPEC_START.encode("utf-16"), "UTF-16 (little-endian, as its byte-order mark says)"),
    "utf-16-be": (codecs.BOM_UTF16_BE + SPEC_START.encode("utf-16-be"), "UTF-16 (big-endian"),
    "utf-32": (SPEC_START.encode("utf-32"), "UTF-32"),
    "utf-16-no-bom": (SPEC_START.encode("utf-16-le"), "looks like UTF-16"),
    "latin-1": ("metadata: {name: café}\n".encode("latin-1"), "not valid UTF-8: byte 0xe9"),
    "deep-lists": (b"a: " + b"[" * 5000 + b"\n", "nesting too deep"),
    "deep-maps": (b"a: " + b"{b: " * 5000 + b"\n", "nesting too deep"),
    "control-char": (b"a: \"\x01\"\n", "not allowed in YAML text"),
    "huge": (b"# " + b"x" * (1 << 20) + b"\n", "larger than 1024 KiB"),
    "empty": (b"", "the file is empty"),
    "list": (b"- a\n- b\n", "must be a YAML mapping"),
    "two-documents": (b"a: 1\n---\nb: 2\n", "malformed YAML"),
}


@pytest.mark.parametrize("case", UNREADABLE)
def test_cli_refuses_unreadable_files_clearly(tmp_path: Path, case: str) -> None:
    data, message = UNREADABLE[case]
    r = run_cli("validate", str(_write(tmp_path, data)))
    assert r.returncode == 1, r.stderr
    out = r.stdout + r.stderr
    assert "Traceback" not in out and "internal error" not in out
    assert message in r.stderr, r.stderr
    assert "fix:" in r.stderr


def test_cli_refuses_a_directory(tmp_path: Path) -> None:
    r = run_cli("validate", str(tmp_path))
    assert r.returncode == 1 and "is a directory" in r.stderr and "Traceback" not in r.stderr


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    f = _write(tmp_path, codecs.BOM_UTF8 + (FIXTURES / "specs" / "ha3.yaml").read_bytes())
    assert load(f).cluster.name == "demo"


def test_deep_nesting_never_leaks_a_recursion_error() -> None:
    for text in ("a: " + "[" * 100_000, "a: " + "- " * 5000 + "x\n", "a: &x " + "[" * 30 + "]" * 30):
        try:
            loads(text)
        except SpecError:
            pass


# ---- strict types and syntax -----------------------------------------------------------------


def test_durations_in_prometheus_syntax() -> None:
    base = (FIXTURES / "specs" / "ha3.yaml").read_text()
    for good in ("1h30m", "500ms", "2w", "1y", "90s"):
        text = base.replace("      enabled: true\n    dashboard",
                            f"      enabled: true\n      scrapeInterval: {good}\n    dashboard")
        assert loads(text).cluster.spec.addons.monitoring.scrape_interval == good
    for bad_value, text_ in (("1m1h", "not a Prometheus duration"), ("0s", "is zero"),
                             ("15 s", "not a Prometheus duration"), ('"15s\\n"', "not a Prometheus duration"),
                             ("'١٥s'", "not a Prometheus duration")):
        text = base.replace("      enabled: true\n    dashboard",
                            f"      enabled: true\n      retention: {bad_value}\n    dashboard")
        with pytest.raises(SpecError) as e:
            loads(text)
        (p,) = e.value.problems
        assert p.path == "spec.addons.monitoring.retention" and text_ in p.message, str(p)
        assert p.line == text.splitlines().index(f"      retention: {bad_value}") + 1


def test_allowed_security_override_is_a_warning() -> None:
    text = (FIXTURES / "specs" / "k8s127.yaml").read_text().replace(
        'apiserverExtraArgs: {', 'securityOverrides: [kube-apiserver:anonymous-auth]\n'
        '    apiserverExtraArgs: {anonymous-auth: "true", ')
    loaded = loads(text)
    (w,) = [p for p in loaded.warnings if "anonymous-auth" in p.path]
    assert w.severity == "warning" and "allowed by spec.kubernetes.securityOverrides" in w.message
    assert w.path == "spec.kubernetes.apiserverExtraArgs.anonymous-auth" and w.line


def test_allowed_k3s_security_override_is_a_warning() -> None:
    text = (FIXTURES / "specs" / "k3s-kubevip.yaml").read_text().replace(
        'extraAgentArgs: ["--kubelet-arg=max-pods=200"]',
        'extraAgentArgs: ["--kubelet-arg=max-pods=200", "--kubelet-arg", "read-only-port=10255"]\n'
        '    securityOverrides: [kubelet:read-only-port]')
    loaded = loads(text)
    (w,) = [p for p in loaded.warnings if p.path.startswith("spec.k3s")]
    assert w.path == "spec.k3s.extraAgentArgs[2]" and "kubelet --read-only-port=10255" in w.message


def test_adding_admission_plugins_to_node_restriction_needs_no_override() -> None:
    text = (FIXTURES / "specs" / "k8s127.yaml").read_text().replace(
        'apiserverExtraArgs: {', 'apiserverExtraArgs: {enable-admission-plugins: "NodeRestriction,PodSecurity", ')
    assert not [p for p in loads(text).warnings if "admission" in p.path]


def _template_flags(path: Path) -> set[str]:
    text = path.read_text()
    return set(re.findall(r"^--([a-z0-9-]+)", text, re.MULTILINE)) | set(re.findall(r'flag\("([a-z0-9-]+)"', text))


def test_every_flag_hakube_sets_is_guarded_or_known_harmless() -> None:
    """A flag added to a unit must be classified: security (override needs securityOverrides),
    derived from the spec (never overridden), or harmless to override."""
    from hakube.spec.validate import MANAGED_FLAGS, SECURITY_FLAGS

    harmless = {"kube-apiserver": {"allow-privileged", "endpoint-reconciler-type", "goaway-chance",
                                   "kubelet-preferred-address-types",
                                   # audit log rotation: how much history, not whether
                                   "audit-log-maxage", "audit-log-maxbackup", "audit-log-maxsize"},
                "kubelet": {"pod-infra-container-image"}}
    components = Path(__file__).parents[2] / "hakube" / "components"
    for comp, unit in (("kube-apiserver", "kube_apiserver/kube-apiserver.service.j2"),
                       ("kubelet", "kubelet/kubelet.service.j2")):
        flags = _template_flags(components / unit)
        assert "anonymous-auth" in flags or comp == "kubelet"
        unknown = flags - set(SECURITY_FLAGS[comp]) - set(MANAGED_FLAGS[comp]) - harmless[comp]
        assert not unknown, f"{comp}: classify {sorted(unknown)} in hakube.spec.validate"


def test_port_table_matches_the_components() -> None:
    from hakube.components import haproxy, kube_apiserver, monitoring
    from hakube.spec import validate as v
    from hakube.topology import derive

    assert (v.HAPROXY_HEALTH_PORT, v.HAPROXY_METRICS_PORT) == (haproxy.HEALTH_PORT, haproxy.METRICS_PORT)
    assert v.ETCD_CLIENT_PORT == kube_apiserver.ETCD_CLIENT_PORT == monitoring.ETCD_CLIENT_PORT
    assert (v.PROMETHEUS_PORT, v.ALERTMANAGER_PORT, v.ALERTMANAGER_CLUSTER_PORT, v.NODE_EXPORTER_PORT,
            v.BLACKBOX_PORT) == (monitoring.PROMETHEUS_PORT, monitoring.ALERTMANAGER_PORT,
                                 monitoring.ALERTMANAGER_CLUSTER_PORT, monitoring.NODE_EXPORTER_PORT,
                                 monitoring.BLACKBOX_PORT)
    for path in VALID:
        cluster = load(path).cluster
        assert v.apiserver_port(cluster) == derive(cluster).apiserver_port, path.name


WARNS = sorted((FIXTURES / "warnings").glob("*.yaml"))


@pytest.mark.parametrize("path", WARNS, ids=lambda p: p.stem)
def test_valid_spec_warns_as_declared(path: Path) -> None:
    """Each file in fixtures/warnings/ loads, with the warnings its `# warns:` lines name."""
    loaded = load(path)
    declared = [line[len("# warns: "):].split(" ", 2) for line in path.read_text().splitlines()
                if line.startswith("# warns: ")]
    assert declared
    for sev, where, text in declared:
        assert any(p.severity == sev and p.path == where and text in f"{p.message} {p.fix}"
                   for p in loaded.warnings), [str(p) for p in loaded.warnings]
