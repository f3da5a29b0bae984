"""Conclude a node: evaluate its ordered rules on the evidence, first match wins.

Shared by the live engine and by replay, so that both give the same verdicts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..playbook.load import LoadedPlaybook
from ..playbook.schema import PROBLEM_VERDICTS
from .expr import Expr, ExprError, truthy
from .template import lookup, render


@dataclass
class Conclusion:
    status: str                      # confirmed, refuted, inconclusive, error
    verdict: str
    rule: int | None = None          # index of the rule that held
    confidence: str | None = None
    summary: str = ""
    about: Any = None                # the finding's entities, from the rule's `about`
    evidence: dict[str, Any] = field(default_factory=dict)   # values the rule read
    errors: list[str] = field(default_factory=list)
    next: list[str] = field(default_factory=list)


def outcome_of(verdict: str) -> str:
    if verdict in PROBLEM_VERDICTS:
        return "confirmed"
    if verdict in ("refuted", "healthy"):
        return "refuted"
    return "inconclusive"


def with_analyzers(env: dict[str, Any]) -> dict[str, Any]:
    """The evidence plus what the analyzers derive from it (the merged wait-for graph as
    ``waitfor``, when a probe of the node gives wait-for edges)."""
    from ..analyze import waitfor
    if any(isinstance(ev, dict) and "edges" in ev for a, ev in env.items() if a != waitfor.ALIAS):
        return {**env, waitfor.ALIAS: waitfor.analyze(env)}
    return env


def conclude(lp: LoadedPlaybook, node_id: str, env: dict[str, Any]) -> Conclusion:
    node = lp.spec.nodes[node_id]
    errors: list[str] = []
    env = {**with_analyzers(env), "vars": lp.spec.vars}
    # an optional probe that could not attach: the rules that read its evidence are skipped
    missing = [a for a in (u.as_ or lp.alias_of(node_id, u.use) for u in node.probes if u.optional) if a not in env]
    for i, rule in enumerate(node.conclude):
        if any(re.search(rf"\b{re.escape(a)}\.", f"{rule.when} {rule.about or ''}") for a in missing):
            continue
        when = lp.exprs.get((node_id, i, "when")) or Expr(rule.when)
        try:
            held = truthy(when.evaluate(env))
        except ExprError as e:
            errors.append(f"rule {i + 1}: {e}")
            continue
        if not held:
            continue
        about = None
        if rule.about:
            ab = lp.exprs.get((node_id, i, "about")) or Expr(rule.about)
            try:
                about = ab.evaluate(env)
            except ExprError as e:
                errors.append(f"rule {i + 1} about: {e}")
        values = {}
        for ref, _ in when.references():
            try:
                v = lookup(env, ref)
            except KeyError:
                continue
            if not isinstance(v, (dict, list)):
                values[ref] = v
        status = outcome_of(rule.verdict)
        nxt = list(rule.next) + list(getattr(node.on, status))
        summary = render(rule.explain, {**env, "about": about} if about is not None else env)
        return Conclusion(status=status, verdict=rule.verdict, rule=i, confidence=rule.confidence,
                          summary=" ".join(summary.split()), about=about,
                          evidence=values, errors=errors, next=nxt)
    status = outcome_of(node.otherwise)
    if errors and status == "inconclusive":
        status = "error"
    return Conclusion(status=status, verdict=node.otherwise, errors=errors,
                      next=list(getattr(node.on, "inconclusive" if status == "error" else status)))
