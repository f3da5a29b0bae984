"""What an investigation found, as the report reads it: the verdict vocabulary, each node's
result and the run's outcome.

The engine (a live run) and replay (a bundle) both produce these types and the report
(report/model.py) only reads them, so that neither the report nor the bundle depends on
how a run was scheduled.  This module imports nothing of the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROBLEM_VERDICTS = ("deadlock", "starvation", "wrong-context", "contention", "hung-task", "overload",
                    "alloc-failure", "priority-inversion", "throttled", "memory-pressure", "io-stall")
"""The verdicts that are findings (a node that reaches one is ``confirmed``)."""


@dataclass
class NodeResult:
    """One node's outcome: how it was observed (its probes, window and errors) and what its
    rules concluded.  ``probes`` holds one record per probe of the node: ``probe``, ``as``,
    ``hook`` and either ``error`` (it could not attach) or how it was read at the end
    (``read_error`` when reading it failed, ``guard`` when the overhead guard detached it).
    ``task_cgroups`` are the cgroups of the verdict's tasks that its finding does not give,
    read when the node concluded (a replay reads them from the bundle)."""

    id: str
    hypothesis: str
    window_s: float
    observed_s: float = 0.0
    status: str = "pending"            # confirmed, refuted, inconclusive, unobservable, error, skipped
    verdict: str | None = None
    confidence: str | None = None
    summary: str = ""
    rule: int | None = None
    about: Any = None
    values: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    visit: int = 1
    reached_from: list[str] = field(default_factory=list)   # the nodes whose outcomes started it
    focus: dict[str, Any] | None = None     # {from, roles, finding, tids}: what it was aimed at
    routes: list[dict[str, Any]] = field(default_factory=list)   # routes it took: next, because
    interrupted: bool = False
    task_cgroups: dict[int, str] = field(default_factory=dict)   # tid -> cgroup, of its verdict's tasks


@dataclass
class RunOutcome:
    """A whole run (or its replay): the nodes in the order they ended, and the run's facts."""

    playbook: str
    nodes: list[NodeResult]
    started_at: str
    duration_s: float
    complete: bool
    kernel: dict[str, Any]
    interrupted_by: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    overhead_guard: list[dict[str, Any]] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    mounts: list[dict[str, Any]] = field(default_factory=list)    # what the run mounted, and undid
    replayed: bool = False
