"""Conclude a node: from how its probes fared and its evidence to its status and verdict.

``conclude_node`` is the one conclusion path of the live engine and of replay, so that
replay gives the live run's statuses, verdicts and errors by construction: a required probe
that could not attach makes the node ``unobservable``, one that could not be read makes it
``error`` without running its rules, optional ones that failed are noted and the rules that
read them skipped, probes the overhead guard detached are noted, and otherwise ``conclude``
evaluates the node's ordered rules on the evidence, first match wins.  The rules
see the evidence with every list cut to LIST_CAP entries (each rule that reads a cut list
says so in the node's errors, which then stay notes: they do not make the node an error);
each evaluation has its own budget (rules/expr.py) and all of a node's together at most
NODE_BUDGET_S, after which the remaining rules are not evaluated."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..analyze.waitfor import ALIAS as WAITFOR
from ..result import PROBLEM_VERDICTS
from .focus import ALIAS as FOCUS
from .expr import BUDGET_S, Expr, ExprError, bounded_env, truthy
from .template import lookup, render

if TYPE_CHECKING:
    from ..playbook.load import LoadedPlaybook


NODE_BUDGET_S = 10.0     # wall-clock budget of all of a node's rule evaluations


@dataclass
class Conclusion:
    status: str                      # confirmed, refuted, inconclusive, error
    verdict: str | None              # None when no rule was run (unobservable, error)
    rule: int | None = None          # index of the rule that held
    confidence: str | None = None
    summary: str = ""
    about: Any = None                # the finding's entities, from the rule's `about`
    evidence: dict[str, Any] = field(default_factory=dict)   # values the rule read
    errors: list[str] = field(default_factory=list)     # rule errors, then notes on cut lists
    next: list[str] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)   # routes taken: next, because


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
    if waitfor.has_edges(env):
        return {**env, waitfor.ALIAS: waitfor.analyze(env)}
    return env


def conclude(lp: LoadedPlaybook, node_id: str, env: dict[str, Any],
             focus: dict[str, Any] | None = None) -> Conclusion:
    """Evaluate a node's rules over its evidence, the analyzers' output, the playbook's vars
    and the finding it was aimed at (``focus``, rules/focus.py)."""
    node = lp.spec.nodes[node_id]
    errors: list[str] = []
    notes: list[str] = []
    extra = {FOCUS: focus["finding"]} if focus else {}
    env, cuts = bounded_env({**with_analyzers(env), "vars": lp.spec.vars, **extra})
    deadline = time.monotonic() + NODE_BUDGET_S
    graph = env.get(WAITFOR)
    dropped = graph.get("edges_dropped") if isinstance(graph, dict) else 0
    if type(dropped) is int and dropped > 0:
        notes.append(f"the wait-for graph lacks {dropped} wait(s) that its probes saw but could not "
                     "give as edges (a snapshot's record limit, a scan bound): a cycle among them is not found")

    def evaluate(e: Expr, i: int, what: str = "rule") -> Any:
        for path, kept, total in cuts:
            if any(path == r or path.startswith(r + ".") or r.startswith(path + ".") for r, _ in e.references()):
                note = f"{what} {i + 1} saw the first {kept} of {total} entries of {path}"
                if note not in notes:
                    notes.append(note)
        left = deadline - time.monotonic()
        if left <= 0:
            raise ExprError(f"not evaluated: the node's rules used their budget of {NODE_BUDGET_S:g} s")
        return e.run(env, min(BUDGET_S, left))

    # an optional probe that could not attach: the rules that read its evidence are skipped
    missing = [a for a in (u.as_ or lp.alias_of(node_id, u.use) for u in node.probes if u.optional) if a not in env]
    for i, rule in enumerate(node.conclude):
        if any(re.search(rf"\b{re.escape(a)}\.", f"{rule.when} {rule.about or ''}") for a in missing):
            continue
        try:
            when = lp.exprs.get((node_id, i, "when")) or Expr(rule.when)
            held = truthy(evaluate(when, i))
        except ExprError as e:
            errors.append(f"rule {i + 1}: {e}")
            continue
        if not held:
            continue
        about = None
        if rule.about:
            try:
                ab = lp.exprs.get((node_id, i, "about")) or Expr(rule.about)
                about = evaluate(ab, i)
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
        c = Conclusion(status=status, verdict=rule.verdict, rule=i, confidence=rule.confidence,
                       summary=" ".join(summary.split()), about=about,
                       evidence=values, errors=errors, next=nxt)
        break
    else:
        status = outcome_of(node.otherwise)
        if errors and status == "inconclusive":
            status = "error"
        c = Conclusion(status=status, verdict=node.otherwise, errors=errors,
                       next=list(getattr(node.on, "inconclusive" if status == "error" else status)))
    for k, route in enumerate(node.route):
        unseen = [a for a in missing if re.search(rf"\b{re.escape(a)}\.", f"{route.when} {route.about or ''}")]
        because, passed = "", None
        if unseen:
            because = f"not ruled out: {', '.join(unseen)} could not be observed"
        else:
            try:
                e = lp.exprs.get((node_id, k, "route")) or Expr(route.when)
                if not truthy(evaluate(e, k, "route")):
                    continue
                because = " ".join(render(route.because, env).split()) if route.because else f"route {k + 1} holds"
            except ExprError as e:
                errors.append(f"route {k + 1}: {e}")
                because = f"not ruled out: route {k + 1} could not be evaluated"
            else:
                if route.about:
                    try:
                        passed = evaluate(lp.exprs.get((node_id, k, "route_about")) or Expr(route.about), k, "route")
                    except ExprError as e:
                        errors.append(f"route {k + 1} about: {e}")
        take(c, route.next, because, passed)
    c.errors = errors + notes
    return c


def take(c: Conclusion, nxt: list[str], because: str, about: Any = None) -> None:
    """Follow a route: its nodes join the conclusion's next ones, and the report says why
    (and carries the finding it passes on, ``about``, when it has one)."""
    c.routes.append({"next": list(nxt), "because": because, **({"about": about} if about is not None else {})})
    c.next += [n for n in nxt if n not in c.next]


def probe_alias(lp: LoadedPlaybook, node_id: str, rec: dict[str, Any]) -> str:
    """The evidence alias of one of a node's probe records: its ``as`` when this playbook's
    node reads it so, else the name the node reads the probe by (a bundle may carry an
    earlier name of the probe)."""
    name = str(rec.get("as") or "")
    if name and name in lp.probes.get(node_id, {}):
        return name
    try:
        return lp.alias_of(node_id, str(rec.get("probe", "")))
    except KeyError:
        return name


def attach_errors(lp: LoadedPlaybook, node_id: str, probes: list[dict[str, Any]]) -> tuple[list[str], bool]:
    """The errors of a node's probes that could not attach, and whether the node is
    unobservable (a required one failed, or none of its records attached; a fixture written
    by hand may have no records at all)."""
    node = lp.spec.nodes[node_id]
    optional = {u.as_ or lp.alias_of(node_id, u.use) for u in node.probes if u.optional}
    errors: list[str] = []
    unobservable, attached = False, 0
    for rec in probes:
        if rec.get("error") is None:
            attached += 1
            continue
        alias = probe_alias(lp, node_id, rec)
        if alias in optional:           # observed without it: its rules are skipped
            errors.append(f"optional {rec['error']}; the rules that read {alias} were skipped")
        else:
            errors.append(str(rec["error"]))
            unobservable = True
    return errors, unobservable or bool(probes and not attached)


def conclude_node(lp: LoadedPlaybook, node_id: str, env: dict[str, Any], probes: list[dict[str, Any]],
                  interrupted: bool = False, focus: dict[str, Any] | None = None) -> Conclusion:
    """A node's conclusion from its probe records (see result.NodeResult: ``error`` when it
    could not attach, ``read_error`` when it could not be read, ``guard`` when the overhead
    guard detached it) and the evidence of the probes that were read.  An interrupted node follows no edge."""
    node = lp.spec.nodes[node_id]
    optional = {u.as_ or lp.alias_of(node_id, u.use) for u in node.probes if u.optional}
    errors, unobservable = attach_errors(lp, node_id, probes)
    if unobservable:
        c = Conclusion(status="unobservable", verdict=None, errors=errors, next=list(node.on.unobservable))
        for route in node.route:        # nothing seen, nothing ruled out
            take(c, route.next, "not ruled out: the node could not observe")
        return c
    failed = False
    for rec in probes:
        if rec.get("error") is None and rec.get("read_error"):
            alias = probe_alias(lp, node_id, rec)
            if alias in optional:       # concluded without it, like one that could not attach
                errors.append(f"optional probe {rec['probe']} could not be read ({rec['read_error']}); "
                              f"the rules that read {alias} were skipped")
            else:
                failed = True
                errors.append(f"reading {rec['probe']}: {rec['read_error']}")
    for rec in probes:
        g = rec.get("guard")
        if rec.get("error") is None and isinstance(g, dict):
            errors.append(f"{rec['probe']} was detached by the overhead guard after {g.get('after_s')} s: "
                          f"{g.get('reason')}; concluded on what it gathered")
    if failed:                          # its rules would read partial evidence
        c = Conclusion(status="error", verdict=None, errors=errors)
        for route in node.route:
            take(c, route.next, "not ruled out: a probe of the node could not be read")
        return c
    c = conclude(lp, node_id, env, focus)
    c.errors = errors + c.errors
    if interrupted:
        c.next, c.routes = [], []
    return c
