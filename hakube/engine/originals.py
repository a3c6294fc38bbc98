"""What a host had before hakube changed it: recorded before each run's first change,
put back by `hakube reset`.

`hakube reset` must leave a host as it was before the first `up`, not as a clean Debian
guesses it was: a package's own config file that hakube overwrote comes back with its
content, a folder that existed stays (emptied of hakube's data), one that hakube created
goes, a unit the host had enabled stays enabled. Guessing any of these wrong either
leaves hakube's traces or deletes something that was the user's.

So every run, before anything changes (the facts step), each host records every path
hakube may write that it has not recorded yet: `present file PATH` (copied aside, owner
and mode kept), `absent file PATH`, `present folder PATH` or `absent folder PATH`; and
each unit hakube may enable: `enabled UNIT` or `disabled UNIT`. The first answer stays: a later run never records a
path again, so what hakube wrote is never taken for the host's own. The record lives in
/var/lib/hakube/before (root only) and goes with the rest at reset.

Example of the record:
    present file /etc/haproxy/haproxy.cfg
    absent folder /etc/kubernetes
    disabled haproxy
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from .. import paths
from ..topology import HostPlan
from . import services

if TYPE_CHECKING:
    from .context import Deploy

ROOT = f"{paths.STATE_DIR}/before"
MANIFEST = f"{ROOT}/manifest"
COPIES = f"{ROOT}/files"  # the original files, under their own absolute path


@dataclass(frozen=True)
class Before:
    """A host's record, parsed: which paths existed, which units were enabled."""

    present: frozenset[str] = frozenset()
    absent: frozenset[str] = frozenset()
    files: frozenset[str] = frozenset()  # the recorded paths that are files hakube writes
    enabled: frozenset[str] = frozenset()
    disabled: frozenset[str] = frozenset()
    exists: bool = False  # False: no record (a host deployed by a hakube without one)

    @property
    def paths(self) -> frozenset[str]:
        return self.present | self.absent

    @property
    def units(self) -> frozenset[str]:
        return self.enabled | self.disabled


def parse(text: str | None) -> Before:
    """The manifest's lines; unknown lines are ignored (a newer hakube may add kinds)."""
    if text is None:
        return Before()
    kinds: dict[str, set[str]] = {k: set() for k in ("present", "absent", "files", "enabled", "disabled")}
    for line in text.splitlines():
        kind, _, value = line.partition(" ")
        if kind in ("present", "absent"):
            what, _, value = value.partition(" ")
            if what not in ("file", "folder") or not value:
                continue
            if what == "file":
                kinds["files"].add(value)
        if kind in kinds and value:
            kinds[kind].add(value)
    return Before(*(frozenset(kinds[k]) for k in ("present", "absent", "files", "enabled", "disabled")),
                  exists=True)


def ancestors(path: str) -> list[str]:
    """The folders above `path`, nearest first, without "/": /etc/kubernetes/pki/ca.crt ->
    /etc/kubernetes/pki, /etc/kubernetes, /etc."""
    return [str(p) for p in PurePosixPath(path).parents if str(p) != "/"]


@dataclass(frozen=True)
class Candidates:
    """Everything hakube may create on a host: files it writes, folders its services fill
    (data, state, logs), and the units it enables."""

    files: tuple[str, ...]
    folders: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    every_path: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        seen: dict[str, None] = {}
        for p in (*self.files, *self.folders):
            for x in (p, *ancestors(p)):
                seen.setdefault(x, None)
        object.__setattr__(self, "every_path", tuple(seen))


def record_command(c: Candidates, known: Before) -> str | None:
    """The shell command that records what `known` does not hold yet (None: nothing new).
    Files are copied aside (`cp -a`: owner and mode kept); folders are recorded, never copied."""
    files = set(c.files)
    lines = []
    for p in c.every_path:
        if p in known.paths:
            continue
        q = shlex.quote(p)
        dest = COPIES + p
        copy = f" && mkdir -p {shlex.quote(str(PurePosixPath(dest).parent))} && cp -a {q} {shlex.quote(dest)}"
        what, copy = ("file", copy) if p in files else ("folder", "")
        lines.append(f"if [ -e {q} ] || [ -L {q} ]; then echo present {what} {q}{copy}; "
                     f"else echo absent {what} {q}; fi")
    for u in c.units:
        if u in known.units:
            continue
        q = shlex.quote(u)
        lines.append(f"if systemctl is-enabled --quiet {q} 2>/dev/null; then echo enabled {q}; "
                     f"else echo disabled {q}; fi")
    if not lines:
        return None
    body = "; ".join(lines)
    return (f"set -e; umask 077; mkdir -p {COPIES}; {{ {body}; }} > {ROOT}/new; "
            f"cat {ROOT}/new >> {MANIFEST}; rm -f {ROOT}/new")


# -- what hakube may create on a host ---------------------------------------------------------

# Newest layer first: what depends on a unit stops before it.
STOP_ORDER = (
    "hakube-etcd-backup.timer", "hakube-etcd-backup.service",
    "hakube-vip-presence.timer", "hakube-vip-presence.service", "prometheus-blackbox-exporter",
    "prometheus-alertmanager", "prometheus", "prometheus-node-exporter",
    "kube-proxy", "kubelet", "containerd", "hakube-pod-routes",
    "keepalived", "pacemaker", "corosync", "haproxy", "nginx",
    "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd",
)
# hakube's own places: removed whole, whatever the record says
OWN = (paths.ETC, paths.STATE_DIR, str(PurePosixPath(paths.VRRP_STATE).parent))


def host_units(h: HostPlan, rendered: set[str]) -> list[str]:
    """The units hakube runs on `h`, in STOP_ORDER."""
    mine = {u.unit for u in services.UNITS.values()
            if u.unit in h.components or (u.needs and u.needs in h.components)}
    if h.runs("containerd"):
        mine.add(services.POD_ROUTES.unit)
    if services.VIP_PRESENCE.borrowed[0] in rendered:
        mine |= {services.VIP_PRESENCE.unit, "hakube-vip-presence.service"}
    if h.runs("etcd-backup"):
        mine |= {services.ETCD_BACKUP.unit, "hakube-etcd-backup.service"}
    return [u for u in STOP_ORDER if u in mine]


def candidates(d: Deploy, host: str) -> Candidates:
    """Everything hakube may create on `host` (what the facts step records beforehand)."""
    h = d.host(host)
    return candidates_for(h, set(d.rendered(host)), {f.path for f in d.pki.files_for(h)})


def candidates_for(h: HostPlan, rendered: set[str], pki: set[str]) -> Candidates:
    """The same, from the host's rendered files and certificates (pure)."""
    files = sorted(rendered | pki |
                   {f"{paths.BIN}/{b}" for c in h.components for b in services.KUBERNETES_BINARIES.get(c, [])})
    units = host_units(h, rendered)
    folders = sorted({leaf for u in units if u in services.UNITS for leaf in services.UNITS[u].leaves})
    return Candidates(tuple(files), tuple(folders), tuple(units))
