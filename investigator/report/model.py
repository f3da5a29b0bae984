"""The JSON report -- a stable contract; later versions only add keys.

    {"playbook": str, "complete": bool, "started_at": str, "duration_s": float,
     "kernel": {...}, "nodes": [{"id", "status", "verdict", "observed_s", "errors", ...,
                "probes": [{"probe", "as", "hook", ...} + "error" (could not attach) or
                           "read_error", "guard" (null, or why it could not be read / was detached)]}],
     "verdicts": [{"id", "verdict", "node", "summary", "symptom_of", "symptoms", "joined",
                   "tasks": [{"pid","tid","comm","role"} + optional "waits_for", "holds", "wchan", "stack",
                              the probe's own scalars ("charged_ms", "as", ...), "cgroup" and what it names:
                              "unit", "container", "pod"],
                   "locks": [...], "cpus": [...], "evidence": {...}}],
     "root_causes": [id, ...],   (the verdicts that are no other's symptom: the headlines)
     "vars": {...},   (the playbook's vars, with --set overrides, when it has any)
     "mounts": [{"fs", "path", "unmounted"}]}   (pseudo filesystems the run mounted itself)

``verdicts`` holds the problems found, never refuted hypotheses.  Verdicts that tell one
incident are joined (:func:`join`): a symptom keeps its place in ``verdicts`` and names its
cause in ``symptom_of``, the cause lists it in ``symptoms``.
"""

from __future__ import annotations

from typing import Any

from ..finding import Finding, Task, rt_priority, workload
from ..result import PROBLEM_VERDICTS, NodeResult, RunOutcome

SCHEMA_VERSION = 1


REPORT_FRAMES = 16      # frames of a verdict task's stack in the report


def _task(t: Task, cgroups: dict[int, str]) -> dict[str, Any]:
    """A verdict's task as the report names it: who and its role, and for a wait-for cycle's
    or chain's task the lock it waits for, the one it holds, where it sleeps, its stack; its
    priority and policy when the finding knows them; the probe's own scalars of it (at most
    finding.MAX_EXTRA: its share, what it did); its cgroup (the finding's, else the one read
    when the node concluded, ``cgroups``) and the unit, container and pod that names."""
    e: dict[str, Any] = {"pid": t.pid, "tid": t.tid, "comm": t.comm, "role": t.role}
    if t.prio is not None:          # a priority inversion is told by these
        e["prio"], e["rt_priority"] = t.prio, rt_priority(t.prio)
    if t.policy:
        e["policy"] = t.policy
    for k in ("waits_for", "holds", "wchan"):
        if getattr(t, k):
            e[k] = getattr(t, k)
    e.update({k: v for k, v in t.extra.items() if k not in e})     # the probe's own (charged_ms, as, ...)
    cgroup = t.cgroup or cgroups.get(t.tid)
    if cgroup:
        e["cgroup"] = cgroup
        e.update(workload(cgroup))
    if t.stack:
        e["stack"] = t.stack[:REPORT_FRAMES]
    return e


def _entities(about: Any, cgroups: dict[int, str]) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
    """The tasks, locks and CPUs of a rule's ``about`` (a finding, from a bundle maybe)."""
    f = Finding.from_dict(about)
    return [_task(t, cgroups) for t in f.tasks], [lk.to_dict() for lk in f.locks], f.cpus


def node_dict(n: NodeResult) -> dict[str, Any]:
    return {"id": n.id, "status": n.status, "verdict": n.verdict, "confidence": n.confidence,
            "summary": n.summary, "hypothesis": n.hypothesis, "window_s": round(n.window_s, 3),
            "observed_s": round(max(0.0, n.observed_s), 3), "visit": n.visit,
            "interrupted": n.interrupted, "rule": n.rule, "probes": n.probes, "errors": n.errors,
            "reached_from": n.reached_from, **({"focus": n.focus} if n.focus is not None else {}),
            **({"routes": n.routes} if n.routes else {}),
            **({"task_cgroups": {str(k): v for k, v in n.task_cgroups.items()}} if n.task_cgroups else {})}


def verdict_dict(n: NodeResult) -> dict[str, Any]:
    tasks, locks, cpus = _entities(n.about, n.task_cgroups)
    details = {k: v for k, v in n.about.items() if k not in ("tasks", "locks", "cpus")} \
        if isinstance(n.about, dict) else n.about
    return {"verdict": n.verdict, "node": n.id, "summary": n.summary, "confidence": n.confidence,
            "tasks": tasks, "locks": locks, "cpus": cpus,
            "evidence": {**n.values, **({"details": details} if details is not None else {})},
            "partial": n.interrupted}


def _tids(v: dict[str, Any]) -> set[int]:
    return {t["tid"] for t in v["tasks"] if t["tid"] > 0}


def join(verdicts: list[dict[str, Any]], nodes: list[NodeResult]) -> list[str]:
    """One incident, one story: mark each verdict that is a symptom of another, and return
    the ids of the root causes (the verdicts that are no other's symptom), in order.
    ``nodes`` are the nodes the verdicts come from, one each, in the same order.

    A verdict is a symptom of

    - the verdict of a node aimed at its finding (``focus.from``), or of any node whose
      verdict names only tasks of the finding the follow-up was aimed at: the follow-up says
      why its tasks do not progress (a chain's waiter and the holder-state that explains it);
    - a follow-up's verdict that names all of its tasks (the starvation of a lock holder
      told again, with its waiters, as a priority inversion; a chain's waiter and holder,
      found by a node beside the follow-up a first look sent to that holder);
    - a verdict of another kind that names all of its tasks, when it is a ``hung-task``:
      tasks stuck in a deadlock's cycle, or behind a starved or stopped holder, are the
      hung tasks of that incident (a FUSE self-deadlock is one deadlock, not also a hang);
    - any other verdict that names all of its tasks, when it is one on the kernel's own
      report (its finding says ``kernel_report``: an RCU stall, a lockup): the kernel's
      word corroborates what the tool found, and is a root cause only where nothing
      else explains it.

    Each verdict gets ``id`` (its node, ``#visit`` after the first), ``symptom_of`` (an id
    or None), ``symptoms`` (ids) and, for a symptom, ``joined`` (why, in words)."""
    aimed_at = [n.focus.get("from") if isinstance(n.focus, dict) else None for n in nodes]
    for v, n in zip(verdicts, nodes):
        v["id"] = n.id if n.visit == 1 else f"{n.id}#{n.visit}"
        v["symptom_of"], v["symptoms"] = None, []
    ids = {v["id"]: v for v in verdicts}

    def root(v: dict[str, Any]) -> dict[str, Any]:
        seen = set()
        while v["symptom_of"] and v["id"] not in seen:
            seen.add(v["id"])
            v = ids[v["symptom_of"]]
        return v

    def link(symptom: dict[str, Any], cause: dict[str, Any], why: str) -> None:
        if symptom["symptom_of"] or root(cause) is symptom:
            return
        symptom["symptom_of"], symptom["joined"] = cause["id"], why
        cause["symptoms"].append(symptom["id"])

    for i, b in enumerate(verdicts):    # a follow-up explains the finding it was aimed at
        a = next((x for x in reversed(verdicts[:i]) if x["node"] == aimed_at[i]), None)
        if a is not None:
            link(a, b, f"{b['node']} followed its finding and found why: {b['verdict']}")
        if aimed_at[i] is None:         # and every verdict that tells that same finding (the chain
            continue                    # a first look passed on, found again by the node beside it)
        aimed = {t.get("tid") for t in (nodes[i].focus.get("finding") or {}).get("tasks") or []
                 if isinstance(t, dict) and type(t.get("tid")) is int and t["tid"] > 0}
        for a in verdicts:
            if a is not b and _tids(a) and _tids(a) <= aimed:
                link(a, b, f"{b['node']} followed the same finding and found why: {b['verdict']}")
    for i, b in enumerate(verdicts):    # a follow-up's verdict that names all of an earlier verdict's tasks,
        if aimed_at[i] is None:         # or of a later one of a node no finding aimed (a follow-up sent by a
            continue                    # first look can conclude before the node that found the same chain)
        for j, a in enumerate(verdicts):
            if j != i and (j < i or aimed_at[j] is None) and _tids(a) and _tids(a) <= _tids(b):
                link(a, b, f"{b['node']} followed the incident further: its {b['verdict']} names all of these tasks")
    for a in verdicts:                  # hung tasks that another verdict explains
        mine = _tids(a)
        if a["verdict"] != "hung-task" or not mine:
            continue
        b = next((x for x in verdicts if x is not a and x["verdict"] != "hung-task" and mine <= _tids(x)), None)
        if b is not None:
            link(a, b, f"its tasks are those of the {b['verdict']} found by {b['node']}")
    for a in verdicts:                  # the kernel's reports that another verdict explains
        details = a["evidence"].get("details")
        mine = _tids(a)
        if not (isinstance(details, dict) and details.get("kernel_report") is True) or not mine:
            continue
        b = next((x for x in verdicts if x is not a and mine <= _tids(x) and not
                  (isinstance(x["evidence"].get("details"), dict) and x["evidence"]["details"].get("kernel_report"))), None)
        if b is not None:
            link(a, b, f"the kernel reported the task {b['node']} names: {b['verdict']}")
    return [v["id"] for v in verdicts if not v["symptom_of"]]


def walked(nodes: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """The nodes in the order of the walk, with their depth: the start nodes in the order
    they ended, each followed by the nodes its outcome started (under the first node that
    led to them), depth first."""
    ids = {n["id"] for n in nodes if isinstance(n.get("id"), str)}
    children: dict[str, list[dict[str, Any]]] = {}
    starts = []
    for n in nodes:
        came = n.get("reached_from")
        parent = next((p for p in came if isinstance(p, str) and p in ids and p != n["id"]), None) \
            if isinstance(came, list) else None
        if parent is None:
            starts.append(n)
        else:
            children.setdefault(parent, []).append(n)
    out: list[tuple[int, dict[str, Any]]] = []
    seen: set[int] = set()

    def walk(n: dict[str, Any], depth: int) -> None:
        if id(n) in seen:
            return
        seen.add(id(n))
        out.append((depth, n))
        for c in children.get(n["id"], []):
            walk(c, min(depth + 1, 8))

    for n in starts:
        walk(n, 0)
    out += [(0, n) for n in nodes if id(n) not in seen]     # a cycle of reached_from: shown flat
    return out


def build(r: RunOutcome) -> dict[str, Any]:
    """The report of a run or of its replay."""
    problems = [n for n in r.nodes if n.verdict in PROBLEM_VERDICTS]
    rep: dict[str, Any] = {
        "report_version": SCHEMA_VERSION,
        "playbook": r.playbook,
        "complete": r.complete,
        "started_at": r.started_at,
        "duration_s": round(r.duration_s, 3),
        "kernel": r.kernel,
        "nodes": [node_dict(n) for n in r.nodes],
        "verdicts": [verdict_dict(n) for n in problems],
    }
    rep["root_causes"] = join(rep["verdicts"], problems)
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
