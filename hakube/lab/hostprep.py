"""The host's cgroup layout, read and prepared the way systemd would have at boot.

Lab machines are podman containers with their own cgroup namespace. On a cgroup v1 host
the kernel creates a NEW v1 hierarchy only from the initial cgroup namespace: a controller
the host enables but never mounts (`/proc/cgroups` hierarchy 0) cannot be mounted from
inside a machine ("permission denied"), and the machine's first process cannot finish
setting up. systemd as the host's PID 1 would have mounted every enabled controller at
boot; hosts without it (or with a trimmed mount set) do not. So before machines start,
`lab up` reads the layout and mounts what is missing, co-mounted as the kernel already
groups them, and says so in one line per change.

Everything here is a pure function of file texts (`/proc/cgroups`, `/proc/self/mountinfo`,
and on cgroup v2 the root's `cgroup.controllers` and `cgroup.subtree_control`), so every
layout is a unit test over fixture files (tests/unit/fixtures/cgroups/). `apply` is the
only part that touches the host.

Layouts:
    v1       tmpfs on /sys/fs/cgroup, one cgroup mount per hierarchy (legacy)
    hybrid   as v1, plus cgroup2 on /sys/fs/cgroup/unified (systemd's default until 247)
    v2       cgroup2 on /sys/fs/cgroup (current Debian, Ubuntu and Fedora)
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = "/sys/fs/cgroup"

# What the kubelet (1.20, cgroupfs driver) and runc need of the cgroup controllers.
# Required: the kubelet refuses to start without them (cpu, cpuacct, cpuset, memory) or
# runc cannot confine containers (devices, freezer, pids). Optional: limits that pods may
# ask for; missing ones are reported, not fatal.
REQUIRED_V1 = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "pids")
OPTIONAL_V1 = ("blkio", "hugetlb", "net_cls", "net_prio", "perf_event")
# On cgroup v2, cpuacct, devices and freezer are built in (BPF and cgroup.freeze).
REQUIRED_V2 = ("cpu", "cpuset", "memory", "pids")
OPTIONAL_V2 = ("io", "hugetlb")

# How systemd co-mounts v1 controllers that the kernel has not grouped yet
# (src/core/cgroup.c, JoinControllers, later built in): cpu with cpuacct, net_cls with
# net_prio, and a symlink for each name (/sys/fs/cgroup/cpu -> cpu,cpuacct).
SYSTEMD_JOINS = (("cpu", "cpuacct"), ("net_cls", "net_prio"))

MOUNT_OPTIONS = "rw,nosuid,nodev,noexec,relatime"


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo, the parts that matter here."""

    mountpoint: str
    fstype: str
    options: tuple[str, ...]        # per-mount options (rw, ro, nosuid, ...)
    super_options: tuple[str, ...]  # per-superblock ones; for cgroup v1 the controllers

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


@dataclass(frozen=True)
class Controller:
    name: str
    hierarchy: int  # 0: in no v1 hierarchy (free, or bound to cgroup v2)
    enabled: bool


@dataclass(frozen=True)
class Action:
    """One change to the host, with the sentence that reports it."""

    kind: str         # "mount-v1", "symlink", "enable-v2", "remount-rw", "remount-ro"
    target: str       # the path acted on
    options: str = ""  # for mounts: the controllers (and name=) to mount; for v2: "+cpu ..."

    def sentence(self, done: bool = True) -> str:
        """What was done (`done`), or what will be done."""
        verb = {"mount-v1": ("mounted", "mount"), "symlink": ("linked", "link"),
                "enable-v2": ("enabled", "enable"), "remount-rw": ("made", "make"),
                "remount-ro": ("made", "make")}[self.kind][0 if done else 1]
        if self.kind == "mount-v1":
            return f"{verb} cgroup v1 hierarchy {self.options} on {self.target}"
        if self.kind == "symlink":
            return f"{verb} {self.target} -> {self.options}"
        if self.kind == "enable-v2":
            return f"{verb} cgroup v2 controllers {self.options} in {self.target}"
        if self.kind == "remount-rw":
            return f"{verb} {self.target} writable for the mounts"
        return f"{verb} {self.target} read-only again"


@dataclass
class CgroupPlan:
    """The layout as read, and what to do so lab machines can run on it."""

    layout: str                                       # v1, hybrid, v2, none
    # v1: controller -> mountpoint, as read (`mounted`) and once the actions are done
    mounted: dict[str, str] = field(default_factory=dict)
    prepared: dict[str, str] = field(default_factory=dict)
    available_v2: tuple[str, ...] = ()                # cgroup.controllers of the root (v2)
    actions: list[Action] = field(default_factory=list)
    # controllers that stay missing after the actions, with why
    missing_required: dict[str, str] = field(default_factory=dict)
    missing_optional: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One sentence describing the layout, for doctor and logs."""
        if self.layout == "none":
            return "no cgroup file system is mounted on /sys/fs/cgroup"
        if self.layout == "v2":
            return (f"cgroup v2 only (cgroup2 on {CGROUP_ROOT}); controllers: "
                    f"{' '.join(self.available_v2) or 'none'}")
        groups: dict[str, list[str]] = {}
        for ctrl, where in sorted(self.mounted.items()):
            groups.setdefault(where, []).append(ctrl)
        hierarchies = ", ".join(",".join(v) for _, v in sorted(groups.items()))
        kind = "cgroup v1 with a hybrid unified mount" if self.layout == "hybrid" else "cgroup v1"
        return f"{kind}; hierarchies: {hierarchies or 'none'}"


# ---- parsing ----------------------------------------------------------------------------


def parse_proc_cgroups(text: str) -> dict[str, Controller]:
    """/proc/cgroups: `subsys_name hierarchy num_cgroups enabled` per line."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#") or len(parts) < 4:
            continue
        try:
            out[parts[0]] = Controller(parts[0], int(parts[1]), parts[3] == "1")
        except ValueError:
            continue
    return out


def _unescape(field_text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040 ...)
    return field_text.encode().decode("unicode_escape") if "\\" in field_text else field_text


def parse_mountinfo(text: str) -> list[Mount]:
    """/proc/self/mountinfo (proc(5)): ID PARENT MAJ:MIN ROOT POINT OPTS [TAGS...] - FS SRC SUPER."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf, rf = left.split(), right.split()
        if len(lf) < 6 or len(rf) < 2:
            continue
        super_opts = tuple(rf[2].split(",")) if len(rf) > 2 else ()
        out.append(Mount(_unescape(lf[4]), rf[0], tuple(lf[5].split(",")), super_opts))
    return out


def _visible(mounts: list[Mount]) -> dict[str, Mount]:
    """The mount that is on top at each mountpoint (a later mount hides an earlier one)."""
    top: dict[str, Mount] = {}
    for m in mounts:
        top[m.mountpoint] = m
    return top


# ---- the decision -----------------------------------------------------------------------


def plan(proc_cgroups: str, mountinfo: str, v2_controllers: str | None = None,
         v2_subtree_control: str | None = None, unified_subtree_control: str | None = None,
         existing_paths: frozenset[str] = frozenset()) -> CgroupPlan:
    """What this host's cgroup layout is and what to change so lab machines boot on it.

    `v2_controllers` and `v2_subtree_control` are the root cgroup's files on a v2 host;
    `unified_subtree_control` is /sys/fs/cgroup/unified/cgroup.subtree_control on a hybrid
    host (a controller enabled there is in use by cgroup v2 and cannot move to v1);
    `existing_paths` are the names under /sys/fs/cgroup that already exist (so a symlink
    is made only where nothing is).
    """
    controllers = parse_proc_cgroups(proc_cgroups)
    visible = _visible(parse_mountinfo(mountinfo))
    root = visible.get(CGROUP_ROOT)
    if root is None:
        return CgroupPlan("none", missing_required={c: "no cgroup file system on /sys/fs/cgroup"
                                                    for c in REQUIRED_V1})
    if root.fstype == "cgroup2":
        return _plan_v2(controllers, v2_controllers, v2_subtree_control)
    if root.fstype != "tmpfs":
        return CgroupPlan("none", missing_required={
            c: f"/sys/fs/cgroup is {root.fstype}, neither cgroup2 nor a tmpfs of v1 hierarchies"
            for c in REQUIRED_V1})

    v1 = {p: m for p, m in visible.items() if m.fstype == "cgroup" and
          os.path.dirname(p) == CGROUP_ROOT}
    hybrid = any(m.fstype == "cgroup2" and os.path.dirname(p) == CGROUP_ROOT
                 for p, m in visible.items())
    result = CgroupPlan("hybrid" if hybrid else "v1")
    for point, m in v1.items():
        for opt in m.super_options:
            if opt in controllers:
                result.mounted[opt] = point
    result.prepared = dict(result.mounted)
    in_v2 = set((unified_subtree_control or "").split())

    # Group the enabled, unmounted controllers into the hierarchies to mount: a hierarchy
    # that exists (number > 0, mounted elsewhere) must be mounted with exactly its own set;
    # free ones (0) are grouped as systemd groups them.
    todo: dict[str, list[str]] = {}
    for c in controllers.values():
        if not c.enabled or c.name in result.prepared:
            continue
        if c.hierarchy == 0 and c.name in in_v2:
            why = "in use by the cgroup v2 (unified) hierarchy, so it cannot be mounted as v1"
            (result.missing_required if c.name in REQUIRED_V1 else result.missing_optional)[c.name] = why
            continue
        key = f"h{c.hierarchy}" if c.hierarchy else _join_key(c.name, controllers, result.prepared, in_v2)
        todo.setdefault(key, []).append(c.name)

    for key, names in sorted(todo.items(), key=lambda kv: sorted(kv[1])):
        names.sort(key=_systemd_order)
        opts = ",".join(names)
        result.actions.append(Action("mount-v1", f"{CGROUP_ROOT}/{opts}", opts))
        for n in names:
            result.prepared[n] = f"{CGROUP_ROOT}/{opts}"
        if len(names) > 1:
            for n in names:
                if n not in existing_paths and f"{CGROUP_ROOT}/{n}" not in v1:
                    result.actions.append(Action("symlink", f"{CGROUP_ROOT}/{n}", opts))

    if not any("name=systemd" in m.super_options for m in v1.values()):
        # podman's --systemd=always and systemd in the machine expect the named hierarchy
        result.actions.append(Action("mount-v1", f"{CGROUP_ROOT}/systemd", "none,name=systemd"))

    for name in REQUIRED_V1:
        if name not in result.prepared and name not in result.missing_required:
            c = controllers.get(name)
            result.missing_required[name] = ("not built into this kernel" if c is None
                                             else "disabled on the kernel command line")
    for name in OPTIONAL_V1:
        if name not in result.prepared and name not in result.missing_optional:
            c = controllers.get(name)
            if c is not None and c.enabled:
                continue
            result.missing_optional[name] = ("not built into this kernel" if c is None
                                             else "disabled on the kernel command line")

    if any(a.kind == "mount-v1" for a in result.actions) and root.read_only:
        result.actions.insert(0, Action("remount-rw", CGROUP_ROOT))
        result.actions.append(Action("remount-ro", CGROUP_ROOT))
    return result


def _systemd_order(name: str) -> tuple[int, str]:
    # "cpu,cpuacct" and "net_cls,net_prio", as systemd names them
    for group in SYSTEMD_JOINS:
        if name in group:
            return (group.index(name), name)
    return (0, name)


def _join_key(name: str, controllers: dict[str, Controller], mounted: dict[str, str],
              in_v2: set[str]) -> str:
    """The group a free controller is mounted in: its systemd partner's when that partner
    is free too, else its own."""
    for group in SYSTEMD_JOINS:
        if name in group:
            partners = [p for p in group if p != name]
            if all(p in controllers and controllers[p].enabled and controllers[p].hierarchy == 0
                   and p not in mounted and p not in in_v2 for p in partners):
                return "+".join(group)
    return name


def _plan_v2(controllers: dict[str, Controller], available: str | None,
             subtree: str | None) -> CgroupPlan:
    """cgroup v2: nothing to mount (podman mounts the machine's own cgroup2, as kind's node
    entrypoint expects); the controllers the kubelet needs must be available in the root
    and enabled for its children, as systemd's delegation would do."""
    avail = tuple((available or "").split())
    enabled = set((subtree or "").split())
    result = CgroupPlan("v2", available_v2=avail)
    missing = [c for c in (*REQUIRED_V2, *OPTIONAL_V2) if c in avail and c not in enabled]
    if missing:
        result.actions.append(Action("enable-v2", f"{CGROUP_ROOT}/cgroup.subtree_control",
                                     " ".join(f"+{c}" for c in missing)))
    for name in REQUIRED_V2:
        if name not in avail:
            result.missing_required[name] = _v2_why(name, controllers)
    for name in OPTIONAL_V2:
        if name not in avail:
            result.missing_optional[name] = _v2_why(name, controllers)
    return result


def _v2_why(name: str, controllers: dict[str, Controller]) -> str:
    c = controllers.get(name)
    if c is None and name != "io":
        return "not built into this kernel"
    if c is not None and not c.enabled:
        return "disabled on the kernel command line"
    if c is not None and c.hierarchy != 0:
        return f"bound to cgroup v1 hierarchy {c.hierarchy}, so cgroup v2 cannot use it"
    return "not delegated to this cgroup by its parent"


# ---- reading and applying on this host --------------------------------------------------


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def read_host() -> CgroupPlan:
    """The plan for this host, read from its own files."""
    try:
        existing = frozenset(os.listdir(CGROUP_ROOT))
    except OSError:
        existing = frozenset()
    return plan(_read("/proc/cgroups") or "", _read("/proc/self/mountinfo") or "",
                _read(f"{CGROUP_ROOT}/cgroup.controllers"),
                _read(f"{CGROUP_ROOT}/cgroup.subtree_control"),
                _read(f"{CGROUP_ROOT}/unified/cgroup.subtree_control"),
                existing)


class PrepareError(Exception):
    """A change the plan needs could not be made; the message says which and why."""


def apply(p: CgroupPlan) -> list[str]:
    """Carry out the plan's actions on this host; return one sentence per change made."""
    done = []
    for a in p.actions:
        if a.kind in ("remount-rw", "remount-ro"):
            mode = "rw" if a.kind == "remount-rw" else "ro"
            _run(["mount", "-o", f"remount,{mode}", a.target], a)
        elif a.kind == "mount-v1":
            os.makedirs(a.target, exist_ok=True)
            _run(["mount", "-t", "cgroup", "-o", f"{MOUNT_OPTIONS},{a.options}", "cgroup",
                  a.target], a)
        elif a.kind == "symlink":
            if not os.path.lexists(a.target):
                os.symlink(a.options, a.target)
        elif a.kind == "enable-v2":
            for ctrl in a.options.split():
                try:
                    Path(a.target).write_text(ctrl)
                except OSError as e:
                    raise PrepareError(f"cannot enable {ctrl[1:]} in {a.target}: {e.strerror}") from None
        done.append(a.sentence())
    return done


def _run(cmd: list[str], a: Action) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise PrepareError(f"cannot {a.sentence().replace('mounted', 'mount', 1)}: "
                           f"{(res.stderr or res.stdout).strip()}")


# ---- inotify ----------------------------------------------------------------------------

# Every lab machine's processes are this host's root user, and inotify instances and
# watches are limited per user across the whole host: systemd, containerd and the kubelet
# of a few dozen machines exhaust the defaults (128 instances), and the kubelet then fails
# with "too many open files" and its node never turns Ready. kind documents the same fix.
INOTIFY_MINIMUMS = {"fs/inotify/max_user_instances": 8192, "fs/inotify/max_user_watches": 524288}


def inotify_limits() -> dict[str, int | None]:
    """The current limits (None where unreadable)."""
    out: dict[str, int | None] = {}
    for key in INOTIFY_MINIMUMS:
        text = _read(f"/proc/sys/{key}")
        out[key] = int(text) if text and text.strip().isdigit() else None
    return out


def raise_inotify_limits() -> list[str]:
    """Raise (never lower) the host's inotify limits to what many lab machines need."""
    changed = []
    for key, minimum in INOTIFY_MINIMUMS.items():
        path = f"/proc/sys/{key}"
        try:
            with open(path) as fh:
                current = int(fh.read())
            if current < minimum:
                with open(path, "w") as fh:
                    fh.write(str(minimum))
                changed.append(f"raised {key.replace('/', '.')} from {current} to {minimum}")
        except OSError as e:
            raise PrepareError(f"cannot read or raise {path} ({e.strerror}); lab machines need at "
                               f"least {minimum}: run `sysctl -w {key.replace('/', '.')}={minimum}`") from None
    return changed
