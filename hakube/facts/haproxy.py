"""HAProxy facts: what one load balancer thinks of each apiserver backend.

`show stat` on HAProxy's admin socket (CSV with a `# ` header line), the same reading for
`hakube status` (status and last check per backend) and the chaos monitor (up or down per
backend, sampled several times a second). Fixture tests: tests/unit/fixtures/facts/haproxy/.
"""

from __future__ import annotations

from dataclasses import dataclass

ADMIN_SOCKET = "/run/haproxy/admin.sock"
BACKEND = "kube-apiserver"
SHOW_STAT = f"echo 'show stat' | socat stdio UNIX-CONNECT:{ADMIN_SOCKET}"


@dataclass(frozen=True)
class BackendState:
    server: str
    status: str  # as HAProxy says it: UP, DOWN, UP 1/3 (going down), DOWN 1/2 (going up), MAINT, ...
    check: str   # last check: L7OK, L4CON, L7STS, ...
    sessions: int = 0  # connections open to it now (scur)

    @property
    def up(self) -> bool:
        """Whether HAProxy sends it traffic now: UP, even while a failing check counts
        down ("UP 1/3"), or draining/no-check; DOWN while it counts up, and in MAINT."""
        return not self.status.startswith(("DOWN", "MAINT"))


def parse_show_stat(text: str, backend: str = BACKEND) -> list[BackendState]:
    """The servers of `backend` (not its FRONTEND/BACKEND rows, not hakube's local
    fallback servers), in the order HAProxy lists them."""
    header: list[str] = []
    out = []
    for line in text.splitlines():
        if line.startswith("# "):
            header = line[2:].split(",")
            continue
        row = dict(zip(header, line.split(",")))
        name = row.get("svname", "")
        if row.get("pxname") == backend and name not in ("FRONTEND", "BACKEND") and not name.endswith("-fallback"):
            scur = row.get("scur", "")
            out.append(BackendState(name, row.get("status", "?"), row.get("check_status", ""),
                                    int(scur) if scur.isdigit() else 0))
    return out
