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


def _table(title: str, *columns: str, **kw) -> Table:
    t = Table(title=title, title_justify="left", **kw)
    for c in columns:
        t.add_column(c)
    return t


def render(st: Status) -> Group:
    parts = []
    head = Text.from_markup(f"[bold]{st.cluster}[/bold]  API {st.endpoint} {_mark(st.endpoint_ready)}  "
                            f"[dim]({st.seconds:.2f} s)[/dim]")
    parts.append(head)
    if st.etcd:
        t = _table("etcd", "member", "healthy", "leader", "term", "index", "db size", "error", expand=False)
        for m in st.etcd:
            t.add_row(m.name, _mark(m.healthy), "[bold]leader[/bold]" if m.leader else "",
                      str(m.raft_term or "-"), str(m.raft_index or "-"), _size(m.db_size), m.error)
        parts.append(t)
    if st.vip_members:
        t = _table(f"VIP {st.vip}", "host", "holds VIP", "state", "detail")
        for v in st.vip_members:
            t.add_row(v.host, _mark(v.holds_vip) if v.holds_vip else ("" if v.holds_vip is False else "?"),
                      v.state, v.detail)
        parts.append(t)
    if st.backends:
        t = _table("load balancers: backends", "load balancer", "apiserver", "state", "last check")
        for b in st.backends:
            color = "green" if b.state.startswith("UP") else ("yellow" if b.state == "PASSIVE" else "red")
            t.add_row(b.lb, b.server, f"[{color}]{b.state}[/{color}]", b.detail)
        parts.append(t)
    t = _table("apiservers (/readyz, direct)", "server", "ready", "detail")
    for a in st.apiservers:
        t.add_row(a.host, _mark(a.ready), a.detail)
    parts.append(t)
    if st.nodes:
        t = _table("nodes", "node", "ready", "roles")
        for n in st.nodes:
            t.add_row(n.name, _mark(n.ready), n.roles)
        parts.append(t)
    if st.coredns_desired is not None:
        t = _table(f"CoreDNS ({st.coredns_desired} replicas wanted)", "pod", "node", "phase", "ready", "reason")
        for p in st.coredns:
            t.add_row(p.name, p.node or "(unscheduled)", p.phase, _mark(p.ready), p.reason)
        parts.append(t)
    if st.alerts:
        t = _table("firing alerts", "alert", "summary")
        for a in st.alerts:
            t.add_row(a["labels"].get("alertname", "?"), a.get("annotations", {}).get("summary", ""))
        parts.append(t)
    if st.cert_expiry_days is not None:
        parts.append(Text(f"certificates: the first to expire is {st.cert_first_expiry}, in "
                          f"{st.cert_expiry_days} days"))
    for n in st.notes:
        parts.append(Text(f"note: {n}", style="yellow"))
    color = "green" if st.healthy else "red"
    parts.append(Text.from_markup(f"[bold {color}]{st.verdict}[/bold {color}]"))
    return Group(*parts)
