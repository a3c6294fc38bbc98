"""Talking to the Debian mirror: the only network access the lab ever makes.

Source packages are fetched with a private apt configuration (its own sources list and
package lists in a scratch folder), so building binaries adds no `deb-src` entry to
this host's apt sources and leaves its package lists as they were.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NoReturn

from .errors import LabError
from .proc import run

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def _private_apt(scratch: Path) -> list[str]:
    """apt options that point at a sources list and lists folder inside `scratch`."""
    (scratch / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    sources = scratch / "sources.list"
    sources.write_text(f"deb-src [signed-by={KEYRING}] {MIRROR} {SUITE} main\n")
    return [
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", "Dir::Etc::SourceParts=/nonexistent",
        "-o", f"Dir::State::Lists={scratch / 'lists'}",
        "-o", "APT::Get::List-Cleanup=0",
    ]


def download_source(package: str, dest: Path) -> str:
    """Download source package `package` into `dest` (not unpacked); return its version."""
    opts = _private_apt(dest / ".apt")
    run(["apt-get", "-q", *opts, "update"], timeout=600,
        fix=f"check that {MIRROR} is reachable from this host")
    info = run(["apt-cache", *opts, "showsrc", package]).stdout
    m = re.search(r"^Version: (\S+)", info, re.M)
    if not m:
        raise_missing(package)
    run(["apt-get", "-q", *opts, "source", "--download-only", package], cwd=dest, timeout=900,
        fix=f"check that {MIRROR} is reachable from this host")
    return m[1]


def download_binary(package: str, dest: Path) -> Path:
    """Download binary package `package` (the host's apt lists decide its version)."""
    dest.mkdir(parents=True, exist_ok=True)
    run(["apt-get", "-q", "download", package], cwd=dest, timeout=600,
        fix="run `apt-get update` (the host's package lists may be stale)")
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if not debs:
        raise_missing(package)
    return debs[-1]


def upstream_version(debian_version: str) -> str:
    """1:1.35.0-4+b3 -> 1.35.0 (drop epoch and Debian revision)."""
    v = debian_version.split(":", 1)[-1]
    return v.rsplit("-", 1)[0] if "-" in v else v


def raise_missing(package: str) -> NoReturn:
    raise LabError(f"Debian package {package} not found in {MIRROR} {SUITE}; "
                   "check the host's apt sources")
