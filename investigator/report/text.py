"""The report for people: plain text for the terminal, Markdown for the bundle."""

from __future__ import annotations

from typing import Any

from .model import walked

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def format_us(us: float) -> str:
    """A microsecond value for people, 3 significant digits: 512us, 4.1ms, 1.05s."""
    if us >= 1_000_000:
        return f"{us / 1e6:.3g}s"
    if us >= 1000:
        return f"{us / 1000:.3g}ms"
    return f"{us:g}us"


def _escape(s: str) -> str:
    if s.isprintable() and "\\" not in s:
        return s
    out = []
    for ch in s:
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    return "".join(out)


def terminal_safe(x: Any) -> Any:
    """``x`` with every string in it (dict keys too) fit for a terminal: what Python calls not
    printable -- C0 and C1 controls (ESC sequences), DEL, bidi overrides and other format
    characters, line and paragraph separators, lone surrogates -- and the backslash written as
    backslash escapes (``\\x1b``, ``\\u202e``, ``\\n``, ``\\\\``), the rest unchanged.  Task names, paths,
    stacks and messages come from any user and from the kernel: every renderer for the
    terminal passes what it shows through this first."""
    if isinstance(x, str):
        return _escape(x)
    if isinstance(x, dict):
        return {terminal_safe(k): terminal_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [terminal_safe(v) for v in x]
    return x


ICONS = {"confirmed": "!!", "refuted": "ok", "inconclusive": "??", "unobservable": "--",
         "error": "xx", "skipped": "..", "interrupted": "^C"}


def ascii_hist(hist: list[dict[str, Any]], width: int = 40) -> list[str]:
    """Log2 buckets as bars, like bpftrace's hist()."""
    if not hist:
        return []
    top = max(h["count"] for h in hist)
    out = []
    for h in hist:
        bar = "@" * max(1, round(width * h["count"] / top))
        out.append(f"  [{format_us(h['lo']):>6}, {format_us(h['hi']):>6}) {h['count']:>7} |{bar:<{width}}|")
    return out


def _rows(rows: list[list[str]], head: list[str]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = "  " + "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*head)] + [fmt.format(*map(str, r)) for r in rows]


def _waitfor(node: str, ev: dict[str, Any]) -> list[str]:
    """The node's wait-for graph (the one its rules read as waitfor.*): its cycles, and the
    waits dropped before the analysis when there were any."""
    from ..analyze import waitfor
    if not waitfor.has_edges(ev):
        return []
    g = waitfor.analyze(ev)
    if not g["cycles_count"] and not g["edges_dropped"]:
        return []
    out = ["", f"{node}: wait-for graph -- {g['edges_count']} edges from {', '.join(g['sources'])}; "
           f"{g['cycles_count']} cycle(s), {g['stuck_cycles_count']} stuck"
           + (f"; {g['edges_dropped']} wait(s) dropped before the analysis" if g["edges_dropped"] else "")]
    for c in g["cycles"][:3]:
        out += ["", f"{node}: wait-for cycle of {c['size']} threads ({'stuck: deadlock' if c['stuck'] else 'moving'})"]
        out += _rows([[lk["waiter_comm"], lk["waiter_tid"], lk["kind"], lk["addr"], lk["holder_comm"],
                       lk["holder_tid"]] for lk in c["locks"]],
                     ["waiter", "tid", "waits for", "at", "held by", "tid"])
    return out


def render_evidence(evidence: dict[str, Any]) -> str:
    """Tables and histograms of each node's evidence: top waiters, delayed work, blocked
    tasks (the evidence behind the verdicts, for the terminal)."""
    evidence = terminal_safe(evidence)
    out: list[str] = []
    seen: set[str] = set()
    for node, ev in evidence.items():
        out += _waitfor(node, ev or {})
        for alias, d in (ev or {}).items():
            name = (d.get("probe") or {}).get("name")
            if name in seen:        # a probe shared by several nodes: shown once
                continue
            seen.add(str(name))
            if name == "sched.runqlat" and d.get("tasks"):
                out += ["", f"{node}: run-queue waits ({alias}) -- {d['count']} waits, max {d['max_ms']} ms"]
                out += ascii_hist(d.get("hist_us", []))
                out += [""] + _rows([[t["tid"], t["comm"], t["cpu"], t["max_ms"], t["count"],
                                      f"{t['culprit']['comm']} ({t['culprit']['tid']})", t["culprit"]["held_ms"]]
                                     for t in d["tasks"][:8]],
                                    ["tid", "comm", "cpu", "worst ms", "waits", "held by", "held ms"])
            elif name == "workqueue.latency" and d.get("functions"):
                out += ["", f"{node}: delayed work ({alias}) -- {d['count']} items, max delay {d['max_delay_ms']} ms, "
                        f"{d['pending_count']} pending"]
                out += ascii_hist(d.get("hist_us", []))
                out += [""] + _rows([[f["function"], f["workqueue"], f["cpu"], f["count"], f["max_delay_ms"],
                                      f["avg_exec_ms"]] for f in d["functions"][:8]],
                                    ["function", "workqueue", "cpu", "items", "max delay ms", "mean exec ms"])
            elif name == "sched.runnable" and d.get("stuck_count"):
                out += ["", f"{node}: tasks queued without running ({alias}) -- {d['waiting_count']} waiting, "
                        f"{d['stuck_count']} through the whole window"]
                out += _rows([[t["tid"], t["comm"], t.get("policy", ""), t["cpu"], t["waiting_ms"],
                               "yes" if t["stuck"] else "", f"{t['culprit']['comm']} ({t['culprit']['tid']})"]
                              for t in d["tasks"][:8]],
                             ["tid", "comm", "policy", "cpu", "waiting ms", "stuck", "running there"])
            elif name == "workqueue.pools" and d.get("stalled"):
                out += ["", f"{node}: workqueue pools without progress ({alias}) -- {d['stalled_count']} of "
                        f"{d['pools_count']} took no item through the window"]
                out += _rows([[p["cpu"], p["stalled_ms"], p["pending"],
                               ", ".join(f"{f['function']} ({f['workqueue'] or '?'})" for f in p["functions"][:3]),
                               ", ".join(f"{w['comm']} {w['state']}{' queued' if w['queued'] else ''}"
                                         for w in p["workers"][:3])]
                              for p in d["stalled"][:8]],
                             ["cpu", "no progress ms", "items", "oldest items", "workers"])
            elif name == "sched.blocked" and d.get("tasks"):
                out += ["", f"{node}: blocked tasks ({alias}) -- {d['count']} in D state, {d['stuck_count']} stuck"]
                out += _rows([[t["tid"], t["comm"], t["state"], t["blocked_s"], "yes" if t["stuck"] else "",
                               t["wchan"]] for t in d["tasks"][:8]],
                             ["tid", "comm", "state", "not run for s", "stuck", "where"])
    return "\n".join(out) + ("\n" if out else "")


def _symptoms(v: dict[str, Any], by_id: dict[Any, dict[str, Any]]) -> list[dict[str, Any]]:
    """A root cause's symptoms, theirs too, in report order (each once)."""
    out: list[dict[str, Any]] = []
    todo = [x for x in v.get("symptoms") or [] if isinstance(x, str)] if isinstance(v.get("symptoms"), list) else []
    while todo and len(out) < len(by_id):
        s = by_id.get(todo.pop(0))
        if s is not None and s not in out:
            out.append(s)
            todo += [x for x in s.get("symptoms") or [] if isinstance(x, str)] if isinstance(s.get("symptoms"), list) else []
    return out


def where(t: dict[str, Any]) -> str:
    """A task's cgroup as a line names it: the path, and the container, pod and unit it
    says the task runs in (a container id cut to the 12 characters tools show; the unit
    left out when it is the container's own scope)."""
    names = []
    c = t.get("container")
    if isinstance(c, str) and c:
        runtime, _, cid = c.rpartition("://")
        names.append(f"container {runtime + ' ' if runtime else ''}{cid[:12]}")
    names += [f"{k} {t[k]}" for k in ("pod", "unit") if isinstance(t.get(k), str) and t[k]
              and not (k == "unit" and isinstance(c, str) and c.rpartition("://")[2] in t[k])]
    return f"{t.get('cgroup')}" + (f" ({', '.join(names)})" if names else "")


def _verdict_lines(i: int, v: dict[str, Any]) -> list[str]:
    """One verdict as the terminal shows it: its headline, its tasks (each one's cgroup
    when they are not all in the same one; else that one, once: the root cgroup is never
    shown), CPUs, locks, stack."""
    out = []
    places = {where(t) for t in v["tasks"] if t.get("cgroup")}
    one = len(places) == 1 and all(t.get("cgroup") for t in v["tasks"])
    part = " [partial window]" if v.get("partial") else ""
    out.append(f"  {i}. {v['verdict'].upper()}{part} ({v['node']}, confidence {v['confidence']}): "
               f"{v['summary']}")
    for t in v["tasks"]:
        prio = f"  (prio {t['prio']}" + (f", {t['policy']})" if t.get("policy") else ")") \
            if isinstance(t.get("prio"), int) else ""
        out.append(f"       {t['role']:<9} tid {t['tid']:<7} pid {t['pid']:<7} {t['comm']}{prio}")
        if t.get("waits_for") or t.get("holds"):
            out.append("                 " + "; ".join(
                x for x in (f"waits for {t['waits_for']}" if t.get("waits_for") else "",
                            f"holds {t['holds']}" if t.get("holds") else "") if x))
        if t.get("stack"):
            out.append("                 in " + " < ".join(f.split("+")[0] for f in t["stack"][:6]))
        if t.get("cgroup") and t["cgroup"] != "/" and not one:
            out.append(f"                 cgroup {where(t)}")
    if one and v["tasks"][0]["cgroup"] != "/":
        out.append(f"       cgroup    {where(v['tasks'][0])}")
    if v["cpus"]:
        out.append(f"       cpu       {', '.join(map(str, v['cpus']))}")
    for lk in v["locks"]:
        out.append(f"       lock      {lk.get('kind', '?')} {lk.get('addr', '')}"
                   + (f" ({lk['name']})" if isinstance(lk.get("name"), str) and lk["name"] else ""))
    details = v["evidence"].get("details")
    stack = details.get("stack") if isinstance(details, dict) else None
    if stack:
        out.append("       stack     " + "\n                 ".join(stack[:12]))
    return out


def render_text(rep: dict[str, Any], bundle: str | None = None) -> str:
    rep, bundle = terminal_safe(rep), terminal_safe(bundle)
    out = []
    head = f"investigator: {rep['playbook']}  ({rep['duration_s']:.1f} s"
    if rep["complete"]:
        head += ")"
    else:
        det = (rep.get("timings") or {}).get("detached_s")
        head += f", INCOMPLETE: interrupted by {rep.get('interrupted_by') or 'a signal'}" + (
            f"; every probe detached at {det:.2f} s, before this report)" if det is not None else ")")
    out.append(head)
    verdicts = rep["verdicts"]
    if verdicts:
        by_id = {v["id"]: v for v in verdicts if isinstance(v.get("id"), str)}
        roots = [v for v in verdicts if not isinstance(v.get("symptom_of"), str) or v["symptom_of"] not in by_id]
        joined = len(verdicts) - len(roots)
        out.append("")
        out.append(f"VERDICTS ({len(roots)})" + (f", with {joined} symptom(s) joined to their cause" if joined else ""))
        for i, v in enumerate(roots, 1):
            out += _verdict_lines(i, v)
            for sym in _symptoms(v, by_id):
                part = " [partial window]" if sym.get("partial") else ""
                out.append(f"       symptom   {sym['verdict'].upper()}{part} ({sym['node']}): {sym['summary']}")
    else:
        out.append("")
        out.append("No problem found by this playbook.")
    out.append("")
    out.append("NODES (the walked path: each follow-up under the node that led to it)")
    by_id = {n["id"]: n for n in rep["nodes"]}
    for depth, n in walked(rep["nodes"]):
        pad = "    " * depth
        icon = ICONS.get(n["status"], "  ")
        v = f" -> {n['verdict']}" if n["verdict"] else ""
        hooks = ", ".join(f"{p['probe']}@{p['hook']}" if p.get("hook") else f"{p['probe']}@none"
                          for p in n["probes"])
        out.append(f"  {pad}{'└─ ' if depth else ''}[{icon}] {n['id']}: {n['status']}{v}  ({n['observed_s']:.1f} s; {hooks})")
        pad += "   " if depth else ""
        if n.get("reached_from"):
            f = n.get("focus") if isinstance(n.get("focus"), dict) else None
            why = ", ".join(f"{p} ({by_id[p]['verdict']})" if by_id.get(p, {}).get("verdict") else str(p)
                            for p in n["reached_from"])
            aim = f"; aimed at its {'/'.join(map(str, f.get('roles', [])))}: tid {', '.join(map(str, f.get('tids', [])[:8]))}" \
                if f else ""
            if f and f.get("cgroup") and not f.get("cgroup_not_used"):
                aim += f", all of whose cgroup it watched: {f['cgroup']}"
            elif f and f.get("cgroup_not_used"):
                aim += f" ({f['cgroup_not_used']})"
            out.append(f"       {pad}reached from {why}{aim}")
            out.append(f"       {pad}hypothesis: {n['hypothesis']}")
        if n["summary"] and n["status"] != "confirmed":
            out.append(f"       {pad}{n['summary']}")
        for r in n.get("routes") or []:
            out.append(f"       {pad}-> {', '.join(map(str, r.get('next', [])))}: {r.get('because', '')}")
        for e in n["errors"]:
            out.append(f"       {pad}note: {e}")
    if bundle:
        out.append("")
        out.append(f"bundle: {bundle}")
    return "\n".join(out) + "\n"


def render_markdown(rep: dict[str, Any]) -> str:
    rep = terminal_safe(rep)            # report.md is read with cat as often as in a viewer
    out = [f"# Investigation: {rep['playbook']}", ""]
    out.append(f"- started: {rep['started_at']}, duration {rep['duration_s']:.1f} s"
               + ("" if rep["complete"] else f", **incomplete** ({rep.get('interrupted_by', '')})"))
    k = rep["kernel"]
    out.append(f"- kernel: {k.get('release')} ({k.get('machine')}), BTF {k.get('btf')}, libbpf {k.get('libbpf')}")
    out.append("")
    out.append("## Verdicts")
    out.append("")
    if not rep["verdicts"]:
        out.append("No problem found by this playbook.")
    for i, v in enumerate(rep["verdicts"], 1):
        out.append(f"### {i}. {v['verdict']} ({v['node']}, confidence {v['confidence']})")
        out.append("")
        out.append(v["summary"])
        out.append("")
        if v.get("symptom_of"):
            out.append(f"_A symptom of {v['symptom_of']}: {v.get('joined', '')}._")
            out.append("")
        if v["tasks"]:
            cg = any(t.get("cgroup") for t in v["tasks"])
            out.append("| role | tid | pid | comm |" + (" cgroup |" if cg else ""))
            out.append("|---|---|---|---|" + ("---|" if cg else ""))
            for t in v["tasks"]:
                place = where(t).replace("|", "\\|") if t.get("cgroup") else ""
                out.append(f"| {t['role']} | {t['tid']} | {t['pid']} | `{t['comm']}` |" + (f" {place} |" if cg else ""))
            out.append("")
            for t in v["tasks"]:
                if t.get("waits_for") or t.get("stack"):
                    out.append(f"- `{t['comm']}` ({t['tid']})"
                               + (f" waits for `{t['waits_for']}`" if t.get("waits_for") else "")
                               + (f", holds `{t['holds']}`" if t.get("holds") else "")
                               + (": " + " < ".join(f"`{f.split('+')[0]}`" for f in t["stack"][:8])
                                  if t.get("stack") else ""))
            if any(t.get("waits_for") or t.get("stack") for t in v["tasks"]):
                out.append("")
        if v["cpus"]:
            out.append(f"CPUs: {', '.join(map(str, v['cpus']))}")
            out.append("")
        for lk in v["locks"]:
            out.append(f"Lock: {lk.get('kind')} at {lk.get('addr')}"
                       + (f" ({lk['name']})" if isinstance(lk.get("name"), str) and lk["name"] else ""))
        details = v["evidence"].get("details")
        if isinstance(details, dict) and details.get("stack"):
            out.append("```")
            out.extend(details["stack"])
            out.append("```")
        vals = {key: val for key, val in v["evidence"].items() if key != "details"}
        if vals:
            out.append("")
            out.append("Evidence: " + ", ".join(f"`{key}` = {val}" for key, val in vals.items()))
        out.append("")
    out.append("## Nodes")
    out.append("")
    out.append("| node | status | verdict | observed | probes (hook) |")
    out.append("|---|---|---|---|---|")
    for n in rep["nodes"]:
        hooks = ", ".join(f"{p['probe']} ({p.get('hook') or 'not attached'})" for p in n["probes"])
        out.append(f"| {n['id']} | {n['status']} | {n['verdict'] or ''} | {n['observed_s']:.1f} s | {hooks} |")
    return "\n".join(out) + "\n"
