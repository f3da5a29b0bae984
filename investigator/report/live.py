"""The live view while an investigation runs: the playbook's nodes as a tree, each at its
step of the loop -- hypothesis (pending), probe (attaching, which hook), observe (a
countdown), conclude (the verdict) -- a follow-up under the node whose outcome started it
(with the tasks it is aimed at), and the findings as they arrive.  Drawn with rich on a terminal (stderr); ``plain_printer`` gives
one line per step when stderr is not a terminal."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .text import terminal_safe

ICON = {"pending": "·", "attaching": "…", "observing": "◷", "confirmed": "✗", "refuted": "✓",
        "inconclusive": "?", "unobservable": "–", "error": "!", "skipped": "»"}
STYLE = {"confirmed": "bold red", "refuted": "green", "inconclusive": "yellow", "unobservable": "dim",
         "error": "red", "observing": "cyan", "attaching": "cyan", "skipped": "dim", "pending": "dim"}


@dataclass
class _Node:
    id: str
    hypothesis: str = ""
    state: str = "pending"
    window_s: float = 0.0
    started: float = 0.0
    hooks: list[str] = field(default_factory=list)
    verdict: str | None = None
    summary: str = ""
    notes: list[str] = field(default_factory=list)
    parent: str = ""
    focus: list[int] = field(default_factory=list)


STEP = {"pending": "hypothesis", "attaching": "probe", "observing": "observe"}
"""The step of the loop a node is at, by its state (any other state: conclude)."""


class LiveView:
    """An event listener (``RunOptions.on_event``) that keeps a rich Live display current."""

    def __init__(self, playbook: Any, stream: Any = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.title = terminal_safe(f"investigating: {playbook.name} — {playbook.spec.metadata.description}"
                                   .rstrip(" —"))
        self.nodes: dict[str, _Node] = {terminal_safe(nid): _Node(terminal_safe(nid), terminal_safe(n.hypothesis))
                                        for nid, n in playbook.spec.nodes.items()}
        self.order = terminal_safe(list(playbook.spec.start)
                                   + [n for n in playbook.spec.nodes if n not in playbook.spec.start])
        self.findings: list[str] = []
        self.t0 = time.monotonic()
        self.console = Console(file=stream or sys.stderr)
        self.live = Live(self, console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def __call__(self, event: str, f: dict[str, Any]) -> None:
        f = terminal_safe(f)            # names, paths, stacks, reasons: shown as Text, never as markup
        n = self.nodes.get(f.get("node", ""))
        if event == "node_started" and n:
            n.state, n.window_s, n.started = "attaching", f["window_s"], time.monotonic()
            parents = [p for p in f.get("reached_from") or [] if p in self.nodes and p != n.id]
            n.parent = parents[0] if parents else ""
            n.focus = list(f.get("focus") or [])
        elif event in ("probe_attached", "probe_shared") and n:
            n.hooks.append(f"{f['probe']} via {f.get('hook')}" + (" (shared)" if event == "probe_shared" else ""))
            n.state, n.started = "observing", time.monotonic()
        elif event == "probe_unavailable" and n:
            n.notes.append(f"cannot attach {f['probe']}")
        elif event == "node_concluded" and n:
            n.state = f["status"]
            n.verdict = f.get("verdict")
            n.summary = f.get("summary") or f.get("reason", "")
            if f["status"] == "confirmed":
                self.findings.append(f"{(n.verdict or '').upper()}: {n.summary}")
        elif event == "node_skipped" and n:
            n.state = "skipped"
            n.summary = f.get("reason", "")
        elif event == "probe_attach_slow":
            self.findings.append(slow_attach_text(f))
        elif event == "overhead_guard":
            self.findings.append(f"overhead guard detached {f['probe']}")
        elif event == "interrupted":
            self.findings.append(f"interrupted ({f['signal']}): concluding on what was gathered")
        self.live.refresh()

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.text import Text
        from rich.tree import Tree

        tree = Tree(Text(f"{self.title}  [{time.monotonic() - self.t0:5.1f} s]", style="bold"))
        branches: dict[str, Any] = {}
        # parents first: a follow-up goes under the branch of the node that started it
        for nid in sorted(self.order, key=lambda x: self._depth(x)):
            n = self.nodes[nid]
            step = STEP.get(n.state, "conclude")
            label = Text(f"{ICON.get(n.state, ' ')} {nid} [{step}]: ", style=STYLE.get(n.state, ""))
            if n.state == "observing":
                left = max(0.0, n.started + n.window_s - time.monotonic())
                label.append(f"observing, {left:4.1f} s left", style="cyan")
            elif n.state in ("confirmed", "refuted", "inconclusive") and n.verdict:
                label.append(n.verdict, style=STYLE.get(n.state, ""))
            else:
                label.append(n.state)
            label.append(f" — {n.hypothesis}", style="dim")
            branch = branches.get(n.parent, tree).add(label)
            branches[nid] = branch
            if n.parent:
                branch.add(Text(f"reached from {n.parent}" + (f", aimed at tid {', '.join(map(str, n.focus[:8]))}"
                                                               if n.focus else ""), style="dim"))
            for h in n.hooks:
                branch.add(Text(h, style="dim"))
            for note in n.notes:
                branch.add(Text(note, style="yellow"))
            if n.summary and n.state != "observing":
                branch.add(Text(n.summary))
        parts: list[Any] = [tree]
        if self.findings:
            parts.append(Text("findings:", style="bold"))
            parts += [Text(f"  {x}", style="bold red") for x in self.findings]
        return Group(*parts)

    def _depth(self, nid: str) -> int:
        d, seen = 0, set()
        while self.nodes[nid].parent and nid not in seen and d < 16:
            seen.add(nid)
            nid, d = self.nodes[nid].parent, d + 1
        return d

    def close(self) -> None:
        self.live.stop()


def slow_attach_text(f: dict[str, Any]) -> str:
    where = ", ".join(x.split("+")[0] for x in f.get("kernel_stack", [])[:5]) or "an unknown place"
    return (f"still loading {f['probe']} after {f['after_s']:.0f} s: the kernel holds it "
            f"({f.get('state') or '?'}) in {where}")


def plain_printer(stream: Any = None) -> Any:
    """One line per step, for logs and pipes."""
    out = stream or sys.stderr

    def show(event: str, f: dict[str, Any]) -> None:
        f = terminal_safe(f)
        t = f.get("t", 0.0)
        line = None
        if event == "probe_ready" or (event == "probe_attached" and not f.get("announced")):
            line = f"attached {f['probe']} via {f['hook']} ({f['attach_ms']:.0f} ms)"
            if f.get("fallbacks"):
                line += " after " + "; ".join(f"{a['hook']}: {a['reason']}" for a in f["fallbacks"])
        elif event == "probe_unavailable":
            line = f"cannot attach {f['probe']}: {f['reason']}"
        elif event == "probe_attach_slow":
            line = slow_attach_text(f)
        elif event == "node_started":
            line = f"node {f['node']}: observing {f['window_s']:.1f} s -- {f['hypothesis']}"
        elif event == "node_concluded":
            line = f"node {f['node']}: {f['status']}" + (f" -> {f['verdict']}" if f.get("verdict") else "")
        elif event == "overhead_guard":
            line = f"overhead guard detached {f['probe']}: {f['reason']}"
        elif event == "interrupted":
            line = f"interrupted by {f['signal']}: concluding on what was gathered so far"
        elif event == "probes_detached":
            line = f"probes detached {f['after_signal_ms']:.0f} ms after the signal"
        if line:
            out.write(f"[{t:6.2f}s] {line}\n")
            out.flush()
    return show
