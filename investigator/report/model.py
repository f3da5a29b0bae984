"""The JSON report -- a stable contract; later versions only add keys.

    {"playbook": str, "complete": bool, "started_at": str, "duration_s": float,
     "kernel": {...}, "nodes": [{"id", "status", "verdict", "observed_s", "errors", ...,
                "probes": [{"probe", "as", "hook", ...} + "error" (could not attach) or
                           "read_error", "guard" (null, or why it could not be read / was detached)]}],
     "verdicts": [{"verdict", "node", "summary",
                   "tasks": [{"pid","tid","comm","role"} + optional "waits_for", "holds", "wchan", "stack"],
                   "locks": [...], "cpus": [...], "evidence": {...}}],
     "vars": {...},   (the playbook's vars, with --set overrides, when it has any)
     "mounts": [{"fs", "path", "unmounted"}]}   (pseudo filesystems the run mounted itself)

``verdicts`` holds the problems found, never refuted hypotheses.
"""

from __future__ import annotations

from typing import Any

from ..finding import Finding, Task, rt_priority
from ..result import PROBLEM_VERDICTS, NodeResult, RunOutcome

SCHEMA_VERSION = 1


REPORT_FRAMES = 16      # frames of a verdict task's stack in the report


def _task(t: Task) -> dict[str, Any]:
    """A verdict's task as the report names it: who and its role, and for a wait-for cycle's
    or chain's task the lock it waits for, the one it holds, where it sleeps, its stack; its
    priority and policy when the finding knows them."""
    e: dict[str, Any] = {"pid": t.pid, "tid": t.tid, "comm": t.comm, "role": t.role}
    if t.prio is not None:          # a priority inversion is told by these
        e["prio"], e["rt_priority"] = t.prio, rt_priority(t.prio)
    if t.policy:
        e["policy"] = t.policy
    for k in ("waits_for", "holds", "wchan"):
        if getattr(t, k):
            e[k] = getattr(t, k)
    if t.stack:
        e["stack"] = t.stack[:REPORT_FRAMES]
    return e


def _entities(about: Any) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
    """The tasks, locks and CPUs of a rule's ``about`` (a finding, from a bundle maybe)."""
    f = Finding.from_dict(about)
    return [_task(t) for t in f.tasks], [lk.to_dict() for lk in f.locks], f.cpus


def node_dict(n: NodeResult) -> dict[str, Any]:
    return {"id": n.id, "status": n.status, "verdict": n.verdict, "confidence": n.confidence,
            "summary": n.summary, "hypothesis": n.hypothesis, "window_s": round(n.window_s, 3),
            "observed_s": round(max(0.0, n.observed_s), 3), "visit": n.visit,
            "interrupted": n.interrupted, "rule": n.rule, "probes": n.probes, "errors": n.errors,
            "reached_from": n.reached_from, **({"focus": n.focus} if n.focus is not None else {})}


def verdict_dict(n: NodeResult) -> dict[str, Any]:
    tasks, locks, cpus = _entities(n.about)
    details = {k: v for k, v in n.about.items() if k not in ("tasks", "locks", "cpus")} \
        if isinstance(n.about, dict) else n.about
    return {"verdict": n.verdict, "node": n.id, "summary": n.summary, "confidence": n.confidence,
            "tasks": tasks, "locks": locks, "cpus": cpus,
            "evidence": {**n.values, **({"details": details} if details is not None else {})},
            "partial": n.interrupted}


def build(r: RunOutcome) -> dict[str, Any]:
    """The report of a run or of its replay."""
    rep: dict[str, Any] = {
        "report_version": SCHEMA_VERSION,
        "playbook": r.playbook,
        "complete": r.complete,
        "started_at": r.started_at,
        "duration_s": round(r.duration_s, 3),
        "kernel": r.kernel,
        "nodes": [node_dict(n) for n in r.nodes],
        "verdicts": [verdict_dict(n) for n in r.nodes if n.verdict in PROBLEM_VERDICTS],
    }
    if r.interrupted_by:
        rep["interrupted_by"] = r.interrupted_by
    if r.timings:
        rep["timings"] = r.timings
    if r.replayed:
        rep["replayed"] = True
    if r.overhead_guard:
        rep["overhead_guard"] = r.overhead_guard
    if r.variables:
        rep["vars"] = r.variables        # the expectations the rules were evaluated with
    if r.mounts:
        rep["mounts"] = r.mounts         # pseudo filesystems the run mounted, and unmounted
    return rep
