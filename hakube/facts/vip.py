"""VIP facts: does a host hold the VIP, and what its keepalived (or pacemaker) says.

One command per host, read over SSH. keepalived's own state comes from its notify script
(components/keepalived writes it to paths.VRRP_STATE), not from re-running a track script.
Fixture tests: tests/unit/fixtures/facts/vip/.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from .. import paths


def holds_command(vip: str) -> str:
    """Prints the address line when this host holds `vip`, nothing otherwise."""
    return f"ip -o -4 addr show to {shlex.quote(vip)}/32"


def parse_holds(stdout: str) -> bool:
    return bool(stdout.strip())


@dataclass(frozen=True)
class VipView:
    holds: bool
    state: str   # MASTER, BACKUP, FAULT, STOPPED (keepalived); Started, Standby (pacemaker)
    detail: str = ""


def view_command(vip: str, provider: str) -> str:
    """The VIP address line, '--', then the provider's own view."""
    if provider == "pacemaker":
        return f"{holds_command(vip)}; echo '--'; crm_mon -1 2>/dev/null | grep -E 'hakube|quorum' || true"
    return (f"{holds_command(vip)}; echo '--'; systemctl is-active keepalived; "
            f"cat {paths.VRRP_STATE} 2>/dev/null || echo UNKNOWN")


def parse_view(stdout: str, provider: str) -> VipView:
    addr, _, rest = stdout.partition("--")
    holds = parse_holds(addr)
    words = rest.split()
    if provider == "pacemaker":
        return VipView(holds, "Started" if holds else "Standby", " ".join(words)[:120])
    active = words[0] if words else "unknown"
    if active != "active":
        return VipView(holds, "STOPPED", f"keepalived {active}")
    state = words[1] if len(words) > 1 else "UNKNOWN"
    detail = {"FAULT": "a track script is failing"}.get(state, "")
    if holds and state != "MASTER":
        detail = f"holds the VIP but keepalived says {state}"
    return VipView(holds, "MASTER" if holds and state == "UNKNOWN" else state, detail)
