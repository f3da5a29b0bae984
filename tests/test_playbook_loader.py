"""The playbook loader and validator as units: what is accepted, what is refused, where
the error points; and a fuzz of mutated playbooks that must never raise anything but a
located PlaybookError."""

from __future__ import annotations

import os
import string
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from investigator.playbook import PlaybookError, load_playbook
from investigator.probes.units import format_ns, parse_duration_ns
from investigator.rules.expr import Expr, ExprError, references
from investigator.rules.template import render

REPO = Path(__file__).resolve().parent.parent
FREEZE = (REPO / "playbooks" / "freeze.yaml").read_text()


def errors_of(text: str) -> list[str]:
    """Diagnostics of a playbook text as if it lay beside freeze.yaml (for its imports)."""
    where = REPO / "playbooks" / "t.yaml"
    try:
        load_playbook(str(where), text=text)
    except PlaybookError as e:
        return [str(d).replace(str(where), "t.yaml") for d in e.diagnostics]
    return []


def test_freeze_is_valid() -> None:
    lp = load_playbook(REPO / "playbooks" / "freeze.yaml")
    assert set(lp.spec.nodes) == {"triage", "cpu-starvation", "cpu-throttled", "blocked-tasks", "workqueue-stall",
                                  "user-deadlock", "irq-overload", "softirq-wrong-context", "holder-state",
                                  "memory-pressure", "io-stall", "kernel-locks", "softirq-whose-work", "kernel-stall"}
    assert lp.spec.start == ["triage", "irq-overload", "softirq-wrong-context"]
    assert lp.window_ns(lp.spec.nodes["triage"]) == 1_000_000_000
    assert lp.window_ns(lp.spec.nodes["cpu-starvation"]) == 5_000_000_000
    # every node is reached: from the first look's routes, or from a node they lead to
    routed = {n for r in lp.spec.nodes["triage"].route for n in r.next}
    assert routed == {"cpu-starvation", "cpu-throttled", "blocked-tasks", "workqueue-stall", "user-deadlock",
                      "holder-state", "memory-pressure", "io-stall", "kernel-locks", "kernel-stall"}
    # a stuck chain goes straight to its holder, aimed by the route's own finding
    chain = next(r for r in lp.spec.nodes["triage"].route if "holder-state" in r.next)
    assert chain.about == "waitfor.chain"
    assert lp.spec.nodes["holder-state"].focus.sources() == ["triage", "user-deadlock"]


def test_every_shipped_playbook_is_valid() -> None:
    for p in sorted((REPO / "playbooks").glob("*.yaml")):
        load_playbook(p, allow_custom_probes=True)   # raises PlaybookError with file:line:col messages


def test_yaml_1_1_booleans_are_plain_words() -> None:
    """`on:` is the edge key, not YAML 1.1's True; only true/false are booleans."""
    lp = load_playbook(REPO / "playbooks" / "memory.yaml")
    assert lp.spec.nodes["alloc-failures"].on.refuted == ["unfreed"]


def test_unknown_key_points_at_the_key_with_a_hint() -> None:
    line = [n for n, x in enumerate(FREEZE.split("\n"), 1) if x.startswith("    hypothesis: Runnable")][0]
    errs = errors_of(FREEZE.replace("    hypothesis: Runnable", "    hypotesis: Runnable"))
    assert any(f":{line}:5: unknown key 'hypotesis' (did you mean 'hypothesis'?)" in e for e in errs), errs


def test_wrong_api_version() -> None:
    errs = errors_of(FREEZE.replace("investigator/v1", "investigator/v9"))
    assert any("unsupported apiVersion" in e for e in errs)


def test_cycle_without_bound_is_refused_and_accepted_with_one() -> None:
    looped = FREEZE.replace("        verdict: refuted\n        explain: \"No task waited",
                            "        verdict: refuted\n        next: [cpu-starvation]\n        explain: \"No task waited")
    errs = errors_of(looped)
    assert any("cycle cpu-starvation -> cpu-starvation has no bound" in e for e in errs), errs
    bounded = looped.replace("  cpu-starvation:\n", "  cpu-starvation:\n    max_visits: 3\n")
    assert errors_of(bounded) == []


def test_field_check_stops_inside_lists() -> None:
    ok = FREEZE.replace("blocked.stuck_count == 0", "blocked.tasks.all(t, t.anything == 1)")
    assert errors_of(ok) == []


def test_yaml_bomb_is_bounded() -> None:
    bomb = "a: &a [" + ",".join(["x"] * 50) + "]\n"
    for i in range(1, 6):
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 50) + "]\n"
    errs = errors_of(bomb)
    assert len(errs) == 1 and "YAML nodes" in errs[0]


@pytest.mark.parametrize("text,ns", [("10ms", 10_000_000), ("5s", 5_000_000_000), ("250us", 250_000),
                                     ("1.5s", 1_500_000_000), ("2m", 120_000_000_000)])
def test_durations(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("bad", ["5", 5, "5 parsecs", "", None, True, "-1s"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration_ns(bad)


def test_format_ns_round_trips() -> None:
    for ns in (1, 1000, 10_000_000, 5_000_000_000):
        assert parse_duration_ns(format_ns(ns)) == ns


def test_expression_references_skip_strings_methods_and_bound_names() -> None:
    refs = [r for r, _ in references('a.b > 1 && "x.y" == c.d && e.list.exists(t, t.z) && size(f.g) > 0')]
    assert refs == ["a.b", "c.d", "e.list", "f.g"]


def test_expressions_are_typed_and_safe() -> None:
    assert Expr("x > 1").evaluate({"x": 2}) is True
    with pytest.raises(ExprError):
        Expr("__import__('os').system('true')").evaluate({})
    with pytest.raises(ExprError):
        Expr("x" * 3000)


def test_template_renders_paths_and_marks_missing() -> None:
    env = {"r": {"a": 1.5, "l": [{"t": 7}], "s": "x"}}
    assert render("{r.a} {r.l.0.t} {r.s} {r.nope}", env) == "1.5 7 x {r.nope?}"
    assert render("{r.a:.0f}", env) == "2"


# ---------------------------------------------------------------- fuzz

def _mutations(doc: object) -> st.SearchStrategy[object]:
    leaves = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                       st.text(string.printable, max_size=20), st.sampled_from(["5s", "10ms", "runqlat.max_ms > 1",
                                                                                "sched.runqlat", "starvation"]))
    return st.recursive(leaves, lambda c: st.one_of(st.lists(c, max_size=4),
                                                     st.dictionaries(st.text(string.ascii_letters, max_size=8), c,
                                                                     max_size=4)), max_leaves=12)


BASE = yaml.safe_load(FREEZE)


def _paths(d: object, prefix: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
    out = [prefix]
    if isinstance(d, dict):
        for k, v in d.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += _paths(v, prefix + (i,))
    return out


PATHS = _paths(BASE)


def _set(doc: object, path: tuple, value: object) -> object:  # type: ignore[type-arg]
    import copy
    doc = copy.deepcopy(doc)
    if not path:
        return value
    cur = doc
    for p in path[:-1]:
        cur = cur[p]  # type: ignore[index]
    if value == "__delete__":
        del cur[path[-1]]  # type: ignore[union-attr]
    else:
        cur[path[-1]] = value  # type: ignore[index]
    return doc


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 1500)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.sampled_from(PATHS), st.one_of(_mutations(None), st.just("__delete__")))
def test_fuzz_mutated_playbooks_never_traceback(path: tuple, value: object) -> None:  # type: ignore[type-arg]
    if value == "__delete__" and not path:
        return
    text = yaml.safe_dump(_set(BASE, path, value), sort_keys=False)
    try:
        load_playbook("fuzz.yaml", text=text)
    except PlaybookError as e:
        assert e.diagnostics
        for d in e.diagnostics:
            assert d.line >= 1 and d.col >= 1 and d.message


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 1000)), deadline=None, derandomize=True)
@given(st.text(max_size=300))
def test_fuzz_random_text_never_tracebacks(text: str) -> None:
    try:
        load_playbook("random.yaml", text=text)
    except PlaybookError as e:
        assert all(d.line >= 1 and d.col >= 1 for d in e.diagnostics)


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 1000)), deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, len(FREEZE) - 1), st.sampled_from(["ins", "del", "dup"]),
                          st.sampled_from(list(":-[]{}&*!|>'\"#%@` \n\t.,?0aZ"))), min_size=1, max_size=6))
def test_fuzz_text_edits_never_traceback(edits: list[tuple[int, str, str]]) -> None:
    text = FREEZE
    for pos, op, ch in edits:
        pos = min(pos, len(text) - 1)
        if op == "ins":
            text = text[:pos] + ch + text[pos:]
        elif op == "del":
            text = text[:pos] + text[pos + 1:]
        else:
            start = text.rfind("\n", 0, pos) + 1
            end = text.find("\n", pos) + 1 or len(text)
            text = text[:end] + text[start:end] + text[end:]
    try:
        load_playbook("edited.yaml", text=text)
    except PlaybookError as e:
        assert e.diagnostics and all(d.line >= 1 and d.col >= 1 and d.message for d in e.diagnostics)


HOSTILE = ["1:59:59", "!!int 1:2", "18446744073709551616", "1" + "0" * 5000, "-9223372036854775809",
           '"{blocked.count:>40000000000}"', '"{x:.99f}"', '"{x:{y}}"',
           "|\n      x.map(a, // \"\n      x.map(b, x.  map(c, x.\n      map(d, 1))))",
           "'x.all(a, x.all(b, x.all(c, x.all(d, a))))'", "'1 > 99999999999999999999'",
           "'\"unterminated'", "'r\"\\\" + x'"]


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 1000)), deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, FREEZE.count("\n")), st.sampled_from(HOSTILE)), min_size=1, max_size=3))
def test_fuzz_hostile_values_are_located_errors(edits: list[tuple[int, str]]) -> None:
    """Huge and base-60 numbers, format specs over their caps, deep or disguised macro nests
    put in place of a value of freeze.yaml: a located error, in bounded time, never a traceback."""
    lines = FREEZE.split("\n")
    hit = set()
    for n, snippet in edits:
        key, sep, _ = lines[n].partition(": ")
        if sep and not key.strip().startswith("#"):
            lines[n] = f"{key}: {snippet}"
            if snippet in HOSTILE[:5]:      # numbers are refused wherever they are
                hit.add(n + 1)
    t = time.monotonic()
    try:
        load_playbook("hostile.yaml", text="\n".join(lines))
    except PlaybookError as e:
        assert e.diagnostics and all(d.line >= 1 and d.col >= 1 and d.message for d in e.diagnostics)
    else:
        assert not hit, "a base-60 or oversized number was accepted"
    assert time.monotonic() - t < 5


def test_expensive_expressions_are_refused() -> None:
    deep = "runqlat.tasks.map(a, runqlat.tasks.map(b, runqlat.tasks.map(c, runqlat.tasks.map(d, 1)))) == []"
    errs = errors_of(FREEZE.replace("runqlat.max_ms < 100.0", deep))
    assert any("nested 4 deep" in e for e in errs), errs
    ok = "runqlat.tasks.all(a, runqlat.tasks.exists(b, b.tid == a.tid))"
    assert errors_of(FREEZE.replace("runqlat.max_ms < 100.0", ok)) == []


def test_deep_nesting_and_huge_files_are_refused(tmp_path: Path) -> None:
    deep = "a: " + "[" * 70 + "]" * 70 + "\n"
    errs = errors_of(deep)
    assert len(errs) == 1 and "nested deeper than 64" in errs[0]
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * (1 << 20) + "\n" + FREEZE)
    with pytest.raises(PlaybookError) as ei:
        load_playbook(huge)
    assert "larger than" in str(ei.value)


VARS_BOOK = """apiVersion: investigator/v1
kind: Playbook
metadata: {name: vars-test}
vars:
  reserved_cpus: [1]
  min_ms: 20.0
start: [n]
nodes:
  n:
    hypothesis: h
    probes: [{use: sched.blocked}]
    conclude:
      - when: blocked.count > 0 && blocked.max_blocked_s * 1000.0 >= vars.min_ms && 1 in vars.reserved_cpus
        verdict: hung-task
        explain: "over {vars.min_ms} ms"
"""


def test_vars_are_checked_like_evidence_names() -> None:
    load_playbook("v.yaml", text=VARS_BOOK)
    errs = errors_of(VARS_BOOK.replace("vars.min_ms &&", "vars.min_sm &&"))
    assert any(e.startswith("t.yaml:13:70:") and "'vars.min_sm' is not among the playbook's vars" in e
               and "did you mean 'min_ms'" in e for e in errs), errs
    errs = errors_of(VARS_BOOK.replace("min_ms: 20.0", "min_ms: {a: 1}"))
    assert any(e.startswith("t.yaml:6:") and "must be a number, string, boolean or a list" in e for e in errs), errs


def test_set_overrides_a_var_of_the_same_kind() -> None:
    from investigator.playbook.load import VarError, apply_overrides
    lp = load_playbook("v.yaml", text=VARS_BOOK)
    assert apply_overrides(lp, ["reserved_cpus=[0, 1]", "min_ms=5"]) == {"reserved_cpus": [0, 1], "min_ms": 5}
    assert lp.spec.vars == {"reserved_cpus": [0, 1], "min_ms": 5}
    assert apply_overrides(lp, ["reserved_cpus=0"]) == {"reserved_cpus": [0]}      # one value, as a list
    with pytest.raises(VarError, match="no var 'reserved_cpu'.*did you mean 'reserved_cpus'"):
        apply_overrides(lp, ["reserved_cpu=1"])
    with pytest.raises(VarError, match="expected a single value"):
        apply_overrides(lp, ["min_ms=[1, 2]"])
    with pytest.raises(VarError, match="expected NAME=VALUE"):
        apply_overrides(lp, ["min_ms"])


FORMER = """apiVersion: investigator/v1
kind: Playbook
metadata: {name: former, description: rules written before the probes' aliases were their file names}
start: [wq]
nodes:
  wq:
    hypothesis: per-CPU work waits
    probes:
      - use: workqueue.latency
      - use: sched.runqlat
    conclude:
      - when: wq.max_delay_ms > 100.0 && runqlat.max_ms > 0.0
        verdict: starvation
        explain: "{wq.count} items"
"""


def test_a_former_alias_is_still_read_with_a_warning() -> None:
    lp = load_playbook(str(REPO / "playbooks" / "t.yaml"), text=FORMER)
    assert lp.alias_of("wq", "workqueue.latency") == "wq" and lp.alias_of("wq", "sched.runqlat") == "runqlat"
    (w,) = [str(d) for d in lp.warnings]
    assert ":9:9:" in w and "now named 'workqueue'" in w and "former name 'wq'" in w, w
    # the current name: no warning; both names at once: the former one is unknown
    lp = load_playbook("t.yaml", text=FORMER.replace("wq.", "workqueue."))
    assert lp.alias_of("wq", "workqueue.latency") == "workqueue" and not lp.warnings
    errs = errors_of(FORMER.replace("{wq.count}", "{workqueue.count}"))
    assert any(e.startswith("t.yaml:12:15:") and "'wq' is the former name of workqueue.latency's evidence, here read as 'workqueue'" in e for e in errs), errs
    # a former alias taken by another entry's `as:` stays that entry's
    lp = load_playbook("t.yaml", text=FORMER.replace("- use: sched.runqlat", "- {use: sched.runqlat, as: wq}")
                       .replace("wq.max_delay_ms > 100.0 && runqlat.max_ms", "wq.max_ms"))
    assert lp.alias_of("wq", "workqueue.latency") == "workqueue"


FOCUSED = """apiVersion: investigator/v1
kind: Playbook
metadata: {name: focused, description: a follow-up node aimed at what the first found}
start: [first]
nodes:
  first:
    hypothesis: someone starves
    probes: [{use: sched.runqlat}]
    conclude:
      - when: runqlat.starved.wait_ms > 100.0
        verdict: starvation
        about: runqlat.starved
        next: [second]
  second:
    hypothesis: the culprit is busy
    focus: {from: first, tasks: [culprit]}
    probes: [{use: sched.oncpu}]
    conclude:
      - when: focus.tasks.exists(t, t.role == "culprit") && oncpu.samples > 0
        verdict: overload
"""


def test_a_focus_names_a_node_that_leads_here_and_a_role() -> None:
    lp = load_playbook("t.yaml", text=FOCUSED)
    assert lp.spec.nodes["second"].focus.from_ == "first" and lp.spec.nodes["second"].focus.tasks == ["culprit"]
    errs = errors_of(FOCUSED.replace("{from: first,", "{from: frist,"))
    assert any(e.startswith("t.yaml:16:") and "unknown node 'frist'" in e and "did you mean 'first'" in e
               for e in errs), errs
    no_edge = FOCUSED.replace("        next: [second]\n", "").replace("start: [first]", "start: [first, second]")
    errs = errors_of(no_edge)
    assert any(e.startswith("t.yaml:15:") and "node 'first' has no edge to 'second'" in e for e in errs), errs
    errs = errors_of(FOCUSED.replace("tasks: [culprit]", "tasks: [culprt]"))
    assert any(e.startswith("t.yaml:16:") and "culprt" in e for e in errs), errs
    errs = errors_of(FOCUSED.replace("tasks: [culprit]", "tasks: []"))
    assert any("a focus needs at least one role" in e for e in errs), errs
    # `focus` is read only where a focus is given
    errs = errors_of(FOCUSED.replace("    focus: {from: first, tasks: [culprit]}\n", ""))
    assert any("names 'focus', which no probe of this node provides" in e for e in errs), errs


def test_a_focus_resolves_to_the_tids_of_its_roles() -> None:
    from investigator.playbook.schema import Focus
    from investigator.result import NodeResult
    from investigator.rules import focus
    about = {"tasks": [{"tid": 7, "pid": 7, "comm": "w", "role": "waiter"},
                       {"tid": 9, "pid": 8, "comm": "h", "role": "holder"},
                       {"tid": 9, "pid": 8, "comm": "h", "role": "holder"}], "locks": [{"kind": "futex", "addr": "0x1"}]}
    old = NodeResult("chain", "", 1.0, verdict="hung-task", about={"tasks": [{"tid": 1, "pid": 1, "comm": "x",
                                                                               "role": "holder"}]})
    new = NodeResult("chain", "", 1.0, verdict="hung-task", about=about)
    f = focus.resolve(Focus(from_="chain", tasks=["holder"]), [old, new, NodeResult("other", "", 1.0)], "next")
    assert f["tids"] == [9] and f["verdict"] == "hung-task" and f["finding"]["locks"][0]["addr"] == "0x1"
    assert focus.resolve(None, [new], "next") is None
    f = focus.resolve(Focus(from_="chain", tasks=["culprit"]), [new], "next")
    assert f["tids"] == [] and "names no culprit task" in focus.unresolved(f)
    f = focus.resolve(Focus(from_="chain", tasks=["holder"]), [NodeResult("chain", "", 1.0, verdict="refuted")], "next")
    assert f["tids"] == [] and "reached no finding" in focus.unresolved(f)


def test_a_focus_from_several_nodes_takes_the_latest_finding_and_a_route_s_own() -> None:
    from investigator.playbook.schema import Focus
    from investigator.result import NodeResult
    from investigator.rules import focus
    holder = {"tasks": [{"tid": 5, "pid": 5, "comm": "w", "role": "waiter"}, {"tid": 6, "pid": 6, "comm": "h", "role": "holder"}]}
    look = NodeResult("look", "", 1.0, verdict="inconclusive",
                      routes=[{"next": ["elsewhere"], "because": "x", "about": {"tasks": [{"tid": 1, "role": "holder"}]}},
                              {"next": ["next"], "because": "y", "about": holder}])
    f = focus.resolve(Focus(from_=["chain", "look"], tasks=["holder"]), [look], "next")
    assert f["tids"] == [6] and f["from"] == "look" and f["finding"]["tasks"][0]["tid"] == 5
    # the latest source with a finding wins; a route to another node passes nothing here
    chain = NodeResult("chain", "", 5.0, verdict="hung-task", about={"tasks": [{"tid": 8, "role": "holder"}]})
    assert focus.resolve(Focus(from_=["chain", "look"], tasks=["holder"]), [look, chain], "next")["tids"] == [8]
    f = focus.resolve(Focus(from_=["look"], tasks=["holder"]), [look], "another")
    assert f["tids"] == [] and f["from"] == "look"
    assert focus.pending(Focus(from_=["chain", "look"], tasks=["holder"]), ["chain"])
    assert not focus.pending(Focus(from_="look", tasks=["holder"]), ["chain"])


def test_the_graph_shows_what_an_edge_passes_to_a_focused_node() -> None:
    from investigator.playbook.graph import build_graph, render
    g = build_graph(load_playbook("t.yaml", text=FOCUSED).spec)
    assert g.edges["first", "second"]["label"] == "starvation (focus: its culprit)"
    assert "--starvation (focus: its culprit)--> second" in render(g, "text")


ROUTED = """apiVersion: investigator/v1
kind: Playbook
metadata: {name: routed, description: a first look that sends each finding on}
start: [look]
nodes:
  look:
    hypothesis: a first look
    probes:
      - use: sched.blocked
      - use: system.pressure
        optional: true
    conclude:
      - when: blocked.stuck_count > 0
        verdict: hung-task
    otherwise: inconclusive
    route:
      - when: blocked.stuck_count > 0
        next: [stuck]
        because: "{blocked.stuck_count} task(s) stuck"
      - when: pressure.cpu.some_pct >= 5.0
        next: [cpu, stuck]
  stuck:
    hypothesis: stuck
    probes: [{use: sched.blocked}]
    conclude: [{when: blocked.stuck_count > 0, verdict: hung-task}]
  cpu:
    hypothesis: cpu
    focus: {from: look, tasks: [victim]}
    probes: [{use: sched.runqlat}]
    conclude: [{when: runqlat.max_ms > 100.0, verdict: starvation}]
"""


def test_a_route_is_checked_like_a_rule_and_is_an_edge() -> None:
    lp = load_playbook("t.yaml", text=ROUTED)
    assert [r.next for r in lp.spec.nodes["look"].route] == [["stuck"], ["cpu", "stuck"]]
    assert lp.spec.nodes["look"].successors() == [("stuck", "route"), ("cpu", "route"), ("stuck", "route")]
    errs = errors_of(ROUTED.replace("next: [cpu, stuck]", "next: [cpx, stuck]"))
    assert any(e.startswith("t.yaml:21:") and "unknown node 'cpx'" in e and "did you mean 'cpu'" in e for e in errs), errs
    errs = errors_of(ROUTED.replace("pressure.cpu.some_pct >= 5.0", "pressure.cpu.som_pct >= 5.0"))
    assert any(e.startswith("t.yaml:20:") and "som_pct" in e for e in errs), errs
    errs = errors_of(ROUTED.replace('"{blocked.stuck_count} task(s) stuck"', '"{blocked.stuck_cnt} stuck"'))
    assert any(e.startswith("t.yaml:19:") and "stuck_cnt" in e for e in errs), errs
    errs = errors_of(ROUTED.replace("next: [cpu, stuck]", "next: []"))
    assert any(e.startswith("t.yaml:21:") and "a route needs at least one node" in e for e in errs), errs
    # a route is an edge: the focus of a node it leads to is valid, nothing is unreachable
    assert not errors_of(ROUTED)
    from investigator.playbook.graph import build_graph
    assert build_graph(lp.spec).edges["look", "cpu"]["label"] == "route (focus: its victim)"


def test_every_route_that_holds_is_taken_and_a_route_not_seen_is_not_ruled_out() -> None:
    from investigator.rules.conclude import conclude_node
    lp = load_playbook("t.yaml", text=ROUTED)
    rec = [{"probe": "sched.blocked", "as": "blocked", "error": None}]
    stuck = {"blocked": {"stuck_count": 2}, "pressure": {"cpu": {"some_pct": 40.0}}}
    c = conclude_node(lp, "look", stuck, rec + [{"probe": "system.pressure", "as": "pressure", "error": None}])
    assert (c.verdict, c.next) == ("hung-task", ["stuck", "cpu"]), c
    assert c.routes == [{"next": ["stuck"], "because": "2 task(s) stuck"},
                        {"next": ["cpu", "stuck"], "because": "route 2 holds"}]
    calm = {"blocked": {"stuck_count": 0}, "pressure": {"cpu": {"some_pct": 1.0}}}
    c = conclude_node(lp, "look", calm, rec + [{"probe": "system.pressure", "as": "pressure", "error": None}])
    assert (c.status, c.next, c.routes) == ("inconclusive", [], [])
    # PSI off: the CPU cannot be ruled out, and the report says why the node was visited
    c = conclude_node(lp, "look", {"blocked": {"stuck_count": 0}},
                      rec + [{"probe": "system.pressure", "as": "pressure", "error": "unavailable: no PSI"}])
    assert c.next == ["cpu", "stuck"] and c.routes[0]["because"] == "not ruled out: pressure could not be observed"
    # nothing observed at all: every route is taken; an interrupted node takes none
    c = conclude_node(lp, "look", {}, [{"probe": "sched.blocked", "as": "blocked", "error": "EPERM"}])
    assert c.status == "unobservable" and c.next == ["stuck", "cpu"]
    c = conclude_node(lp, "look", stuck, rec + [{"probe": "system.pressure", "as": "pressure", "error": None}],
                      interrupted=True)
    assert c.next == [] and c.routes == []


def test_a_route_that_cannot_be_evaluated_is_taken_and_says_so() -> None:
    from investigator.rules.conclude import conclude_node
    lp = load_playbook("t.yaml", text=ROUTED)
    recs = [{"probe": "sched.blocked", "as": "blocked", "error": None},
            {"probe": "system.pressure", "as": "pressure", "error": None}]
    c = conclude_node(lp, "look", {"blocked": {"stuck_count": "many"}, "pressure": {"cpu": {"some_pct": 0.0}}}, recs)
    assert c.routes == [{"next": ["stuck"], "because": "not ruled out: route 1 could not be evaluated"}], c.routes
    assert any(e.startswith("route 1:") for e in c.errors), c.errors
