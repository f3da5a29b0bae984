"""Load a playbook file and validate it completely before anything attaches.

Every problem is reported at once, each as ``file:line:col: message``: YAML syntax,
unknown keys, wrong types, unknown probes and parameters, rule expressions that do not
parse or that name evidence no probe of the node provides, unknown node references,
unreachable nodes, and cycles without a bound.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..analyze.waitfor import ALIAS as WAITFOR
from ..probes.manifest import ProbeManifest, focus_manifest, registry, waitfor_manifest
from ..probes.units import parse_duration_ns
from ..rules.expr import Expr, ExprError
from ..rules.focus import ALIAS as FOCUS
from ..rules.template import placeholders, spec_problems
from . import yamlpos
from .diagnostics import Diagnostic, PlaybookError, did_you_mean
from .schema import API_VERSION, OUTCOMES, Import, Node, NodeLibrary, Playbook, build


MAX_IMPORTS = 32


@dataclass
class LoadedPlaybook:
    """A validated playbook with what the engine needs resolved."""
    path: Path
    spec: Playbook
    text: str
    probes: dict[str, dict[str, ProbeManifest]] = field(default_factory=dict)  # node -> alias -> manifest
    exprs: dict[tuple[str, int, str], Expr] = field(default_factory=dict)       # (node, rule, when|about)
    warnings: list[Diagnostic] = field(default_factory=list)
    imported: dict[str, str] = field(default_factory=dict)   # relative path -> text of imported files
    origin: dict[str, str] = field(default_factory=dict)     # node id -> file it comes from
    custom: list[str] = field(default_factory=list)          # file:line:col of each bpftrace program
    custom_allowed: bool = False                             # loaded with --allow-custom-probes

    @property
    def name(self) -> str:
        return self.spec.metadata.name

    def alias_of(self, node_id: str, probe_name: str) -> str:
        """The evidence name of a node's probe entry that has no `as:`."""
        if not probe_name:
            return "bt"
        for alias, m in self.probes[node_id].items():
            if m.name == probe_name:
                return alias
        raise KeyError(probe_name)

    def window_ns(self, node: Node) -> int:
        return parse_duration_ns(node.observe.window or self.spec.defaults.window)


def _read(path: Path, fname: str) -> str:
    try:
        if path.stat().st_size > yamlpos.MAX_BYTES:
            raise PlaybookError([Diagnostic(fname, 1, 1, f"file is larger than {yamlpos.MAX_BYTES} bytes")])
        raw = path.read_bytes()
    except OSError as e:
        raise PlaybookError([Diagnostic(fname, 1, 1, f"cannot read: {e.strerror}")]) from None
    yamlpos.load(raw, fname)  # located errors for binary or non-UTF-8 input
    return raw.decode("utf-8")


def _parse(text: str, fname: str, what: str) -> tuple[dict[str, Any], yamlpos.Located]:
    data, loc = yamlpos.load(text, fname)
    loc.text_lines = text.splitlines()  # type: ignore[attr-defined]
    if not isinstance(data, dict):
        raise PlaybookError([Diagnostic(fname, 1, 1, f"a {what} is a mapping (apiVersion, kind, metadata, ...)")])
    if data.get("apiVersion") not in (None, API_VERSION):
        loc.error(("apiVersion",), f"unsupported apiVersion {data.get('apiVersion')!r}; this version reads {API_VERSION}")
        data = {**data, "apiVersion": API_VERSION}
    return data, loc


LOCAL_PREFIX = "local/"


def load_playbook(path: str | Path, text: str | None = None,
                  probes: dict[str, ProbeManifest] | None = None,
                  imports: dict[str, str] | None = None,
                  allow_custom_probes: bool = False, to_run: bool = True) -> LoadedPlaybook:
    """Parse and validate; raises PlaybookError listing every problem.

    ``text`` replaces reading ``path``; ``imports`` (relative path -> text) replaces reading
    imported files (replay of a bundle, which carries them).  Probes named ``local/NAME``
    are the playbook folder's own (``probes/NAME.yaml`` beside it): they load BPF objects
    that did not ship with the tool, so they are refused unless ``allow_custom_probes``.
    A bpftrace program is code run as root: refused too unless ``allow_custom_probes``,
    except when ``to_run`` is False (replay, test, graph: the program is only read)."""
    path = Path(path)
    fname = str(path)
    if text is None:
        text = _read(path, fname)
    data, loc = _parse(text, fname, "playbook")
    spec: Playbook = build(Playbook, data, (), loc)
    lp = LoadedPlaybook(path=path, spec=spec, text=text)
    where: dict[str, tuple[yamlpos.Located, tuple[Any, ...]]] = {nid: (loc, ("nodes", nid)) for nid in spec.nodes}
    locs = [loc]
    for i, imp in enumerate(spec.imports[:MAX_IMPORTS]):
        _import(lp, imp, ("imports", i), loc, where, locs, imports)
    if len(spec.imports) > MAX_IMPORTS:
        loc.error(("imports",), f"at most {MAX_IMPORTS} imports")
    for name, value in list(spec.vars.items()):
        _check_var(loc, ("vars", name), name, value)
    reg = dict(probes if probes is not None else registry())
    lp.custom_allowed = allow_custom_probes
    _add_local_probes(lp, loc, where, reg, allow_custom_probes)
    _check_semantics(lp, loc, where, reg)
    _check_custom_code(lp, where, reg, refuse=to_run and not allow_custom_probes)
    diags = [d for lc in locs for d in lc.diagnostics]
    lp.warnings = [d for d in diags if d.severity != "error"]
    if any(d.severity == "error" for d in diags):
        raise PlaybookError(diags)
    return lp


def _add_local_probes(lp: LoadedPlaybook, loc: yamlpos.Located,
                      where: dict[str, tuple[yamlpos.Located, tuple[Any, ...]]],
                      reg: dict[str, ProbeManifest], allowed: bool) -> None:
    from ..probes.manifest import ManifestError, load_manifest
    base = lp.path.resolve().parent
    for nid, node in lp.spec.nodes.items():
        nloc, npath = where[nid]
        for j, use in enumerate(node.probes):
            if not use.use or not use.use.startswith(LOCAL_PREFIX) or use.use in reg:
                continue
            upath = npath + ("probes", j, "use")
            name = use.use[len(LOCAL_PREFIX):]
            manifest = (base / "probes" / f"{name}.yaml").resolve()
            if not name or "/" in name or not manifest.is_relative_to(base):
                nloc.error(upath, f"custom probe '{use.use}': expected local/NAME for probes/NAME.yaml "
                                  "beside the playbook")
                continue
            if not allowed:
                nloc.error(upath, f"custom probe '{use.use}' loads a BPF object from the playbook's folder "
                                  "that did not ship with investigator: run with --allow-custom-probes "
                                  "to allow it")
                continue
            try:
                m = load_manifest(manifest)
            except (OSError, ManifestError, ValueError, KeyError, TypeError) as e:
                nloc.error(upath, f"custom probe '{use.use}': {e}")
                continue
            if not m.object_path.resolve().is_relative_to(base):
                nloc.error(upath, f"custom probe '{use.use}': its object is outside the playbook's folder")
                continue
            from ..probes.manifest import collectors
            if m.collector not in collectors():   # playbooks never bring Python code
                nloc.error(upath, f"custom probe '{use.use}': collector '{m.collector}' is not one of "
                                  f"investigator's ({', '.join(collectors())})")
                continue
            reg[use.use] = m


def _check_custom_code(lp: LoadedPlaybook, where: dict[str, tuple[yamlpos.Located, tuple[Any, ...]]],
                       reg: dict[str, ProbeManifest], refuse: bool) -> None:
    """bpftrace programs (code run as root) need the consent, and function targets known to
    be risky (probes/risky.py) are warned about where the playbook names them: in a
    program's attach points and in a probe's symbol parameters (``with: {function: ...}``).
    A run refuses them at attach time on the kernels below their floor."""
    from ..probes import risky
    for nid, node in lp.spec.nodes.items():
        nloc, npath = where[nid]
        for j, use in enumerate(node.probes):
            upath = npath + ("probes", j)
            if isinstance(use.bpftrace, str):
                line, col = nloc.at(upath + ("bpftrace",))
                lp.custom.append(f"{nloc.file}:{line}:{col}")
                if refuse:
                    nloc.error(upath + ("bpftrace",), "a bpftrace program is custom code that runs as "
                               "root: run with --allow-custom-probes to allow it")
                for p in risky.attach_points(use.bpftrace):
                    why = risky.warning(p.target) if p.provider in risky.FUNCTION_HOOKS else None
                    if why:
                        _at(nloc, upath + ("bpftrace",), p.spec, why, severity="warning")
                continue
            m = reg.get(use.use)
            if m is None:
                continue
            for pname, value in use.with_.items():
                p_ = m.params.get(pname)
                if p_ is not None and p_.type == "symbol" and isinstance(value, str) and any(
                        a.kind in risky.FUNCTION_HOOKS and any("{" + pname + "}" in t for t in a.programs.values())
                        for a in m.hooks):
                    why = risky.warning(value)
                    if why:
                        nloc.error(upath + ("with", pname), why, severity="warning")


def _import(lp: LoadedPlaybook, imp: Import, ipath: tuple[Any, ...], loc: yamlpos.Located,
            where: dict[str, tuple[yamlpos.Located, tuple[Any, ...]]], locs: list[yamlpos.Located],
            given: dict[str, str] | None) -> None:
    rel = imp.file
    base = lp.path.resolve().parent
    target = (base / rel).resolve()
    if Path(rel).is_absolute() or not target.is_relative_to(base):
        loc.error(ipath + ("file",), f"import '{rel}' is outside the playbook's folder")
        return
    fname = str(lp.path.parent / rel)
    try:
        text = given[rel] if given is not None else _read(target, fname)   # a bundle: only what it carries
        data, iloc = _parse(text, fname, "node library")
    except PlaybookError as e:
        lines = "; ".join(str(d) for d in e.diagnostics)
        loc.error(ipath + ("file",), f"cannot import '{rel}': {lines}")
        return
    except KeyError:
        loc.error(ipath + ("file",), f"the bundle does not carry '{rel}'")
        return
    locs.append(iloc)
    if data.get("kind") == "Playbook":   # nodes may come from another playbook as well
        data = {k: v for k, v in data.items() if k in ("apiVersion", "metadata", "nodes", "vars")}
        data["kind"] = "NodeLibrary"
    lib: NodeLibrary = build(NodeLibrary, data, (), iloc)
    if data.get("imports"):
        iloc.error(("imports",), "imported files cannot import further")
    for name, value in lib.vars.items():      # the importing playbook's own values win
        if _check_var(iloc, ("vars", name), name, value):
            lp.spec.vars.setdefault(name, value)
    wanted = list(lib.nodes) if imp.nodes is None else list(imp.nodes)
    for j, nid in enumerate(imp.nodes or []):
        if nid not in lib.nodes:
            loc.error(ipath + ("nodes", j), f"'{rel}' has no node '{nid}'{did_you_mean(nid, lib.nodes)}")
    # nodes the wanted ones lead to come along
    seen: set[str] = set()
    while wanted:
        nid = wanted.pop()
        if nid in seen or nid not in lib.nodes:
            continue
        seen.add(nid)
        n = lib.nodes[nid]
        wanted += [x for x, _ in n.successors()]
    for nid in sorted(seen):
        if nid in lp.spec.nodes:
            loc.error(ipath, f"node '{nid}' from '{rel}' clashes with a node of the same name")
            continue
        lp.spec.nodes[nid] = lib.nodes[nid]
        lp.origin[nid] = rel
        where[nid] = (iloc, ("nodes", nid))
    lp.imported[rel] = text


def _check_semantics(lp: LoadedPlaybook, loc: yamlpos.Located,
                     where: dict[str, tuple[yamlpos.Located, tuple[Any, ...]]],
                     reg: dict[str, ProbeManifest]) -> None:
    spec = lp.spec
    node_ids = set(spec.nodes)
    if not PLAYBOOK_NAME.fullmatch(spec.metadata.name):
        # it names the bundle folder: never a path, never hidden, never empty
        loc.error(("metadata", "name"), f"the playbook's name {spec.metadata.name[:80]!r} is not a short name: "
                                        "letters, digits, '-', '_' and '.', starting with a letter or digit, "
                                        "at most 64 characters")
    for i, nid in enumerate(spec.start):
        if nid not in node_ids:
            loc.error(("start", i), f"unknown node '{nid}'{did_you_mean(nid, node_ids)}")
    for nid, node in spec.nodes.items():
        nloc, base = where[nid]
        if node.max_visits < 1:
            nloc.error(base + ("max_visits",), "max_visits must be at least 1")
        if node.observe.window is not None and parse_duration_ns(node.observe.window) <= 0:
            nloc.error(base + ("observe", "window"), "the window must be longer than 0")
        if not node.probes:
            nloc.error(base + ("probes",), "a node needs at least one probe")
        compiled: dict[tuple[int, str], Expr | None] = {}
        roots: set[str] = set()         # the top-level names the node's rules read
        for k, rule in enumerate(node.conclude):
            for attr in ("when", "about"):
                src = getattr(rule, attr)
                if src:
                    e = compiled[(k, attr)] = _compile(nloc, base + ("conclude", k, attr), src)
                    roots |= {name.split(".")[0] for name, _ in e.references()} if e is not None else set()
            roots |= {name.split(".")[0] for name, _ in placeholders(rule.explain)}
        for k, route in enumerate(node.route):
            for attr, key in (("when", "route"), ("about", "route_about")):
                src = getattr(route, attr)
                if src:
                    e = compiled[(k, key)] = _compile(nloc, base + ("route", k, attr), src)
                    roots |= {name.split(".")[0] for name, _ in e.references()} if e is not None else set()
            roots |= {name.split(".")[0] for name, _ in placeholders(route.because)}
        aliases: dict[str, ProbeManifest] = {}
        broken = False
        for j, use in enumerate(node.probes):
            upath = base + ("probes", j)
            if (use.bpftrace is None) == (not use.use):
                nloc.error(upath, "a probe entry needs exactly one of 'use' (a probe of the library) "
                                  "and 'bpftrace' (a program)")
                broken = True
                continue
            if use.bpftrace is not None:
                from ..probes.manifest import bpftrace_manifest
                alias = use.as_ or "bt"
                if alias in aliases:
                    nloc.error(upath, f"two probes of this node use the evidence name '{alias}' (set 'as')")
                if len(use.bpftrace) > 20000 or not use.bpftrace.strip():
                    nloc.error(upath + ("bpftrace",), "a bpftrace program of 1 to 20000 characters")
                if use.with_:
                    nloc.error(upath + ("with",), "a bpftrace program takes no parameters")
                aliases[alias] = bpftrace_manifest()
                continue
            m = reg.get(use.use)
            if m is None:
                nloc.error(upath + ("use",), f"unknown probe '{use.use}'{did_you_mean(use.use, reg)}")
                broken = True
                continue
            alias = use.as_ or _evidence_name(nloc, upath, m, roots, node.probes)
            if alias == WAITFOR:
                nloc.error(upath + ("as",), f"'{WAITFOR}' is the node's wait-for graph (an analyzer): "
                                            "choose another evidence name")
            if alias == VARS:
                nloc.error(upath + ("as",), f"'{VARS}' names the playbook's vars: choose another evidence name")
            if alias in aliases:
                nloc.error(upath, f"two probes of this node use the evidence name '{alias}' (set 'as')")
            aliases[alias] = m
            for pname, pval in use.with_.items():
                p = m.params.get(pname)
                if p is None:
                    nloc.error(upath + ("with", pname), f"probe {m.name} has no parameter '{pname}'"
                               f"{did_you_mean(pname, m.params)}", key=True)
                    continue
                _check_param(nloc, upath + ("with", pname), p.type, pval, p.max)
            for pname, p in m.params.items():
                if p.default is None and not p.syscall and pname not in use.with_:
                    nloc.error(upath + ("use",), f"probe {m.name} needs the parameter '{pname}' "
                               f"(with: {{{pname}: ...}}): {p.help}")
        if any("edges" in m.field_paths() for m in aliases.values()):
            aliases = {**aliases, WAITFOR: waitfor_manifest()}
        if node.focus is not None:
            _check_focus(nloc, base + ("focus",), nid, node.focus, spec, node_ids, nid in lp.origin)
            if FOCUS in aliases:
                nloc.error(base + ("focus",), f"'{FOCUS}' names the node's focus: give the probe that uses it "
                                              "another evidence name (as:)")
            aliases = {**aliases, FOCUS: focus_manifest()}
        lp.probes[nid] = aliases
        for k, rule in enumerate(node.conclude):
            rpath = base + ("conclude", k)
            for attr in ("when", "about"):
                e = compiled.get((k, attr))     # None: missing, of the wrong type or not CEL (reported)
                if e is not None:
                    lp.exprs[(nid, k, attr)] = e
                    if not broken:
                        _check_refs(nloc, rpath + (attr,), e.references(), aliases, spec.vars)
            for fmt, why in spec_problems(rule.explain):
                _at(nloc, rpath + ("explain",), ":" + fmt + "}", why)
            if not broken:
                for name, col in placeholders(rule.explain):
                    if name.split(".")[0] == "about" and rule.about is not None:
                        continue  # the rule's own finding: free-form, checked when it renders
                    _check_refs(nloc, rpath + ("explain",), [(name, col)], aliases, spec.vars, template=True)
            for m_, nxt in enumerate(rule.next):
                if nxt not in node_ids:
                    nloc.error(rpath + ("next", m_), f"unknown node '{nxt}'{did_you_mean(nxt, node_ids)}")
        for outcome in OUTCOMES:
            for m_, nxt in enumerate(getattr(node.on, outcome)):
                if nxt not in node_ids:
                    nloc.error(base + ("on", outcome, m_), f"unknown node '{nxt}'{did_you_mean(nxt, node_ids)}")
        for k, route in enumerate(node.route):
            rpath = base + ("route", k)
            for attr, key in (("when", "route"), ("about", "route_about")):
                e = compiled.get((k, key))
                if e is not None:
                    lp.exprs[(nid, k, key)] = e
                    if not broken:
                        _check_refs(nloc, rpath + (attr,), e.references(), aliases, spec.vars)
            for fmt, why in spec_problems(route.because):
                _at(nloc, rpath + ("because",), ":" + fmt + "}", why)
            if not broken:
                for name, col in placeholders(route.because):
                    _check_refs(nloc, rpath + ("because",), [(name, col)], aliases, spec.vars, template=True)
            if not route.next:
                nloc.error(rpath + ("next",), "a route needs at least one node to go to")
            for m_, nxt in enumerate(route.next):
                if nxt not in node_ids:
                    nloc.error(rpath + ("next", m_), f"unknown node '{nxt}'{did_you_mean(nxt, node_ids)}")
    if not spec.nodes:
        loc.error(("nodes",), "a playbook needs at least one node (its own or imported)")
    # graph checks run on the valid part of the graph (unknown references are left out)
    from .graph import unbounded_cycles, unreachable
    for nid in unreachable(spec):
        nloc, base = where[nid]
        nloc.error(base, f"node '{nid}' is unreachable from start", key=True)
    for cyc in unbounded_cycles(spec):
        nloc, base = where[cyc[0]]
        nloc.error(base, "cycle " + " -> ".join(cyc + [cyc[0]])
                   + " has no bound: set max_visits > 1 on one of its nodes", key=True)


def _check_focus(loc: yamlpos.Located, path: tuple[Any, ...], nid: str, focus: Any, spec: Playbook,
                 node_ids: set[str], imported: bool) -> None:
    """A focus names nodes with an edge to this one, and at least one role.  A node imported
    into a playbook that lacks some of its sources is aimed by those it has (one at least)."""
    sources = focus.sources()
    if not sources:
        loc.error(path + ("from",), "a focus needs the node whose finding aims this one")
    present = 0
    for j, src_id in enumerate(sources):
        at = path + ("from",) + ((j,) if isinstance(focus.from_, list) else ())
        src = spec.nodes.get(src_id)
        if src is None:
            if not imported:
                loc.error(at, f"unknown node '{src_id}'{did_you_mean(src_id, node_ids)}")
            continue
        present += 1
        if nid not in {x for x, _ in src.successors()}:
            loc.error(at, f"node '{src_id}' has no edge to '{nid}': a focus comes from a node "
                          "that leads here (its rule's next, its on: or its route:)")
    if imported and sources and not present:
        loc.error(path + ("from",), f"none of the nodes this focus comes from ({', '.join(sources)}) "
                                    "is in the playbook that imports it")
    if not focus.tasks:
        loc.error(path + ("tasks",), "a focus needs at least one role (victim, culprit, waiter, holder, bystander)")


def _evidence_name(loc: yamlpos.Located, path: tuple[Any, ...], m: ProbeManifest, roots: set[str],
                   uses: list[Any]) -> str:
    """The evidence name of a probe entry without ``as:``: the probe's alias, or a former
    alias of it (with a warning) when the node's rules read that one and not the alias."""
    if m.alias not in roots:
        taken = {u.as_ for u in uses if u.as_}
        for old in m.former_aliases:
            if old in roots and old not in taken:
                loc.error(path, f"probe {m.name}'s evidence is now named '{m.alias}'; this node's rules "
                                f"use its former name '{old}', still read as before (rename it)",
                          severity="warning")
                return old
    return m.alias


SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,127}")
VARS = "vars"
PLAYBOOK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
SCALARS = (str, int, float, bool)


def _check_var(loc: yamlpos.Located, path: tuple[Any, ...], name: str, value: Any) -> bool:
    """A var is a name and a number, string, boolean or a list of them (at most 1024)."""
    if not (isinstance(name, str) and VAR_NAME.fullmatch(name)):
        loc.error(path, f"a var name is letters, digits and _ (not starting with a digit), got {name!r}", key=True)
        return False
    if isinstance(value, SCALARS) or (isinstance(value, list) and len(value) <= 1024
                                      and all(isinstance(v, SCALARS) for v in value)):
        return True
    loc.error(path, f"var '{name}' must be a number, string, boolean or a list of them, got {value!r}")
    return False


class VarError(ValueError):
    """A --set that names no var of the playbook or gives a value of another kind."""


def apply_overrides(lp: LoadedPlaybook, sets: list[str]) -> dict[str, Any]:
    """Apply ``NAME=VALUE`` overrides (VALUE in YAML: 1, [0, 1], text) to the playbook's vars;
    the overridden values, for the report."""
    done: dict[str, Any] = {}
    for item in sets:
        name, eq, raw = item.partition("=")
        name = name.strip()
        if not eq:
            raise VarError(f"--set {item!r}: expected NAME=VALUE")
        if name not in lp.spec.vars:
            raise VarError(f"--set {name}: the playbook has no var '{name}' "
                           f"(its vars: {', '.join(sorted(lp.spec.vars)) or 'none'}){did_you_mean(name, lp.spec.vars)}")
        value: Any = ""
        if raw.strip():     # read as the playbook is: no base-60 numbers, integers of 64 bits
            try:
                value, vloc = yamlpos.load(raw, f"--set {name}")
            except PlaybookError as e:
                raise VarError(f"--set {name}: {raw!r} is not a YAML value ({e.diagnostics[0].message})") from None
            if vloc.diagnostics:
                raise VarError(f"--set {name}: {vloc.diagnostics[0].message}")
        old = lp.spec.vars[name]
        if isinstance(old, list) and not isinstance(value, list):
            value = [value]
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)        # CEL compares a double with a double, not with an int
        ok = isinstance(value, SCALARS) or (isinstance(value, list) and all(isinstance(v, SCALARS) for v in value))
        if not ok or isinstance(old, list) != isinstance(value, list):
            raise VarError(f"--set {name}: expected {'a list' if isinstance(old, list) else 'a single value'} "
                           f"like its default {old!r}, got {value!r}")
        lp.spec.vars[name] = done[name] = value
    return done


def _check_param(loc: yamlpos.Located, path: tuple[Any, ...], ptype: str, value: Any,
                 most: int | None = None) -> None:
    if ptype == "duration":
        try:
            parse_duration_ns(value)
        except ValueError as e:
            loc.error(path, str(e))
    elif ptype == "bool" and not isinstance(value, bool):
        loc.error(path, f"expected true or false, got {value!r}")
    elif ptype == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        loc.error(path, f"expected a non-negative integer, got {value!r}")
    elif ptype == "int" and most is not None and value > most:
        loc.error(path, f"expected an integer at most {most} (the probe's bound), got {value}")
    elif ptype == "symbol" and not (isinstance(value, str) and SYMBOL.fullmatch(value)):
        loc.error(path, f"expected a kernel symbol name (letters, digits, _ and .), got {value!r}")
    elif ptype == "path" and not (isinstance(value, str) and value.startswith("/") and len(value) < 4096
                                  and "\0" not in value and ":" not in value):
        loc.error(path, f"expected an absolute path (without ':'), got {value!r}")


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
                aliases: dict[str, ProbeManifest], variables: dict[str, Any],
                template: bool = False) -> None:
    for ref, col in refs:
        parts = ref.split(".")
        root = parts[0]
        if root == VARS and root not in aliases:
            if len(parts) < 2 or parts[1] not in variables:
                name = parts[1] if len(parts) > 1 else ""
                _at(loc, path, ref, f"'{ref}' is not among the playbook's vars "
                    f"({', '.join(sorted(variables)) or 'none declared'}){did_you_mean(name, variables)}")
            continue
        if root not in aliases:
            what = "placeholder" if template else "expression"
            former = [(a, m) for a, m in aliases.items() if root in m.former_aliases]
            hint = (f" ('{root}' is the former name of {former[0][1].name}'s evidence, here read as "
                    f"'{former[0][0]}')" if former else did_you_mean(root, aliases))
            _at(loc, path, ref, f"{what} names '{root}', which no probe of this node provides "
                f"(available: {', '.join(sorted(aliases)) or 'none'}){hint}")
            continue
        m = aliases[root]
        if m.freeform:
            continue
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


def _at(loc: yamlpos.Located, path: tuple[Any, ...], ref: str, msg: str, severity: str = "error") -> None:
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
    loc.diagnostics.append(Diagnostic(loc.file, line, col, msg, severity))
