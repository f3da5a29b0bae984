"""Walk a playbook's graph: attach the probes of every ready node (each distinct probe
once, shared by the nodes that need it), observe the nodes' windows at the same time,
conclude each node when its window closes, follow the edges, and detach everything on
every exit path.

Interrupts (SIGINT, SIGTERM) end the run early: nodes still observing are concluded on
what they gathered so far, marked interrupted, and the report says ``complete: false``.
"""

from __future__ import annotations

import platform
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..evidence.events import EventLog
from ..playbook.load import LoadedPlaybook
from ..probes.instance import ProbeInstance, ProbeUnavailable, Targets


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class RunOptions:
    window_s: float | None = None      # overrides every node's window
    max_time_s: float = 600.0          # total budget for the run
    targets: Targets = field(default_factory=Targets)
    out_dir: Path | None = None
    on_event: Callable[[str, dict[str, Any]], None] | None = None


@dataclass
class NodeRun:
    id: str
    hypothesis: str
    window_s: float
    status: str = "pending"            # pending, observing, confirmed, refuted, inconclusive,
    verdict: str | None = None         # unobservable, error, interrupted, skipped
    confidence: str | None = None
    summary: str = ""
    rule: int | None = None
    about: Any = None
    values: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    ended_at: float = 0.0
    visit: int = 1
    interrupted: bool = False
    next: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    playbook: LoadedPlaybook
    nodes: list[NodeRun]
    started_at: str
    duration_s: float
    complete: bool
    kernel: dict[str, Any]
    interrupted_by: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


def kernel_info() -> dict[str, Any]:
    from ..bpf import features
    from ..bpf._lib import version
    info: dict[str, Any] = {"release": platform.release(), "machine": platform.machine(),
                            "btf": bool(features.btf())}
    try:
        info["libbpf"] = version()
    except Exception as e:  # pragma: no cover - reported, not fatal
        info["libbpf"] = f"unavailable: {e}"
    return info


class _Pool:
    """Probe instances keyed by (probe, parameters, targets): each attached once."""

    def __init__(self, events: EventLog, targets: Targets) -> None:
        self.events = events
        self.targets = targets
        self.instances: dict[tuple[Any, ...], ProbeInstance | ProbeUnavailable] = {}

    @staticmethod
    def key(name: str, params: dict[str, Any], targets: Targets) -> tuple[Any, ...]:
        return (name, tuple(sorted((k, str(v)) for k, v in params.items())), targets.key())

    def get(self, manifest: Any, params: dict[str, Any], node: str) -> ProbeInstance | ProbeUnavailable:
        k = self.key(manifest.name, params, self.targets)
        if k in self.instances:
            inst = self.instances[k]
            self.events.emit("probe_shared", node=node, probe=manifest.name,
                             hook=getattr(inst, "hook", None))
            return inst
        inst = ProbeInstance(manifest, params, self.targets)
        self.events.emit("probe_attaching", node=node, probe=manifest.name)
        try:
            inst.attach()
            self.events.emit("probe_attached", node=node, probe=manifest.name, hook=inst.hook,
                             links=inst.links, attach_ms=round(inst.attach_ms, 2),
                             fallbacks=inst.attempts)
            self.instances[k] = inst
            return inst
        except ProbeUnavailable as e:
            self.events.emit("probe_unavailable", node=node, probe=manifest.name, reason=str(e),
                             attempts=e.attempts)
            self.instances[k] = e
            return e
        except (OSError, ValueError, KeyError) as e:
            inst.close()
            err = ProbeUnavailable(manifest.name, inst.attempts + [{"hook": inst.hook or "?", "reason": str(e)}])
            self.events.emit("probe_unavailable", node=node, probe=manifest.name, reason=str(err))
            self.instances[k] = err
            return err

    def close_all(self) -> None:
        for inst in self.instances.values():
            if isinstance(inst, ProbeInstance):
                inst.close()
        self.instances.clear()


def run_playbook(lp: LoadedPlaybook, opts: RunOptions, events: EventLog | None = None) -> RunResult:
    events = events or EventLog()
    if opts.on_event:
        events.listeners.append(opts.on_event)
    t_start = time.monotonic()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    deadline = t_start + opts.max_time_s
    pool = _Pool(events, opts.targets)
    done: list[NodeRun] = []
    visits: dict[str, int] = {}
    ready = list(dict.fromkeys(lp.spec.start))
    interrupted_by: str | None = None
    timings: dict[str, float] = {}
    kernel = kernel_info()

    def on_signal(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    events.emit("run_started", playbook=lp.name, start=ready, kernel=kernel)
    active: list[NodeRun] = []
    try:
        while ready:
            if time.monotonic() >= deadline:
                for nid in ready:
                    done.append(NodeRun(nid, lp.spec.nodes[nid].hypothesis, 0, status="skipped",
                                        errors=["the run's time budget (--max-time) was used up"]))
                    events.emit("node_skipped", node=nid, reason="max-time")
                break
            wave, ready = ready, []
            active = []
            for nid in wave:
                node = lp.spec.nodes[nid]
                visits[nid] = visits.get(nid, 0) + 1
                if visits[nid] > node.max_visits:
                    events.emit("node_skipped", node=nid, reason="max_visits reached")
                    continue
                win = opts.window_s if opts.window_s is not None else lp.window_ns(node) / 1e9
                win = max(0.0, min(win, deadline - time.monotonic()))
                nr = NodeRun(nid, node.hypothesis, win, visit=visits[nid])
                active.append(nr)
            # attach every probe of the wave first, then observe all windows together
            for nr in active:
                node = lp.spec.nodes[nr.id]
                events.emit("node_started", node=nr.id, hypothesis=nr.hypothesis, window_s=nr.window_s)
                nr._insts = []  # type: ignore[attr-defined]
                for use in node.probes:
                    m = lp.probes[nr.id][use.as_ or _alias(lp, nr.id, use)]
                    inst = pool.get(m, use.with_, nr.id)
                    alias = use.as_ or m.alias
                    if isinstance(inst, ProbeUnavailable):
                        nr.probes.append({"probe": m.name, "as": alias, "hook": None,
                                          "error": str(inst), "attempts": inst.attempts})
                        nr.status = "unobservable"
                        nr.errors.append(str(inst))
                    else:
                        nr._insts.append((alias, inst))  # type: ignore[attr-defined]
                        nr.probes.append({"probe": m.name, "as": alias, "hook": inst.hook,
                                          "attach_ms": round(inst.attach_ms, 2),
                                          "attempts": inst.attempts, "links": inst.links})
            if "attached_s" not in timings:
                from ..system.procfs import seconds_since_exec
                timings["attached_s"] = round(time.monotonic() - t_start, 4)
                timings["launch_to_attached_s"] = round(seconds_since_exec(), 3)
                events.emit("wave_attached", nodes=[n.id for n in active],
                            since_launch_s=timings["attached_s"])
                if opts.out_dir is not None:
                    events.start_file(opts.out_dir / "events.jsonl")
            now = time.monotonic()
            for nr in active:
                nr.started_at = now
                if nr.status == "pending":
                    nr.status = "observing"
            # conclude nodes as their windows close, in order of closing
            for nr in sorted(active, key=lambda n: n.window_s):
                if nr.status == "unobservable":
                    _finish_unobservable(lp, nr, events)
                    done.append(nr)
                    ready.extend(nr.next)
                    continue
                _sleep_until(nr.started_at + nr.window_s)
                _conclude(lp, nr, events)
                done.append(nr)
                ready.extend(x for x in nr.next if x not in ready)
            active = []
            pool.close_all()
    except Interrupted as e:
        interrupted_by = str(e)
        events.emit("interrupted", signal=interrupted_by)
        for nr in active:
            if nr in done:
                continue
            if nr.status == "unobservable":
                _finish_unobservable(lp, nr, events)
            else:
                nr.interrupted = True
                _conclude(lp, nr, events)
            done.append(nr)
    finally:
        pool.close_all()
        for s, h in old.items():
            signal.signal(s, h)
    duration = time.monotonic() - t_start
    events.emit("run_finished", duration_s=round(duration, 3), complete=interrupted_by is None)
    return RunResult(lp, done, started_at, duration, interrupted_by is None, kernel,
                     interrupted_by, timings)


def _alias(lp: LoadedPlaybook, nid: str, use: Any) -> str:
    for alias, m in lp.probes[nid].items():
        if m.name == use.use:
            return alias
    raise KeyError(use.use)


def _sleep_until(t: float) -> None:
    while True:
        left = t - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))


def _finish_unobservable(lp: LoadedPlaybook, nr: NodeRun, events: EventLog) -> None:
    nr.ended_at = time.monotonic()
    nr.next = list(lp.spec.nodes[nr.id].on.unobservable)
    events.emit("node_concluded", node=nr.id, status="unobservable", reason="; ".join(nr.errors))


def _conclude(lp: LoadedPlaybook, nr: NodeRun, events: EventLog) -> None:
    from ..rules.conclude import conclude

    env: dict[str, Any] = {}
    for alias, inst in getattr(nr, "_insts", []):
        try:
            env[alias] = inst.collect()
        except Exception as e:  # a probe that cannot be read degrades the node, not the run
            nr.errors.append(f"reading {inst.name}: {type(e).__name__}: {e}")
    nr.ended_at = time.monotonic()
    nr.evidence = env
    events.emit("window_closed", node=nr.id, observed_s=round(nr.ended_at - nr.started_at, 3),
                probes={a: e.get("probe") for a, e in env.items()})
    if nr.errors and len(env) < len(getattr(nr, "_insts", [])):
        nr.status = "error"
        events.emit("node_concluded", node=nr.id, status="error", errors=nr.errors)
        return
    c = conclude(lp, nr.id, env)
    nr.status, nr.verdict, nr.rule, nr.confidence = c.status, c.verdict, c.rule, c.confidence
    nr.summary, nr.about, nr.values, nr.next = c.summary, c.about, c.evidence, c.next
    nr.errors.extend(c.errors)
    if nr.interrupted:
        nr.next = []
    if c.rule is not None:
        events.emit("rule_fired", node=nr.id, rule=c.rule, verdict=c.verdict, values=c.evidence)
    events.emit("node_concluded", node=nr.id, status=nr.status, verdict=nr.verdict,
                summary=nr.summary, interrupted=nr.interrupted)

