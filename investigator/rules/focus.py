"""A node's focus: the finding of an earlier node that aims it.

A node with ``focus: {from: NODE, tasks: [ROLES]}`` watches only the tasks of NODE's finding
(the ``about`` of the route that led here, else of the rule that concluded NODE; ``from``
may list several nodes, the latest that led here with a finding wins) that play those roles: their TIDs go to the
kernel (``Targets.tids``, ``task_selected()`` in probes/common.h), and the node's rules read
the whole finding as ``focus`` (``focus.tasks``, ``focus.locks``, ``focus.details``...).
The live run and replay resolve a focus with the same function, from the nodes concluded
before it."""

from __future__ import annotations

from typing import Any

from ..finding import Finding
from ..result import NodeResult

ALIAS = "focus"


def resolve(focus: Any, before: list[NodeResult], node_id: str) -> dict[str, Any] | None:
    """A node's focus (its schema ``Focus``, or None) against the nodes concluded before it:
    ``{from, roles, tids, finding, verdict}``.  The finding comes from the latest of the
    focus's source nodes that led here with one: the ``about`` of a route of it that leads
    to ``node_id``, else of the rule that concluded it (read as a Finding: at most
    finding.MAX_TASKS tasks); ``from`` is that node (the first source when none has one).
    ``tids`` are the TIDs of its tasks in the focus's roles -- empty when no source reached a
    finding or it names none of those roles; for a focus on their ``cgroup``, ``cgroup`` is
    the cgroup of the first of them that has one (the finding's, else the one the source
    node read when it concluded: NodeResult.task_cgroups), "" for none."""
    if focus is None:
        return None
    sources = focus.sources()
    src, about = None, None
    for n in reversed(before):
        if n.id not in sources:
            continue
        passed = [r["about"] for r in n.routes if isinstance(r, dict) and node_id in (r.get("next") or [])
                  and r.get("about") is not None]
        if passed or n.about is not None:
            src, about = n, passed[0] if passed else n.about
            break
    f = Finding.from_dict(about)
    tids = list(dict.fromkeys(t.tid for t in f.tasks if t.role in focus.tasks and t.tid > 0))
    out = {"from": src.id if src is not None else sources[0], "roles": list(focus.tasks), "tids": tids,
           "finding": f.to_dict(), "verdict": src.verdict if src is not None else None}
    if getattr(focus, "cgroup", False):
        read = src.task_cgroups if src is not None else {}
        out["cgroup"] = next((c for c in ((t.cgroup or read.get(t.tid)) for t in f.tasks
                                          if t.role in focus.tasks and t.tid > 0) if c), "")
    return out


def pending(focus: Any, waiting: list[str]) -> bool:
    """Whether a source of the focus is still to conclude (observing, or about to start):
    a node reached before any of its sources gave it a finding waits for them."""
    return focus is not None and any(s in waiting for s in focus.sources())


def unresolved(focus: dict[str, Any]) -> str:
    """Why a node was not started for want of its focus, in words."""
    if focus.get("verdict") is None:
        return f"focus: {focus['from']} reached no finding to aim this node at"
    return f"focus: {focus['from']}'s finding ({focus['verdict']}) names no {' or '.join(focus['roles'])} task"
