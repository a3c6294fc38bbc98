"""`hakube reset`'s decisions: what a host had before hakube (engine/originals.py), and the
plan that puts it back (engine/reset.py). The record's shell command runs for real here,
against a folder tree in tmp_path; the lab test (tests/lab/test_day2.py) compares whole
hosts before and after."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from hakube.engine import originals, reset

from .conftest import FIXTURES, rendered, topology

CASES = FIXTURES / "steps" / "reset"


def test_the_record_command_records_each_path_once_and_copies_files(tmp_path, monkeypatch) -> None:
    root = tmp_path / "before"
    monkeypatch.setattr(originals, "ROOT", str(root))
    monkeypatch.setattr(originals, "MANIFEST", str(root / "manifest"))
    monkeypatch.setattr(originals, "COPIES", str(root / "files"))
    etc = tmp_path / "etc"
    (etc / "haproxy").mkdir(parents=True)
    (etc / "haproxy" / "haproxy.cfg").write_text("the package's own\n")
    os.chmod(etc / "haproxy" / "haproxy.cfg", 0o640)
    cand = originals.Candidates(files=(str(etc / "haproxy" / "haproxy.cfg"), str(etc / "kubernetes" / "pki" / "ca.crt")),
                                folders=(str(tmp_path / "var" / "lib" / "etcd"),))
    cmd = originals.record_command(cand, originals.Before())
    subprocess.run(["bash", "-c", cmd], check=True)
    before = originals.parse((root / "manifest").read_text())
    assert str(etc / "haproxy" / "haproxy.cfg") in before.present and str(etc) in before.present
    assert {str(etc / "kubernetes"), str(etc / "kubernetes" / "pki"), str(etc / "kubernetes" / "pki" / "ca.crt"),
            str(tmp_path / "var")} <= before.absent
    assert before.files == {str(etc / "haproxy" / "haproxy.cfg"), str(etc / "kubernetes" / "pki" / "ca.crt")}
    copy = root / "files" / str(etc / "haproxy" / "haproxy.cfg").lstrip("/")
    assert copy.read_text() == "the package's own\n" and copy.stat().st_mode & 0o777 == 0o640
    # hakube writes its files; the next run records nothing again: its files are never taken
    # for the host's own
    (etc / "kubernetes" / "pki").mkdir(parents=True)
    (etc / "kubernetes" / "pki" / "ca.crt").write_text("hakube's\n")
    assert originals.record_command(cand, before) is None
    wider = originals.Candidates(files=cand.files + (str(etc / "prometheus.yml"),), folders=cand.folders)
    again = originals.record_command(wider, before)
    assert again is not None and "ca.crt" not in again and "prometheus.yml" in again


def test_a_record_parses_and_ignores_what_it_does_not_know() -> None:
    b = originals.parse("present file /etc/haproxy/haproxy.cfg\nabsent folder /etc/kubernetes\nenabled ssh\n"
                        "disabled haproxy\nsomething-new /x\npresent\n")
    assert b.exists and b.present == {"/etc/haproxy/haproxy.cfg"} and b.absent == {"/etc/kubernetes"}
    assert b.files == {"/etc/haproxy/haproxy.cfg"} and b.enabled == {"ssh"} and b.disabled == {"haproxy"}
    assert not originals.parse(None).exists


@pytest.mark.parametrize("case", sorted(CASES.glob("*.json")), ids=lambda p: p.stem)
def test_reset_plan(case: Path) -> None:
    """Each case: a fixture spec, a host, its record (a real one where the name says so),
    and the plan expected: what stops, what comes back, what goes."""
    c = json.loads(case.read_text())
    topo = topology(c["spec"])
    h = topo.host(c["host"])
    files = {f.path for f in rendered(c["spec"]).hosts.get(h.name, [])}
    cand = originals.candidates_for(h, files, set(c.get("pki", [])))
    record = (CASES / c["record"]).read_text() if c.get("record") else None
    got = reset.plan(topo, h.name, cand, originals.parse(record)).as_dict()
    if os.environ.get("HAKUBE_UPDATE_GOLDEN") == "1":
        c["expect"] = got
        case.write_text(json.dumps(c, indent=1) + "\n")
    assert got == c["expect"]


def test_a_real_record_puts_back_the_packages_files_and_takes_away_hakubes_folders() -> None:
    got = json.loads((CASES / "server-with-a-real-record.json").read_text())["expect"]
    assert "/etc/haproxy/haproxy.cfg" in got["restore"] and "/etc/haproxy/haproxy.cfg" not in got["remove"]
    assert "/etc/kubernetes/pki/ca.key" in got["remove"]
    # the package made /var/lib/etcd: emptied, kept; hakube made /etc/kubernetes: removed, deepest first
    assert "/var/lib/etcd" in got["empty"] and "/var/lib/etcd" not in got["removeFolders"]
    folders = got["removeFolders"]
    assert folders.index("/etc/kubernetes/pki/etcd") < folders.index("/etc/kubernetes/pki") < \
        folders.index("/etc/kubernetes")
    assert got["units"].index("kubelet") < got["units"].index("containerd") < got["units"].index("etcd")
    blind = json.loads((CASES / "server-without-a-record.json").read_text())["expect"]
    assert blind["restore"] == [] and blind["removeFolders"] == [] and "/var/lib/etcd" in blind["empty"]
