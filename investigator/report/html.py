"""The report as one self-contained HTML page (no scripts, no external resources): the
verdicts first with their evidence chain, then per node the tables and plots -- latency
histograms and a per-CPU timeline of who waited and who held the CPU -- drawn as inline SVG."""

from __future__ import annotations

import html
import math
from typing import Any

from .model import walked
from .text import format_us

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d232a;max-width:1100px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px} .meta{color:#555}
.verdict{border-left:6px solid #c0392b;background:#fdf2f1;padding:10px 14px;margin:10px 0;border-radius:4px}
.verdict .kind{font-weight:700;color:#c0392b;text-transform:uppercase;letter-spacing:.03em}
.ok{border-left-color:#27ae60;background:#eef9f1}
table{border-collapse:collapse;margin:6px 0 12px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f5f7} pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}
.status-confirmed{color:#c0392b;font-weight:700} .status-refuted{color:#27ae60}
.status-unobservable,.status-skipped{color:#888} .status-inconclusive{color:#b9770e}
.incomplete{background:#fff3cd;padding:6px 10px;border-radius:4px}
"""

PALETTE = ["#2e86de", "#e67e22", "#8e44ad", "#16a085", "#c0392b", "#7f8c8d", "#d35400", "#27ae60"]


def e(x: Any) -> str:
    """Text for the page: controls written as escapes (``cat report.html`` must not drive a
    terminal either), then HTML-escaped."""
    from .text import terminal_safe
    return html.escape(terminal_safe(str(x)))


def _table(rows: list[dict[str, Any]], cols: list[tuple[str, str]]) -> str:
    if not rows:
        return "<p class=meta>none</p>"
    head = "".join(f"<th>{e(t)}</th>" for _, t in cols)
    body = "".join("<tr>" + "".join(f"<td>{e(_get(r, k))}</td>" for k, _ in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _get(r: dict[str, Any], path: str) -> Any:
    cur: Any = r
    for part in path.split("."):
        cur = cur.get(part, "") if isinstance(cur, dict) else ""
    return cur


def hist_svg(hist: list[dict[str, Any]], title: str, unit: str = "us", width: int = 640) -> str:
    """Log2 buckets as bars (bar height: log of the count, so rare long waits stay visible)."""
    if not hist:
        return f"<p class=meta>{e(title)}: no samples</p>"
    lo_i = min(int(math.log2(max(h["lo"], 1))) for h in hist)
    hi_i = max(int(math.log2(h["hi"])) for h in hist)
    buckets = {int(math.log2(max(h["lo"], 1))): h["count"] for h in hist}
    n = hi_i - lo_i
    bw = max(8, (width - 60) // max(n, 1))
    top = max(math.log10(c + 1) for c in buckets.values())
    h_px = 140
    bars = []
    for k, i in enumerate(range(lo_i, hi_i)):
        c = buckets.get(i, 0)
        bh = 0 if not c else max(2, int(h_px * math.log10(c + 1) / top))
        x = 50 + k * bw
        label = format_us(1 << i) if unit == "us" else str(1 << i)
        bars.append(f'<rect x="{x}" y="{20 + h_px - bh}" width="{bw - 2}" height="{bh}" fill="#2e86de">'
                    f'<title>{e(label)}..{e(format_us(1 << (i + 1)))}: {c}</title></rect>')
        if c:
            bars.append(f'<text x="{x + bw / 2 - 1}" y="{16 + h_px - bh}" font-size="9" text-anchor="middle">{c}</text>')
        if k % max(1, n // 8) == 0:
            bars.append(f'<text x="{x}" y="{h_px + 34}" font-size="10">{e(label)}</text>')
    w = 60 + n * bw
    return (f'<figure><figcaption>{e(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" '
            f'width="{w}" height="{h_px + 44}" role="img">{"".join(bars)}'
            f'<line x1="48" y1="{20 + h_px}" x2="{w}" y2="{20 + h_px}" stroke="#999"/></svg></figure>')


PATH_FILL = {"confirmed": "#f8d7da", "refuted": "#d4edda", "inconclusive": "#fff3cd", "skipped": "#eee",
             "unobservable": "#eee", "error": "#f5c6cb"}


def path_svg(nodes: list[dict[str, Any]], width: int = 900) -> str:
    """The walked path: one box per node (its id and outcome, coloured by status) in the
    order of the walk, each follow-up indented under the node that led to it, with an
    arrow from that node labelled by the tasks it was aimed at."""
    rows = walked(nodes)
    if not rows:
        return ""
    box_w, box_h, step, indent = 300, 34, 44, 40
    pos: dict[str, tuple[int, int]] = {}
    out = []
    for i, (depth, n) in enumerate(rows):
        x, y = 10 + depth * indent, 10 + i * step
        pos.setdefault(n["id"], (x, y))
        fill = PATH_FILL.get(n["status"], "#fff")
        label = f"{n['id']}: {n['verdict'] or n['status']}"
        out.append(f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="{fill}" stroke="#888"/>'
                   f'<text x="{x + 8}" y="{y + 21}" font-size="13">{e(label)}</text>')
        parent = next((p for p in n.get("reached_from") or [] if p in pos and p != n["id"]), None)
        if depth and parent:
            px, py = pos[parent]
            f = n.get("focus") if isinstance(n.get("focus"), dict) else None
            aim = f"aimed at {'/'.join(map(str, f.get('roles', [])))} {', '.join(map(str, f.get('tids', [])[:4]))}" \
                if f else ""
            out.append(f'<path d="M{px + 12} {py + box_h} V{y + box_h // 2} H{x}" fill="none" stroke="#555" '
                       f'marker-end="url(#arrow)"/>'
                       f'<text x="{x + box_w + 8}" y="{y + 21}" font-size="11" fill="#555">{e(aim)}</text>')
    height = 20 + len(rows) * step
    return (f'<figure><figcaption>The walked path: each follow-up under the node that led to it</figcaption>'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">'
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
            'orient="auto"><path d="M0 0 L10 5 L0 10 z" fill="#555"/></marker></defs>'
            f'{"".join(out)}</svg></figure>')


def timeline_svg(runq: dict[str, Any], span_s: float, width: int = 900) -> str:
    """Per CPU lane: each task's worst wait as a bar, labelled victim <- culprit."""
    tasks = [t for t in runq.get("tasks", []) if t.get("max_ended_s") is not None and t["max_ms"] >= 1]
    if not tasks or span_s <= 0:
        return "<p class=meta>no waits of 1 ms or more to draw</p>"
    cpus = sorted({t["cpu"] for t in tasks})
    lane_h, left = 34, 60
    scale = (width - left - 10) / span_s
    out = []
    for li, cpu in enumerate(cpus):
        y = 24 + li * lane_h
        out.append(f'<text x="4" y="{y + 18}" font-size="12">CPU {cpu}</text>'
                   f'<line x1="{left}" y1="{y + lane_h - 4}" x2="{width}" y2="{y + lane_h - 4}" stroke="#eee"/>')
        for k, t in enumerate([t for t in tasks if t["cpu"] == cpu]):
            end = min(max(t["max_ended_s"], 0.0), span_s)
            start = max(0.0, end - t["max_ms"] / 1000)
            x, w = left + start * scale, max(2.0, (end - start) * scale)
            color = PALETTE[k % len(PALETTE)]
            cul = t.get("culprit", {})
            tip = f"{t['comm']} ({t['tid']}) waited {t['max_ms']} ms; held by {cul.get('comm')} ({cul.get('tid')})"
            out.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{lane_h - 12}" fill="{color}" '
                       f'opacity="0.75"><title>{e(tip)}</title></rect>')
            if w > 70:
                out.append(f'<text x="{x + 3:.1f}" y="{y + 20}" font-size="10" fill="#fff">'
                           f'{e(t["comm"])} ← {e(cul.get("comm", ""))}</text>')
    axis_y = 24 + len(cpus) * lane_h
    for i in range(0, int(span_s) + 1):
        x = left + i * scale
        out.append(f'<text x="{x:.1f}" y="{axis_y + 12}" font-size="10">{i}s</text>')
    return (f'<figure><figcaption>Per-CPU timeline: the worst wait of each task (bar) and who held the '
            f'CPU meanwhile (label: waiter ← holder), seconds since the probe attached</figcaption>'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{axis_y + 18}" role="img">'
            f'{"".join(out)}</svg></figure>')


def render_html(rep: dict[str, Any], evidence: dict[str, Any]) -> str:
    out = [f"<!doctype html><html><head><meta charset=utf-8><title>investigator: {e(rep['playbook'])}</title>"
           f"<style>{CSS}</style></head><body>"]
    k = rep["kernel"]
    out.append(f"<h1>Investigation: {e(rep['playbook'])}</h1><p class=meta>started {e(rep['started_at'])}, "
               f"{rep['duration_s']:.1f} s; kernel {e(k.get('release'))} ({e(k.get('machine'))}), "
               f"libbpf {e(k.get('libbpf'))}</p>")
    if not rep["complete"]:
        out.append(f"<p class=incomplete>Incomplete: interrupted by {e(rep.get('interrupted_by', ''))}; "
                   "nodes concluded on what they had gathered.</p>")
    out.append("<h2>Verdicts</h2>")
    if not rep["verdicts"]:
        out.append('<div class="verdict ok"><span class=kind>No problem found</span> by this playbook.</div>')
    for v in rep["verdicts"]:
        out.append(f'<div class=verdict><span class=kind>{e(v["verdict"])}</span> '
                   f'<span class=meta>({e(v["node"])}, confidence {e(v["confidence"])})</span><br>{e(v["summary"])}')
        if v.get("symptom_of"):
            out.append(f'<p class=meta>A symptom of {e(v["symptom_of"])}: {e(v.get("joined", ""))}</p>')
        elif v.get("symptoms"):
            out.append(f'<p class=meta>Root cause; its symptoms: {e(", ".join(map(str, v["symptoms"])))}</p>')
        where = [(k, k) for k in ("cgroup", "container", "pod", "unit") if any(t.get(k) for t in v["tasks"])]
        out.append(_table(v["tasks"], [("role", "role"), ("tid", "tid"), ("pid", "pid"), ("comm", "comm")] + where))
        if v["cpus"]:
            out.append(f"<p>CPU: {e(', '.join(map(str, v['cpus'])))}</p>")
        for lk in v["locks"]:
            out.append(f"<p>Lock: {e(lk.get('kind'))} at {e(lk.get('addr'))}</p>")
        d = v["evidence"].get("details")
        if isinstance(d, dict) and d.get("stack"):
            out.append("<pre>" + e("\n".join(d["stack"])) + "</pre>")
        vals = {kk: vv for kk, vv in v["evidence"].items() if kk != "details"}
        if vals:
            out.append("<p class=meta>" + e(", ".join(f"{kk} = {vv}" for kk, vv in vals.items())) + "</p>")
        out.append("</div>")
    out.append("<h2>Nodes</h2>")
    out.append(path_svg(rep["nodes"]))
    rows = [{**n, "hooks": ", ".join(f"{p['probe']} ({p.get('hook') or 'not attached'})" for p in n["probes"]),
             "observed": f"{n['observed_s']:.1f} s"} for n in rep["nodes"]]
    out.append(_table(rows, [("id", "node"), ("status", "status"), ("verdict", "verdict"), ("observed", "observed"),
                             ("hooks", "probes (hook)"), ("hypothesis", "hypothesis")]))
    for n in rep["nodes"]:
        ev = evidence.get(n["id"]) or {}
        if not ev:
            continue
        out.append(f"<h2>{e(n['id'])}: evidence</h2><p class=meta>{e(n['hypothesis'])}</p>")
        out.append(_waitfor(ev))
        for alias, data in ev.items():
            out.append(_section(alias, data, n))
    out.append("</body></html>")
    return "\n".join(out)


def _waitfor(ev: dict[str, Any]) -> str:
    """The node's wait-for graph (the one its rules read as waitfor.*): its cycles, and the
    waits dropped before the analysis when there were any."""
    from ..analyze import waitfor
    if not waitfor.has_edges(ev):
        return ""
    g = waitfor.analyze(ev)
    parts = [f"<h3>{waitfor.ALIAS} <span class=meta>(wait-for graph)</span></h3>",
             "<p>" + e(f"{g['edges_count']} edges from {', '.join(g['sources'])}; {g['cycles_count']} cycle(s), "
                       f"{g['stuck_cycles_count']} stuck") + "</p>"]
    if g["edges_dropped"]:
        parts.append(f"<p>{g['edges_dropped']} wait(s) seen but dropped before the analysis: "
                     "the graph may lack a cycle among them</p>")
    for c in g["cycles"][:5]:
        parts.append(f"<p>Cycle of {c['size']} ({'stuck: a deadlock' if c['stuck'] else 'moving'})</p>"
                     + _table(c["locks"], [("waiter_comm", "waiter"), ("waiter_tid", "tid"), ("addr", "waits for"),
                                           ("kind", "kind"), ("holder_comm", "held by"), ("holder_tid", "tid")]))
    return "\n".join(parts)


def _section(alias: str, d: dict[str, Any], node: dict[str, Any]) -> str:
    name = (d.get("probe") or {}).get("name", alias)
    parts = [f"<h3>{e(alias)} <span class=meta>({e(name)})</span></h3>"]
    if name == "sched.runqlat":
        parts.append(f"<p>{d['count']} waits; max {d['max_ms']} ms, p99 ≤ {d['p99_ms']} ms, mean {d['avg_ms']} ms; "
                     f"{d['over_count']} over the threshold</p>")
        parts.append(hist_svg(d.get("hist_us", []), "Run-queue wait (log2 buckets)"))
        parts.append(timeline_svg(d, float((d.get("probe") or {}).get("observed_s") or node["observed_s"])))
        parts.append(_table(d.get("per_cpu", []), [("cpu", "CPU"), ("count", "waits"), ("max_ms", "max ms"),
                                                   ("avg_ms", "mean ms"), ("over_count", "over")]))
        parts.append("<p>Top waiters</p>" + _table(d.get("tasks", [])[:10], [
            ("tid", "tid"), ("comm", "comm"), ("policy", "policy"), ("cpu", "CPU"), ("max_ms", "worst ms"),
            ("count", "waits"), ("culprit.comm", "held by"), ("culprit.tid", "its tid"),
            ("culprit.held_ms", "held ms")]))
    elif name == "workqueue.latency":
        parts.append(f"<p>{d['count']} items started; max delay {d['max_delay_ms']} ms; {d['pending_count']} "
                     f"pending (oldest {d['pending_max_ms']} ms); {d['running_count']} running</p>")
        parts.append(hist_svg(d.get("hist_us", []), "Queue → start delay (log2 buckets)"))
        parts.append("<p>Delayed work</p>" + _table(d.get("functions", [])[:10], [
            ("function", "function"), ("workqueue", "workqueue"), ("cpu", "CPU"), ("count", "items"),
            ("max_delay_ms", "max delay ms"), ("avg_exec_ms", "mean exec ms"), ("worst_worker.comm", "worker")]))
        if d.get("pending"):
            parts.append("<p>Pending</p>" + _table(d["pending"], [("function", "function"), ("cpu", "CPU"),
                                                                   ("age_ms", "age ms"), ("queued_by.comm", "queued by")]))
    elif name == "sched.blocked":
        parts.append(f"<p>{d['count']} tasks in D state, {d['stuck_count']} did not run during the window; "
                     f"longest {d['max_blocked_s']} s</p>")
        rows = [{**t, "top": (t.get("stack") or [""])[0]} for t in d.get("tasks", [])[:20]]
        parts.append(_table(rows, [("tid", "tid"), ("comm", "comm"), ("state", "state"), ("blocked_s", "blocked s"),
                                   ("stuck", "stuck"), ("top", "where")]))
    elif name == "user.futex":
        parts.append(f"<p>{d['waiters_count']} threads blocked in futex(), {d['mutex_waiters_count']} waiting for a "
                     f"mutex with a known owner</p>")
        parts.append(_table(d.get("waiters", [])[:20], [("tid", "tid"), ("comm", "comm"), ("uaddr", "futex"),
                                                         ("op", "op"), ("owner_tid", "owner"),
                                                         ("blocked_s", "blocked s"), ("stuck", "stuck")]))
    else:
        keys = {k: v for k, v in d.items() if k not in ("probe",) and not isinstance(v, (dict, list))}
        parts.append("<pre>" + e("\n".join(f"{k}: {v}" for k, v in keys.items())) + "</pre>")
        for k, v in d.items():
            if isinstance(v, dict) and k != "probe":
                parts.append(f"<p>{e(k)}</p>" + _table([{"key": kk, "value": vv} for kk, vv in list(v.items())[:50]],
                                                       [("key", "key"), ("value", "value")]))
    return "\n".join(parts)
