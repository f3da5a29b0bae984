"""Load a playbook file and validate it completely before anything attaches.

Every problem is reported at once, each as ``file:line:col: message``: YAML syntax,
unknown keys, wrong types, unknown probes and parameters, rule expressions that do not
parse or that name evidence no probe of the node provides, unknown node references,
unreachable nodes, and cycles without a bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..probes.manifest import ProbeManifest, registry
from ..probes.units import parse_duration_ns
from ..rules.expr import Expr, ExprError
from ..rules.template import placeholders
from . import yamlpos
from .diagnostics import Diagnostic, PlaybookError, did_you_mean
from .schema import API_VERSION, Node, Playbook, build


@dataclass
class LoadedPlaybook:
    """A validated playbook with what the engine needs resolved."""
    path: Path
    spec: Playbook
    text: str
    probes: dict[str, dict[str, ProbeManifest]] = field(default_factory=dict)  # node -> alias -> manifest
    exprs: dict[tuple[str, int, str], Expr] = field(default_factory=dict)       # (node, rule, when|about)
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.metadata.name

    def alias_of(self, node_id: str, probe_name: str) -> str:
        """The evidence name of a node's probe entry that has no `as:`."""
        for alias, m in self.probes[node_id].items():
            if m.name == probe_name:
                return alias
        raise KeyError(probe_name)

    def window_ns(self, node: Node) -> int:
        return parse_duration_ns(node.observe.window or self.spec.defaults.window)


def load_playbook(path: str | Path, text: str | None = None,
                  probes: dict[str, ProbeManifest] | None = None) -> LoadedPlaybook:
    """Parse and validate; raises PlaybookError listing every problem."""
    path = Path(path)
    fname = str(path)
    if text is None:
        try:
            if path.stat().st_size > yamlpos.MAX_BYTES:
                raise PlaybookError([Diagnostic(fname, 1, 1, f"file is larger than {yamlpos.MAX_BYTES} bytes")])
            raw = path.read_bytes()
        except OSError as e:
            raise PlaybookError([Diagnostic(fname, 1, 1, f"cannot read: {e.strerror}")]) from None
        data, loc = yamlpos.load(raw, fname)
        text = raw.decode("utf-8", errors="replace")
    else:
        data, loc = yamlpos.load(text, fname)
    if not isinstance(data, dict):
        raise PlaybookError([Diagnostic(fname, 1, 1, "a playbook is a mapping (apiVersion, kind, metadata, start, nodes)")])
    if data.get("apiVersion") not in (None, API_VERSION):
        loc.error(("apiVersion",), f"unsupported apiVersion {data.get('apiVersion')!r}; this version reads {API_VERSION}")
        data = {**data, "apiVersion": API_VERSION}
    spec: Playbook = build(Playbook, data, (), loc)
    lp = LoadedPlaybook(path=path, spec=spec, text=text)
    loc.text_lines = text.splitlines()  # type: ignore[attr-defined]
    _check_semantics(lp, loc, probes if probes is not None else registry())
    errors = [d for d in loc.diagnostics if d.severity == "error"]
    lp.warnings = [d for d in loc.diagnostics if d.severity != "error"]
    if errors:
        raise PlaybookError(loc.diagnostics)
    return lp


def _check_semantics(lp: LoadedPlaybook, loc: yamlpos.Located, reg: dict[str, ProbeManifest]) -> None:
    spec = lp.spec
    node_ids = set(spec.nodes)
    if not spec.nodes and "nodes" in (loc.pos and {p[0] for p in loc.pos if p}):
        loc.error(("nodes",), "a playbook needs at least one node")
    for i, nid in enumerate(spec.start):
        if nid not in node_ids:
            loc.error(("start", i), f"unknown node '{nid}'{did_you_mean(nid, node_ids)}")
    for nid, node in spec.nodes.items():
        base = ("nodes", nid)
        if node.max_visits < 1:
            loc.error(base + ("max_visits",), "max_visits must be at least 1")
        if node.observe.window is not None and parse_duration_ns(node.observe.window) <= 0:
            loc.error(base + ("observe", "window"), "the window must be longer than 0")
        if not node.probes:
            loc.error(base + ("probes",), "a node needs at least one probe")
        aliases: dict[str, ProbeManifest] = {}
        broken = False
        for j, use in enumerate(node.probes):
            upath = base + ("probes", j)
            m = reg.get(use.use)
            if m is None:
                loc.error(upath + ("use",), f"unknown probe '{use.use}'{did_you_mean(use.use, reg)}")
                broken = True
                continue
            alias = use.as_ or m.alias
            if alias in aliases:
                loc.error(upath, f"two probes of this node use the evidence name '{alias}' (set 'as')")
            aliases[alias] = m
            for pname, pval in use.with_.items():
                p = m.params.get(pname)
                if p is None:
                    loc.error(upath + ("with", pname), f"probe {m.name} has no parameter '{pname}'"
                              f"{did_you_mean(pname, m.params)}", key=True)
                    continue
                _check_param(loc, upath + ("with", pname), p.type, pval)
        lp.probes[nid] = aliases
        for k, rule in enumerate(node.conclude):
            rpath = base + ("conclude", k)
            for attr in ("when", "about"):
                src = getattr(rule, attr)
                if src is None:
                    continue
                e = _compile(loc, rpath + (attr,), src)
                if e is not None:
                    lp.exprs[(nid, k, attr)] = e
                    if not broken:
                        _check_refs(loc, rpath + (attr,), e.references(), aliases)
            if not broken:
                for name, col in placeholders(rule.explain):
                    _check_refs(loc, rpath + ("explain",), [(name, col)], aliases, template=True)
            for m_, nxt in enumerate(rule.next):
                if nxt not in node_ids:
                    loc.error(rpath + ("next", m_), f"unknown node '{nxt}'{did_you_mean(nxt, node_ids)}")
        for outcome in ("confirmed", "refuted", "inconclusive", "unobservable"):
            for m_, nxt in enumerate(getattr(node.on, outcome)):
                if nxt not in node_ids:
                    loc.error(base + ("on", outcome, m_), f"unknown node '{nxt}'{did_you_mean(nxt, node_ids)}")
    # graph checks run on the valid part of the graph (unknown references are left out)
    from .graph import build_graph, unbounded_cycles, unreachable
    g = build_graph(spec)
    for nid in unreachable(g):
        loc.error(("nodes", nid), f"node '{nid}' is unreachable from start", key=True)
    for cyc in unbounded_cycles(g):
        loc.error(("nodes", cyc[0]), "cycle " + " -> ".join(cyc + [cyc[0]])
                  + " has no bound: set max_visits > 1 on one of its nodes", key=True)


def _check_param(loc: yamlpos.Located, path: tuple[Any, ...], ptype: str, value: Any) -> None:
    if ptype == "duration":
        try:
            parse_duration_ns(value)
        except ValueError as e:
            loc.error(path, str(e))
    elif ptype == "bool" and not isinstance(value, bool):
        loc.error(path, f"expected true or false, got {value!r}")
    elif ptype == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        loc.error(path, f"expected a non-negative integer, got {value!r}")


def _compile(loc: yamlpos.Located, path: tuple[Any, ...], src: str) -> Expr | None:
    try:
        return Expr(src)
    except ExprError as e:
        line, col = loc.at(path)
        if e.col is not None and "\n" not in src:
            col += e.col - 1
        loc.diagnostics.append(Diagnostic(loc.file, line, col, str(e)))
        return None


def _check_refs(loc: yamlpos.Located, path: tuple[Any, ...], refs: list[tuple[str, int]],
                aliases: dict[str, ProbeManifest], template: bool = False) -> None:
    for ref, col in refs:
        parts = ref.split(".")
        root = parts[0]
        if root not in aliases:
            what = "placeholder" if template else "expression"
            _at(loc, path, ref, f"{what} names '{root}', which no probe of this node provides "
                f"(available: {', '.join(sorted(aliases)) or 'none'}){did_you_mean(root, aliases)}")
            continue
        m = aliases[root]
        known = m.field_paths()
        types = {f.path: f.type for f in m.evidence}
        for i in range(1, len(parts)):
            sub = ".".join(parts[1:i + 1])
            parent = ".".join(parts[1:i])
            if parent and types.get(parent) in ("list", "object"):
                break  # inside a list or free-form object: not checked statically
            if sub not in known:
                if template and parts[i].isdigit():
                    break
                siblings = [p.split(".")[-1] for p in known if p.rsplit(".", 1)[0] == parent or
                            ("." not in p and not parent)]
                _at(loc, path, ref, f"probe {m.name} has no evidence field '{root}.{sub}'"
                    f"{did_you_mean(parts[i], siblings)}")
                break


def _at(loc: yamlpos.Located, path: tuple[Any, ...], ref: str, msg: str) -> None:
    """Point at the reference itself: search for it in the source from the value's line
    (folded and quoted scalars move columns, so offsets into the value would lie)."""
    line, col = loc.at(path)
    lines: list[str] = getattr(loc, "text_lines", [])
    for i in range(line - 1, min(line + 30, len(lines))):
        start = col - 1 if i == line - 1 else 0
        pos = lines[i].find(ref, start)
        if pos >= 0:
            line, col = i + 1, pos + 1
            break
    loc.diagnostics.append(Diagnostic(loc.file, line, col, msg))
