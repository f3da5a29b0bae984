"""A node's focus: the finding of an earlier node that aims it.

A node with ``focus: {from: NODE, tasks: [ROLES]}`` watches only the tasks of NODE's finding
(the ``about`` of the rule that concluded NODE) that play those roles: their TIDs go to the
kernel (``Targets.tids``, ``task_selected()`` in probes/common.h), and the node's rules read
the whole finding as ``focus`` (``focus.tasks``, ``focus.locks``, ``focus.details``...).
The live run and replay resolve a focus with the same function, from the nodes concluded
before it."""

from __future__ import annotations

from typing import Any

from ..finding import Finding
from ..result import NodeResult

ALIAS = "focus"


def resolve(focus: Any, before: list[NodeResult]) -> dict[str, Any] | None:
    """A node's focus (its schema ``Focus``, or None) against the nodes concluded before it:
    ``{from, roles, tids, finding, verdict}``, where ``finding`` is the latest finding of
    ``from`` (its rule's ``about``, read as a Finding: at most finding.MAX_TASKS tasks) and
    ``tids`` the TIDs of its tasks in those roles -- empty when ``from`` concluded without a
    finding or with none of those roles."""
    if focus is None:
        return None
    src = next((n for n in reversed(before) if n.id == focus.from_ and n.about is not None), None)
    f = Finding.from_dict(src.about if src is not None else None)
    tids = list(dict.fromkeys(t.tid for t in f.tasks if t.role in focus.tasks and t.tid > 0))
    return {"from": focus.from_, "roles": list(focus.tasks), "tids": tids, "finding": f.to_dict(),
            "verdict": src.verdict if src is not None else None}


def unresolved(focus: dict[str, Any]) -> str:
    """Why a node was not started for want of its focus, in words."""
    if focus.get("verdict") is None:
        return f"focus: {focus['from']} reached no finding to aim this node at"
    return f"focus: {focus['from']}'s finding ({focus['verdict']}) names no {' or '.join(focus['roles'])} task"
