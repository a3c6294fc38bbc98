"""The build cache outside the repository: node images' inputs and offline binaries.

`$HAKUBE_CACHE` (default /var/cache/hakube). Results are built in a temporary folder
beside their final place and renamed into it at the end, so an interrupted build leaves
no half result that a later run would trust. A lock file serialises concurrent builds
of the same thing (two `lab prepare` in parallel build once).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_CACHE = Path("/var/cache/hakube")


def root() -> Path:
    """The cache folder (created on demand)."""
    return Path(os.environ.get("HAKUBE_CACHE") or DEFAULT_CACHE)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a lock file) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes `final` when the block succeeds.

    The temporary folder sits beside `final` (same filesystem, so the rename is atomic)
    and is removed when the block fails or is interrupted.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_partials(parent: Path, name: str) -> None:
    """Delete leftovers of builds of `name` that were killed before their cleanup ran.

    Only call this while holding the build lock: then no live build owns them.
    """
    if parent.is_dir():
        for p in parent.glob(f".{name}.partial-*"):
            shutil.rmtree(p, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename): readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
