"""The file-state reader's shell script, run here with sh: digests of big files are
remembered by (size, inode, mtime, ctime) and recomputed after any write."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from hakube.facts import host as facts


class LocalShell:
    """Runs the script with this machine's sh, as a Connector would on a host."""

    async def run(self, script: str, **_) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)


@pytest.fixture
def book(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state" / "file-digests"
    monkeypatch.setattr(facts, "DIGEST_BOOK", str(path))
    return path


def states(paths: list[Path], remember: bool) -> dict:
    return asyncio.run(facts.file_states(LocalShell(), [str(p) for p in paths], remember=remember))


def test_digests_modes_and_missing_files(tmp_path: Path, book: Path) -> None:
    big, small = tmp_path / "big", tmp_path / "small"
    big.write_bytes(os.urandom(facts._BIG + 1))
    small.write_text("x")
    small.chmod(0o600)
    got = states([big, small, tmp_path / "absent"], remember=False)
    assert got[str(big)].sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    assert got[str(small)].sha256 == hashlib.sha256(b"x").hexdigest()
    assert got[str(small)].mode == 0o600
    assert got[str(tmp_path / "absent")] is None
    assert not book.exists(), "without remember nothing is written (dry runs write nothing)"


def test_big_digest_is_remembered_and_recomputed_after_a_write(tmp_path: Path, book: Path) -> None:
    big, small = tmp_path / "big", tmp_path / "small"
    big.write_bytes(os.urandom(facts._BIG + 1))
    small.write_text("x")
    first = states([big, small], remember=True)[str(big)].sha256
    lines = book.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{big}\t") and lines[0].endswith(first)

    # a remembered digest is used as is: prove it by forging the book's entry
    book.write_text(book.read_text().replace(first, "f" * 64))
    assert states([big], remember=True)[str(big)].sha256 == "f" * 64

    with open(big, "r+b") as fh:  # same size, same inode: only the times tell
        fh.write(b"changed")
    again = states([big], remember=True)[str(big)].sha256
    assert again == hashlib.sha256(big.read_bytes()).hexdigest() != first
    assert len(book.read_text().splitlines()) == 1, "one entry per file"
