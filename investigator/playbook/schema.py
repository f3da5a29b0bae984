"""The playbook schema, defined once as typed classes.

Validation (``build``) and the JSON Schema (``json_schema``, for editors' YAML plugins and
``investigate schema``) both come from these classes and their field docs.  A field
whose YAML key differs from its Python name says so with ``key=``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, NewType, Union

from ..probes.units import parse_duration_ns
from .diagnostics import did_you_mean
from .yamlpos import Located, Path

API_VERSION = "investigator/v1"
Duration = NewType("Duration", str)        # "10ms", "5s"
Expression = NewType("Expression", str)    # a CEL expression
Template = NewType("Template", str)        # text with {evidence.path} placeholders

Verdict = Literal["deadlock", "starvation", "wrong-context", "contention", "hung-task", "overload",
                  "alloc-failure", "priority-inversion", "throttled", "memory-pressure", "io-stall", "healthy", "refuted", "inconclusive"]
OUTCOMES = ("confirmed", "refuted", "inconclusive", "unobservable")


def doc(text: str, key: str | None = None, **kw: Any) -> Any:
    md = {"doc": text}
    if key:
        md["key"] = key
    return field(metadata=md, **kw)


@dataclass
class Metadata:
    name: str = doc("Short name of the playbook (letters, digits, dashes).")
    description: str = doc("What question this playbook answers.", default="")
    owners: list[str] = doc("Who maintains it (team or people).", default_factory=list)
    maturity: Literal["experimental", "beta", "stable"] = doc("How far it can be trusted.", default="experimental")


@dataclass
class ProbeUse:
    use: str = doc("A probe from the library (see `investigate probes`), e.g. sched.runqlat; "
                   "local/NAME for the playbook folder's own (needs --allow-custom-probes).", default="")
    bpftrace: str | None = doc("Instead of `use`: a bpftrace program, for quick hypotheses (custom code run "
                               "as root: needs --allow-custom-probes). Its maps "
                               "become evidence (`@name` as `<as>.name`), its printf lines `<as>.output`.",
                               default=None)
    as_: str | None = doc("Name of its evidence in rules (default: the probe's alias, e.g. runqlat; bt for "
                          "bpftrace).", key="as", default=None)
    with_: dict[str, Any] = doc("Probe parameters (durations as 10ms, 5s).", key="with", default_factory=dict)
    optional: bool = doc("When it cannot attach on this machine the node observes without it (its "
                         "rules that read it are skipped, and the report says why); by default the "
                         "node is then unobservable.", default=False)


@dataclass
class Observe:
    window: Duration | None = doc("How long to observe before concluding (default: the playbook's).", default=None)


@dataclass
class Rule:
    when: Expression = doc("CEL expression over the evidence; the first rule that holds concludes the node.")
    verdict: Verdict = doc("The verdict when it holds.")
    explain: Template = doc("One sentence for the report; {path} fills in evidence values.", default="")
    about: Expression | None = doc("CEL expression giving the finding's entities: an object with "
                                   "tasks (with roles), cpus and locks lists, e.g. runqlat.worst.", default=None)
    confidence: Literal["low", "medium", "high"] = doc("How sure the verdict is when the rule holds.", default="medium")
    next: list[str] = doc("Nodes to visit next when this rule concludes.", default_factory=list)


@dataclass
class Edges:
    confirmed: list[str] = doc("Next nodes when a problem verdict was reached.", default_factory=list)
    refuted: list[str] = doc("Next nodes when the hypothesis was refuted (healthy/refuted).", default_factory=list)
    inconclusive: list[str] = doc("Next nodes when no rule concluded.", default_factory=list)
    unobservable: list[str] = doc("Next nodes when the probes could not attach here.", default_factory=list)


@dataclass
class Route:
    when: Expression = doc("CEL expression over the node's evidence: the route is taken when it holds, "
                           "whichever rule concluded the node.")
    next: list[str] = doc("Nodes to visit when it holds.")
    because: Template = doc("Why, one sentence for the report; {path} fills in evidence values.", default="")
    about: Expression | None = doc("CEL expression for the finding this route passes on (as a rule's `about`): "
                                   "a node it leads to whose `focus` comes from this node is aimed at it.",
                                   default=None)


@dataclass
class Focus:
    from_: str | list[str] = doc(
        "The node whose finding aims this one, or a list of them (the latest of those that led here "
        "with a finding wins): each a node with an edge to it.  The finding is the `about` of the route "
        "that led here, else of the rule that concluded that node.  In a node imported into a playbook "
        "that lacks some of them, those are left out.", key="from")
    tasks: list[Literal["victim", "culprit", "waiter", "holder", "bystander"]] = doc(
        "Roles of that finding's tasks: their TIDs are the only tasks this node's probes watch "
        "(in the kernel), and rules read the finding as `focus`.")
    cgroup: bool = doc(
        "Watch the cgroup subtree of the first of those tasks that has a cgroup (the finding's, else the "
        "one read when the source node concluded) instead of the tasks alone: every task in that cgroup "
        "and below it, in the kernel (the cgroup v2 filter of --cgroup).  Where that cgroup is no cgroup v2 "
        "folder here, or lies outside the run's --cgroup, the node watches the tasks and says why.",
        default=False)

    def sources(self) -> list[str]:
        """The nodes whose findings may aim this one, in the order given."""
        items = [self.from_] if isinstance(self.from_, str) else self.from_ if isinstance(self.from_, list) else []
        return [x for x in items if isinstance(x, str) and x]


@dataclass
class Node:
    hypothesis: str = doc("The hypothesis this node tests, in words.")
    probes: list[ProbeUse] = doc("Probes to attach for the observation.")
    conclude: list[Rule] = doc("Ordered rules mapping evidence to a verdict.")
    observe: Observe = doc("The observation.", default_factory=Observe)
    otherwise: Verdict = doc("Verdict when no rule holds.", default="inconclusive")
    on: Edges = doc("Next nodes per outcome (added to the rule's own next).", default_factory=Edges)
    max_visits: int = doc("How many times the node may run in one investigation (needed on cycles).", default=1)
    focus: Focus | None = doc("Aim this node at what an earlier node found: its probes watch only the "
                              "tasks of that node's finding in the given roles.", default=None)
    route: list[Route] = doc("Edges taken on what was seen, not on the verdict: every route whose `when` "
                             "holds is taken once the node concludes (a triage sending each finding to the "
                             "node that looks into it).  A route that reads an optional probe that could "
                             "not attach, or whose expression fails, is taken: the node could not rule it out.",
                             default_factory=list)

    def successors(self) -> list[tuple[str, str]]:
        """Every edge out of this node, as (next node, what leads there: a verdict, an
        outcome, or "route")."""
        out = [(n, str(r.verdict)) for r in self.conclude for n in r.next]
        out += [(n, o) for o in OUTCOMES for n in getattr(self.on, o)]
        return out + [(n, "route") for r in self.route for n in r.next]


@dataclass
class Import:
    file: str = doc("A node library (kind: NodeLibrary) or another playbook, relative to this "
                    "playbook's folder and inside it.")
    nodes: list[str] | None = doc("Which of its nodes to use (default: all); nodes they lead to "
                                  "come along.", default=None)


@dataclass
class Defaults:
    window: Duration = doc("Observation window of nodes that do not set one.", default=Duration("5s"))


@dataclass
class Playbook:
    apiVersion: Literal["investigator/v1"] = doc("Schema version: investigator/v1.")
    kind: Literal["Playbook"] = doc("Always Playbook.")
    metadata: Metadata = doc("Name, description, owners, maturity.")
    start: list[str] = doc("Nodes that run first, at the same time.")
    nodes: dict[str, Node] = doc("The graph's nodes by id (imported nodes join them).", default_factory=dict)
    defaults: Defaults = doc("Defaults for every node.", default_factory=Defaults)
    imports: list[Import] = doc("Nodes reused from other files (shared building blocks).",
                                default_factory=list)
    vars: dict[str, Any] = doc("Named expectations the rules read as `vars.NAME` (a number, string, "
                               "boolean or a list of them), e.g. the CPUs reserved for an application; "
                               "`investigate --set NAME=VALUE` overrides one for a run.",
                               default_factory=dict)


@dataclass
class NodeLibrary:
    apiVersion: Literal["investigator/v1"] = doc("Schema version: investigator/v1.")
    kind: Literal["NodeLibrary"] = doc("A file of reusable nodes, imported by playbooks.")
    metadata: Metadata = doc("Name, description, owners, maturity.")
    nodes: dict[str, Node] = doc("The reusable nodes by id.")
    vars: dict[str, Any] = doc("Named expectations the rules read as `vars.NAME` (a number, string, "
                               "boolean or a list of them), e.g. the CPUs reserved for an application; "
                               "defaults for the playbooks that import its nodes (theirs win).",
                               default_factory=dict)


# --------------------------------------------------------------------------- validation

def _yaml_key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("key", f.name))


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is Duration:
        return "a duration (10ms, 5s)"
    if tp in (Expression, Template, str):
        return "a string"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true or false"
    if tp is float:
        return "a number"
    if origin is list:
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    return str(tp)


@functools.lru_cache(maxsize=None)
def _hints(tp: type) -> dict[str, Any]:
    """A schema class's resolved annotations (resolving them is most of building a node)."""
    return typing.get_type_hints(tp)


def build(tp: Any, value: Any, path: Path, loc: Located) -> Any:
    """Convert ``value`` to ``tp``, reporting every problem into ``loc``; returns the value
    built (with defaults where something was wrong) so that later checks can go on."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(tp)):
            return None
        lists = [a for a in args if typing.get_origin(a) is list]
        if isinstance(value, list) and lists:
            return build(lists[0], value, path, loc)
        return build(next((a for a in args if a not in lists), args[0]), value, path, loc)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            loc.error(path, f"expected {_type_name(tp)}, got {_describe(value)}")
            value = {}
        fields = {_yaml_key(f): f for f in dataclasses.fields(tp)}
        hints = _hints(tp)
        kwargs = {}
        for k in value:
            if k not in fields:
                loc.error(path + (k,), f"unknown key '{k}'{did_you_mean(str(k), fields)}", key=True)
        for key, f in fields.items():
            if key in value:
                kwargs[f.name] = build(hints[f.name], value[key], path + (key,), loc)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
                loc.error(path, f"missing required key '{key}'")
                kwargs[f.name] = _empty(hints[f.name])
        return tp(**kwargs)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            loc.error(path, f"expected a list, got {_describe(value)}")
            return []
        return [build(item, v, path + (i,), loc) for i, v in enumerate(value)]
    if origin is dict:
        _, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            loc.error(path, f"expected a mapping, got {_describe(value)}")
            return {}
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                loc.error(path + (k,), f"keys must be strings, got {_describe(k)}", key=True)
                continue
            out[k] = build(vt, v, path + (k,), loc)
        return out
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            loc.error(path, f"expected one of {', '.join(map(str, choices))}, got {_describe(value)}"
                      + (did_you_mean(value, map(str, choices)) if isinstance(value, str) else ""))
            return choices[0]
        return value
    if tp is Duration:
        try:
            parse_duration_ns(value)
        except ValueError as e:
            loc.error(path, str(e))
            return Duration("1s")
        return value
    base = getattr(tp, "__supertype__", tp)
    if base is int and (not isinstance(value, int) or isinstance(value, bool)):
        loc.error(path, f"expected an integer, got {_describe(value)}")
        return 0
    if base is str and not isinstance(value, str):
        loc.error(path, f"expected a string, got {_describe(value)}")
        return ""
    if base is bool and not isinstance(value, bool):
        loc.error(path, f"expected true or false, got {_describe(value)}")
        return False
    return value


def _empty(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is list:
        return []
    if origin is dict:
        return {}
    if dataclasses.is_dataclass(tp):
        try:
            return tp(**{f.name: _empty(_hints(tp)[f.name]) for f in dataclasses.fields(tp)
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING})  # type: ignore[misc]
        except TypeError:
            return None
    if origin is Literal:
        return typing.get_args(tp)[0]
    base = getattr(tp, "__supertype__", tp)
    return {str: "", int: 0, bool: False}.get(base, None)


def _describe(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return f"boolean {str(v).lower()}"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, str):
        return f"string {v!r}"
    return f"{type(v).__name__} {v!r}"


# --------------------------------------------------------------------------- JSON Schema

def json_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}

    def sch(tp: Any) -> dict[str, Any]:
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            null = [{"type": "null"}] if len(args) < len(typing.get_args(tp)) else []
            return {"anyOf": [sch(a) for a in args] + null}
        if tp is Any:
            return {}
        if dataclasses.is_dataclass(tp):
            name = tp.__name__
            if name not in defs:
                defs[name] = {}
                hints = _hints(tp)
                props, req = {}, []
                for f in dataclasses.fields(tp):
                    p = sch(hints[f.name])
                    p["description"] = f.metadata.get("doc", "")
                    if f.default is not dataclasses.MISSING and f.default is not None:
                        p["default"] = f.default
                    props[_yaml_key(f)] = p
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
                        req.append(_yaml_key(f))
                defs[name] = {"type": "object", "properties": props, "required": req,
                              "additionalProperties": False}
            return {"$ref": f"#/$defs/{name}"}
        if origin is list:
            return {"type": "array", "items": sch(typing.get_args(tp)[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": sch(typing.get_args(tp)[1])}
        if origin is Literal:
            return {"enum": list(typing.get_args(tp))}
        if tp is Duration:
            return {"type": "string", "pattern": r"^\d+(\.\d+)?(ns|us|µs|ms|s|m|min|h)$"}
        base = getattr(tp, "__supertype__", tp)
        return {"type": {str: "string", int: "integer", bool: "boolean", float: "number"}[base]}

    root = sch(Playbook)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://investigator.dev/schema/playbook-v1.json",
            "title": "investigator playbook", **root, "$defs": defs}
