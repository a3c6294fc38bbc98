"""Host preparation for lab machines: every cgroup layout, read from fixture files.

Each folder in fixtures/cgroups/ is one host as its files showed it: `proc-cgroups`
(/proc/cgroups), `mountinfo` (/proc/self/mountinfo), on cgroup v2 the root's
`cgroup.controllers` and `cgroup.subtree_control`, on a hybrid host
`unified.subtree_control`, and `existing` (the names under /sys/fs/cgroup). `expected.json`
is what hakube must conclude: the layout, the actions `lab up` takes (as sentences), and
what stays missing with why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hakube.lab import doctor, hostprep

FIXTURES = Path(__file__).parent / "fixtures" / "cgroups"
CASES = sorted(p for p in FIXTURES.iterdir() if p.is_dir())


def _opt(case: Path, name: str) -> str | None:
    f = case / name
    return f.read_text() if f.exists() else None


def plan_of(case: Path) -> hostprep.CgroupPlan:
    existing = frozenset((_opt(case, "existing") or "").split())
    return hostprep.plan((case / "proc-cgroups").read_text(), (case / "mountinfo").read_text(),
                         _opt(case, "cgroup.controllers"), _opt(case, "cgroup.subtree_control"),
                         _opt(case, "unified.subtree_control"), existing)


def test_every_layout_the_issue_names_has_a_fixture() -> None:
    names = {c.name for c in CASES}
    assert {"v1-hybrid-split-cpu-unmounted", "v1-hybrid-systemd-comounted", "v2-only",
            "v2-partly-delegated"} <= names


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_layout_plan_matches_the_fixture(case: Path) -> None:
    assert (case / "expected.json").exists(), f"{case.name} has no expected.json"
    want = json.loads((case / "expected.json").read_text())
    got = plan_of(case)
    assert got.layout == want["layout"]
    assert got.summary() == want["summary"]
    assert [a.sentence(done=False) for a in got.actions] == want["actions"]
    assert got.missing_required == want["missingRequired"]
    assert got.missing_optional == want["missingOptional"]


def test_the_reported_host_gets_its_four_hierarchies_mounted_as_the_kernel_allows() -> None:
    """The host of the issue: cpu and cpuacct separate (kept so), four free controllers."""
    p = plan_of(FIXTURES / "v1-hybrid-split-cpu-unmounted")
    mounts = [a.options for a in p.actions if a.kind == "mount-v1"]
    assert mounts == ["hugetlb", "net_cls,net_prio", "perf_event"]
    assert p.prepared["cpu"] != p.prepared["cpuacct"]  # never re-grouped
    assert p.actions[0].sentence() == "mounted cgroup v1 hierarchy hugetlb on /sys/fs/cgroup/hugetlb"


def test_a_free_controller_whose_systemd_partner_is_mounted_is_mounted_alone() -> None:
    case = FIXTURES / "v1-hybrid-split-cpu-unmounted"
    cgroups = (case / "proc-cgroups").read_text().replace("net_prio\t0", "net_prio\t9")
    mountinfo = (case / "mountinfo").read_text() + (
        "42 31 0:39 / /sys/fs/cgroup/net_prio rw,relatime - cgroup cgroup rw,net_prio\n")
    p = hostprep.plan(cgroups, mountinfo)
    assert "net_cls" in [a.options for a in p.actions if a.kind == "mount-v1"]


def test_a_controller_in_use_by_the_unified_hierarchy_is_not_moved_to_v1() -> None:
    case = FIXTURES / "v1-hybrid-split-cpu-unmounted"
    p = hostprep.plan((case / "proc-cgroups").read_text(), (case / "mountinfo").read_text(),
                      unified_subtree_control="hugetlb\n")
    assert "hugetlb" not in [a.options for a in p.actions if a.kind == "mount-v1"]
    assert "unified" in p.missing_optional["hugetlb"]


def test_a_missing_named_systemd_hierarchy_is_mounted() -> None:
    case = FIXTURES / "v1-hybrid-split-cpu-unmounted"
    mountinfo = "\n".join(line for line in (case / "mountinfo").read_text().splitlines()
                          if "name=systemd" not in line)
    p = hostprep.plan((case / "proc-cgroups").read_text(), mountinfo)
    assert hostprep.Action("mount-v1", "/sys/fs/cgroup/systemd", "none,name=systemd") in p.actions


def test_mountinfo_escapes_and_optional_fields_are_parsed() -> None:
    mounts = hostprep.parse_mountinfo(
        "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n")
    assert mounts == [hostprep.Mount("/mnt/with space", "ext3", ("rw", "noatime"),
                                     ("rw", "errors=continue"))]


def test_the_latest_mount_on_a_mountpoint_is_the_one_seen() -> None:
    case = FIXTURES / "v2-only"
    # a tmpfs mounted over the cgroup2 root hides it
    mountinfo = (case / "mountinfo").read_text() + (
        "50 26 0:50 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n")
    assert hostprep.plan((case / "proc-cgroups").read_text(), mountinfo).layout == "v1"


@pytest.mark.parametrize("case,verdict", [("v1-hybrid-split-cpu-unmounted", "ok"),
                                          ("v2-partly-delegated", "fail"), ("no-cgroups", "fail"),
                                          ("v1-legacy-readonly-hidden-hierarchy", "warn")])
def test_doctor_verdicts_on_cgroup_layouts(case: str, verdict: str) -> None:
    checks = doctor.check_cgroups(plan_of(FIXTURES / case))
    worst = {c.verdict for c in checks}
    got = "fail" if "fail" in worst else "warn" if "warn" in worst else "ok"
    assert got == verdict
    for c in checks:
        if c.verdict != "ok":
            assert c.fix, f"{c.name} has no fix"


def test_doctor_says_what_lab_up_would_prepare() -> None:
    checks = doctor.check_cgroups(plan_of(FIXTURES / "v1-hybrid-split-cpu-unmounted"))
    prep = next(c for c in checks if c.name == "cgroup preparation")
    assert prep.found.startswith("lab up will mount cgroup v1 hierarchy hugetlb")
