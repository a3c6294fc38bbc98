"""Status as one screen of tables (rich)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from .status import Status


def _mark(ok: bool | None) -> str:
    return "[green]✓[/green]" if ok else ("[red]✗[/red]" if ok is False else "[yellow]?[/yellow]")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} TiB"


def render(st: Status) -> Group:
    parts = []
    head = Text.from_markup(f"[bold]{st.cluster}[/bold]  API {st.endpoint} {_mark(st.endpoint_ready)}  "
                            f"[dim]({st.seconds:.2f} s)[/dim]")
    parts.append(head)
    if st.etcd:
        t = Table(title="etcd", title_justify="left", expand=False)
        for c in ("member", "healthy", "leader", "term", "index", "db size", "error"):
            t.add_column(c)
        for m in st.etcd:
            t.add_row(m.name, _mark(m.healthy), "[bold]leader[/bold]" if m.leader else "",
                      str(m.raft_term or "-"), str(m.raft_index or "-"), _size(m.db_size), m.error)
        parts.append(t)
    if st.vip_members:
        t = Table(title=f"VIP {st.vip}", title_justify="left")
        for c in ("host", "holds VIP", "state", "detail"):
            t.add_column(c)
        for v in st.vip_members:
            t.add_row(v.host, _mark(v.holds_vip) if v.holds_vip else ("" if v.holds_vip is False else "?"),
                      v.state, v.detail)
        parts.append(t)
    if st.backends:
        t = Table(title="load balancers: backends", title_justify="left")
        for c in ("load balancer", "apiserver", "state", "last check"):
            t.add_column(c)
        for b in st.backends:
            color = "green" if b.state.startswith("UP") else ("yellow" if b.state == "PASSIVE" else "red")
            t.add_row(b.lb, b.server, f"[{color}]{b.state}[/{color}]", b.detail)
        parts.append(t)
    t = Table(title="apiservers (/readyz, direct)", title_justify="left")
    t.add_column("server")
    t.add_column("ready")
    t.add_column("detail")
    for a in st.apiservers:
        t.add_row(a.host, _mark(a.ready), a.detail)
    parts.append(t)
    if st.nodes:
        t = Table(title="nodes", title_justify="left")
        t.add_column("node")
        t.add_column("ready")
        t.add_column("roles")
        for n in st.nodes:
            t.add_row(n.name, _mark(n.ready), n.roles)
        parts.append(t)
    if st.coredns_desired is not None:
        t = Table(title=f"CoreDNS ({st.coredns_desired} replicas wanted)", title_justify="left")
        for c in ("pod", "node", "phase", "ready", "reason"):
            t.add_column(c)
        for p in st.coredns:
            t.add_row(p.name, p.node or "(unscheduled)", p.phase, _mark(p.ready), p.reason)
        parts.append(t)
    if st.alerts:
        t = Table(title="firing alerts", title_justify="left")
        t.add_column("alert")
        t.add_column("summary")
        for a in st.alerts:
            t.add_row(a["labels"].get("alertname", "?"), a.get("annotations", {}).get("summary", ""))
        parts.append(t)
    for n in st.notes:
        parts.append(Text(f"note: {n}", style="yellow"))
    color = "green" if st.healthy else "red"
    parts.append(Text.from_markup(f"[bold {color}]{st.verdict}[/bold {color}]"))
    return Group(*parts)
