"""Host facts: files (digest, mode, owner), services, packages, the OS.

Each is a command plus a parser. Nothing is cached across steps: the hosts are the only
state, and a step reads what it needs right before it plans (STYLE.md 2).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from .. import paths
from ..transport import Connector


@dataclass(frozen=True)
class RemoteFile:
    sha256: str
    mode: int
    owner: str
    group: str


# Hashing the Kubernetes binaries (hundreds of MB per server) was most of a no-change
# re-run. Files of a MiB or more therefore have their digest remembered on the host,
# keyed by size, inode, mtime and ctime (nanoseconds), the quick check git's index uses:
# any write or replacement changes the ctime, which no tool can set back.
DIGEST_BOOK = f"{paths.STATE_DIR}/file-digests"
_BIG = 1 << 20
_FILE_STATES = r"""
book=%(book)s
for f in %(files)s; do
  if [ ! -f "$f" ]; then printf '%%s|-\n' "$f"; continue; fi
  # mode owner group size inode, then mtime and ctime as three words each
  set -- $(stat -c '%%a %%U %%G %%s %%i %%y %%z' -- "$f")
  sum=
  if [ "$4" -ge %(big)d ]; then
    key="$4/$5/$6_$7_$8/$9_${10}_${11}"
    sum=$(awk -F '\t' -v f="$f" -v k="$key" '$1 == f && $2 == k { print $3; exit }' "$book" 2>/dev/null)
  fi
  if [ -z "$sum" ]; then
    sum=$(sha256sum -- "$f" | cut -d' ' -f1)
    if [ "$4" -ge %(big)d ] && [ %(remember)d = 1 ]; then
      mkdir -p "${book%%/*}" && tmp=$(mktemp "$book.XXXXXX") &&
      { awk -F '\t' -v f="$f" '$1 != f' "$book" 2>/dev/null; printf '%%s\t%%s\t%%s\n' "$f" "$key" "$sum"; } > "$tmp" &&
      mv -f "$tmp" "$book"
    fi
  fi
  printf '%%s|%%s %%s %%s|%%s\n' "$f" "$1" "$2" "$3" "$sum"
done
"""


async def file_states(conn: Connector, file_paths: list[str], remember: bool = False) -> dict[str, RemoteFile | None]:
    """sha256, mode and owner of each path; None where there is no such file.

    `remember` records the digests of big files in the host's digest book (not on dry runs:
    a dry run writes nothing anywhere).
    """
    if not file_paths:
        return {}
    script = _FILE_STATES % {"book": shlex.quote(DIGEST_BOOK), "big": _BIG, "remember": int(remember),
                             "files": " ".join(shlex.quote(p) for p in file_paths)}
    r = await conn.run(script, what="reading file states", log_output=False)
    out: dict[str, RemoteFile | None] = {}
    for line in r.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 2:
            out[parts[0]] = None
        elif len(parts) == 3:
            mode, owner, group = parts[1].split()
            out[parts[0]] = RemoteFile(parts[2], int(mode, 8), owner, group)
    return out


async def read_text(conn: Connector, path: str) -> str | None:
    r = await conn.run(f"cat -- {shlex.quote(path)}", check=False, log_output=False)
    return r.stdout if r.ok else None


@dataclass(frozen=True)
class ServiceState:
    active: str  # active, inactive, failed, activating, ...
    enabled: str  # enabled, disabled, masked, not-found, ...


async def service_states(conn: Connector, units: list[str]) -> dict[str, ServiceState]:
    if not units:
        return {}
    script = "; ".join(
        f"printf '%s %s %s\\n' {shlex.quote(u)} \"$(systemctl is-active {shlex.quote(u)} 2>/dev/null)\" "
        f"\"$(systemctl is-enabled {shlex.quote(u)} 2>/dev/null || echo not-found)\"" for u in units)
    r = await conn.run(script, check=False, what="reading service states")
    out = {}
    for line in r.stdout.splitlines():
        name, active, enabled = (line.split() + ["", "", ""])[:3]
        out[name] = ServiceState(active or "unknown", enabled or "not-found")
    return out


async def missing_packages(conn: Connector, packages: list[str]) -> list[str]:
    if not packages:
        return []
    q = " ".join(shlex.quote(p) for p in packages)
    r = await conn.run(f"dpkg-query -W -f='${{Package}} ${{db:Status-Status}}\\n' {q} 2>/dev/null; true",
                       what="reading installed packages")
    installed = {ln.split()[0] for ln in r.stdout.splitlines() if ln.endswith(" installed")}
    return [p for p in packages if p not in installed]


@dataclass(frozen=True)
class OSInfo:
    id: str
    version: str
    arch: str
    systemd: bool


async def os_info(conn: Connector) -> OSInfo:
    r = await conn.run(". /etc/os-release; echo \"$ID $VERSION_ID\"; uname -m; "
                       "[ -d /run/systemd/system ] && echo systemd || echo no-systemd", what="reading the OS")
    lines = r.stdout.split("\n")
    ident = (lines[0].split() + ["?", "?"])[:2]
    return OSInfo(ident[0], ident[1], lines[1].strip(), lines[2].strip() == "systemd")
