"""Desired files, the changes a step plans, and applying exactly those changes."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..components.base import File
from ..pki import PKIFile
from ..transport import Connector
from ..facts.host import RemoteFile, file_states, read_text


@dataclass(frozen=True)
class Desired:
    """A file as it must be on a host. `local` is set for large files copied as they are."""

    path: str
    content: bytes = b""
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    secret: bool = False
    local: Path | None = None
    digest: str = ""

    @property
    def sha256(self) -> str:
        return self.digest or hashlib.sha256(self.content).hexdigest()

    @classmethod
    def of(cls, f: File | PKIFile) -> "Desired":
        content = f.content if isinstance(f.content, bytes) else f.content.encode()
        return cls(f.path, content, f.mode, f.owner, f.group, f.secret)

    @classmethod
    def binary(cls, path: str, local: Path, digest: str) -> "Desired":
        return cls(path, b"", 0o755, "root", "root", False, local, digest)


@dataclass
class FileChange:
    host: str
    desired: Desired
    before: RemoteFile | None
    diff: str = ""

    @property
    def reason(self) -> str:
        b, d = self.before, self.desired
        if b is None:
            return "new"
        if b.sha256 != d.sha256:
            return "content changed"
        parts = []
        if b.mode != d.mode:
            parts.append(f"mode {b.mode:o} -> {d.mode:o}")
        if (b.owner, b.group) != (d.owner, d.group):
            parts.append(f"owner {b.owner}:{b.group} -> {d.owner}:{d.group}")
        return ", ".join(parts)

    def __str__(self) -> str:
        return f"{self.desired.path}: {self.reason}"


async def plan_files(conn: Connector, desired: list[Desired], with_diff: bool = False,
                     remember: bool = False) -> list[FileChange]:
    """The files whose content, mode or owner differ from `desired` (plan only: no file of
    the cluster is written; `remember` lets the host keep big files' digests, see facts)."""
    states = await file_states(conn, [d.path for d in desired], remember=remember)
    changes = []
    for d in desired:
        before = states.get(d.path)
        if before and (before.sha256, before.mode, before.owner, before.group) == (d.sha256, d.mode, d.owner, d.group):
            continue
        change = FileChange(conn.host, d, before)
        if with_diff and before is not None and before.sha256 != d.sha256 and d.local is None:
            change.diff = await _diff(conn, d)
        changes.append(change)
    return changes


async def _diff(conn: Connector, d: Desired) -> str:
    if d.secret:
        return "    (secret: content not shown)"
    old = await read_text(conn, d.path) or ""
    lines = difflib.unified_diff(old.splitlines(), d.content.decode(errors="replace").splitlines(),
                                 f"{conn.host}:{d.path}", "rendered", lineterm="", n=2)
    return "\n".join("    " + ln for ln in lines)


async def apply_files(conn: Connector, changes: list[FileChange]) -> None:
    for c in changes:
        d = c.desired
        if d.local is not None:
            await conn.put_file(d.path, d.local, mode=d.mode, sha256=d.sha256)  # type: ignore[attr-defined]
        else:
            await conn.put(d.path, d.content, mode=d.mode, owner=d.owner, group=d.group, secret=d.secret)


@dataclass
class PhaseReport:
    """What a phase changed (sentences) and how long it took."""

    name: str
    changes: list[str] = field(default_factory=list)
    # "host: sentence" of every action the phase's plans held, dry run or not: a dry run's
    # list is what the run then does (plan.execute)
    planned: list[str] = field(default_factory=list)
    seconds: float = 0.0
