"""Chaos results: figures over trials (p50/p95/max) and an HTML page with a timeline (SVG)
on which a person sees the failover at a glance."""

from __future__ import annotations

import html
import json
from pathlib import Path

from .runner import TrialResult

FIGURES = ["write_downtime_s", "total_write_outage_s", "rejoin_outage_s", "read_downtime_s", "vip_moved_s",
           "leader_elected_s", "backend_down_s", "recovered_s", "proxy_outage_s"]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def summarize(trials: list[TrialResult]) -> dict:
    out: dict = {"scenario": trials[0].scenario, "trials": len(trials),
                 "passed": sum(t.ok for t in trials),
                 "lost": sum(t.lost for t in trials), "phantom": sum(t.phantom for t in trials),
                 "indeterminate": sum(t.indeterminate for t in trials)}
    for f in FIGURES:
        vals = [getattr(t, f) for t in trials if getattr(t, f) is not None]
        out[f] = {"p50": round(percentile(vals, 50), 3), "p95": round(percentile(vals, 95), 3),
                  "max": round(max(vals), 3)} if vals else None
    out["verdict"] = "passed" if out["passed"] == len(trials) and not out["lost"] and not out["phantom"] else "FAILED"
    return out


# ---- the timeline --------------------------------------------------------------------------

COLORS = {"ok": "#2e9d48", "failed": "#d6453d", "indeterminate": "#f0a020"}
EVENT_COLORS = {"fault": "#d6453d", "vip-moved": "#7048e8", "leader-elected": "#1c7ed6",
                "backend-down": "#e8590c", "recovered": "#2e9d48", "status": "#868e96",
                "step": "#495057"}  # an operation's own steps (up --probe)


def timeline_svg(t: TrialResult, width: int = 1100) -> str:
    ops = t.ops
    end = max([o[2] for o in ops] + [e.t for e in t.events] + [1.0])
    left, right, top = 90, 20, 30
    plot_w = width - left - right
    rows = {"writes": 60, "reads": 110}
    height = 190 + 16 * len([e for e in t.events if e.kind in EVENT_COLORS])
    x = lambda s: left + plot_w * s / end  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    for a, b in t.write_outages:
        rejoin = t.undone_at_s is not None and a >= t.undone_at_s
        what = "rejoin: " if rejoin else ""
        parts.append(f'<rect x="{x(a):.1f}" y="{top}" width="{max(1, x(b) - x(a)):.1f}" height="105" '
                     f'fill="{"#fff0c2" if rejoin else "#ffe3e3"}"><title>{what}no successful write for '
                     f'{b - a:.2f} s</title></rect>')
    for label, y in rows.items():
        parts.append(f'<text x="8" y="{y + 4}">{label}</text>')
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y}" y2="{y}" stroke="#dee2e6"/>')
    # one tick per attempt, at the moment it was made, coloured by what became of it
    for kind, start, _stop, outcome, *_ in sorted(ops, key=lambda o: o[3] == "ok"):
        y = rows["writes" if kind == "write" else "reads"]
        parts.append(f'<rect x="{x(start) - 1:.1f}" y="{y - 9}" width="2.2" height="18" '
                     f'fill="{COLORS.get(outcome, "#999")}"/>')
    # axis
    step = 1 if end <= 15 else 5 if end <= 80 else 10 if end <= 200 else 30
    s = 0.0
    while s <= end:
        parts.append(f'<line x1="{x(s):.1f}" x2="{x(s):.1f}" y1="{top + 105}" y2="{top + 110}" stroke="#495057"/>')
        parts.append(f'<text x="{x(s):.1f}" y="{top + 124}" text-anchor="middle">{s:g}s</text>')
        s += step
    # events: a line through the plot and a labelled row below
    y_ev = top + 145
    for e in [e for e in t.events if e.kind in EVENT_COLORS]:
        c = EVENT_COLORS[e.kind]
        parts.append(f'<line x1="{x(e.t):.1f}" x2="{x(e.t):.1f}" y1="{top}" y2="{y_ev - 6}" stroke="{c}" '
                     f'stroke-width="2" stroke-dasharray="4 3"/>')
        parts.append(f'<circle cx="{x(e.t):.1f}" cy="{y_ev - 4}" r="4" fill="{c}"/>')
        label = f"{e.kind} ({e.t:.2f}s): {e.detail}"
        label = label if len(label) <= 90 else label[:87] + "..."
        # labels right of the mark, or left of it in the right half, so none is cut off
        anchor, tx = ("start", x(e.t) + 8) if x(e.t) < left + plot_w * 0.5 else ("end", x(e.t) - 8)
        parts.append(f'<text x="{tx:.1f}" y="{y_ev}" fill="{c}" text-anchor="{anchor}">'
                     f'{html.escape(label)}<title>{html.escape(e.detail)}</title></text>')
        y_ev += 16
    parts.append("</svg>")
    return "\n".join(parts)


def write_html(trials: list[TrialResult], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarize(trials)
    rows = "".join(
        f"<tr><td>{f}</td>" + "".join(
            f"<td>{(summary[f] or {}).get(k, '-') if summary[f] else '-'}</td>" for k in ("p50", "p95", "max"))
        + "</tr>" for f in FIGURES)
    sections = []
    for t in trials:
        checks = "".join(f"<li>{html.escape(c)}</li>" for c in t.checks)
        figures = ", ".join(f"{f} = {getattr(t, f)}" for f in FIGURES)
        sections.append(
            f"<section><h2>trial {t.trial}: <span class='{'ok' if t.ok else 'bad'}'>{html.escape(t.verdict)}</span></h2>"
            f"<p>{figures}</p><p>writes: {t.attempted} attempted, {t.acknowledged} acknowledged, "
            f"{t.indeterminate} indeterminate, <b>{t.lost} lost</b>, <b>{t.phantom} phantom</b>. "
            f"Status during the fault: <i>{html.escape(t.status_during_fault or '-')}</i></p>"
            f"{timeline_svg(t)}<ul>{checks}</ul></section>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>hakube chaos: {summary['scenario']}</title>
<style>body{{font-family:sans-serif;margin:24px;max-width:1200px}} td,th{{padding:2px 10px;text-align:right}}
.ok{{color:#2e9d48}} .bad{{color:#d6453d}} section{{margin-top:28px}}
.legend span{{display:inline-block;margin-right:14px}} .sw{{display:inline-block;width:12px;height:12px;margin-right:4px}}</style>
</head><body><h1>hakube chaos: {html.escape(summary['scenario'])}</h1>
<p class="{'ok' if summary['verdict'] == 'passed' else 'bad'}"><b>{summary['verdict']}</b>: {summary['passed']}/{summary['trials']}
trials passed; {summary['lost']} acknowledged writes lost, {summary['phantom']} phantom writes,
{summary['indeterminate']} indeterminate (timed out; may or may not have been applied).</p>
<table><tr><th>figure (seconds)</th><th>p50</th><th>p95</th><th>max</th></tr>{rows}</table>
<p class="legend"><span><i class="sw" style="background:{COLORS['ok']}"></i>ok</span>
<span><i class="sw" style="background:{COLORS['failed']}"></i>failed</span>
<span><i class="sw" style="background:{COLORS['indeterminate']}"></i>indeterminate</span>
<span><i class="sw" style="background:#ffe3e3"></i>no successful write</span></p>
{''.join(sections)}
<script type="application/json" id="data">{html.escape(json.dumps(summary))}</script>
</body></html>"""
    out = folder / "index.html"
    out.write_text(page)
    (folder / "results.json").write_text(json.dumps({"summary": summary,
                                                     "trials": [t.as_dict(with_ops=True) for t in trials]}, indent=1))
    return out
