"""Rules are bounded: macro depth counted on the parse of the expression (comments,
strings and whitespace cannot hide a nest), each evaluation's cost and time bounded, lists
cut (and said), format specs capped, integers of 64 bits, no YAML base-60 numbers."""

from __future__ import annotations

import json
import os
import string
import time
from pathlib import Path

import pytest
from conftest import investigate
from hypothesis import given, settings
from hypothesis import strategies as st

from investigator.playbook import PlaybookError, load_playbook
from investigator.playbook.load import VarError, apply_overrides
from investigator.rules import expr
from investigator.rules.conclude import conclude
from investigator.rules.expr import Expr, ExprError, LIST_CAP, _cel, macro_depth, references, shape
from investigator.rules.template import render

BOOK = """apiVersion: investigator/v1
kind: Playbook
metadata: {name: bounds}
vars:
  limit: 5
start: [n]
nodes:
  n:
    hypothesis: h
    probes: [{use: sched.blocked}]
    conclude:
      - when: |
          RULE1
        verdict: deadlock
      - when: blocked.count > vars.limit
        verdict: hung-task
        explain: "EXPLAIN"
"""


def book(rule1: str = "blocked.count < 0", explain: str = "{blocked.count} tasks") -> str:
    return BOOK.replace("RULE1", rule1.replace("\n", "\n          ")).replace("EXPLAIN", explain)


def errors_of(text: str) -> list[str]:
    try:
        load_playbook("b.yaml", text=text)
    except PlaybookError as e:
        return [str(d) for d in e.diagnostics]
    return []


NEST4 = "blocked.tasks.map(a, blocked.tasks.map(b, blocked.tasks.map(c, blocked.tasks.map(d, 1)))) == []"


# ---------------------------------------------------------------- macro depth on the parse

@pytest.mark.parametrize("src", [
    NEST4,
    'blocked.tasks.map(a, // "\nblocked.tasks.map(b, blocked.tasks.map(c, blocked.tasks.map(d, 1)))) == []',
    "blocked.tasks.map(a, blocked.tasks." + " " * 60 + "map(b, blocked.tasks.map(c, blocked.tasks.map(d, 1)))) == []",
    "blocked.tasks\n  .\n  map\n  (a, blocked.tasks.map(b, blocked.tasks.map(c, blocked.tasks.map(d, 1)))) == []",
    "blocked.tasks.map(a, r\"\\\" + string(blocked.tasks.map(b, blocked.tasks.map(c, blocked.tasks.map(d, 1))))) == []",
])
def test_a_four_deep_nest_is_refused_however_it_is_written(src: str) -> None:
    errs = errors_of(book(src))
    assert any("nested 4 deep" in e and e.startswith("b.yaml:") for e in errs), errs


@pytest.mark.parametrize("src,depth", [
    ('"a.map(x, a.map(y, a.map(z, a.map(w, 1))))" == ""', 0),           # inside a string
    ("'''x.all(y, x.all(z, x.all(w, x.all(v, 1))))''' == ''", 0),      # triple-quoted
    ('b"x.exists(y, x.exists(z, 1))" == b""', 0),                      # bytes
    ("1 == 1 // x.map(a, x.map(b, x.map(c, x.map(d, 1))))", 0),        # a comment
    ("x.map > 1 && x.exists.filter > 2", 0),                           # fields named like macros
    ("x.map(a, a).map(b, b).map(c, c).map(d, d) == []", 1),            # chained, not nested
    ("x.all(a, x.exists(b, x.filter(c, c > 0) == []))", 3),
])
def test_look_alikes_are_not_nests(src: str, depth: int) -> None:
    assert macro_depth(src) == depth
    _cel().compile(src)         # the library reads the same text as an expression


def test_references_scope_macro_names_to_their_macro() -> None:
    refs = [r for r, _ in references('a.l.exists(t, t.x > 0) && t.y == 1 && "t.z" == s // u.v\n && w . q')]
    assert refs == ["a.l", "t.y", "s", "w.q"]


def test_integer_literals_beyond_64_bits_are_refused_where_they_are() -> None:
    with pytest.raises(ExprError) as ei:
        Expr("x > 18446744073709551616u")
    assert ei.value.col == 5 and "64 bits" in str(ei.value)
    Expr("x > 18446744073709551615u && y > -9223372036854775808")


_WS = st.sampled_from([" ", "", "\n", "\t ", ' // ".map(x, x.all(\n', " //\n", "\n  "])
_DECOY = st.sampled_from(['"x.map(y, "', "'.exists('", '"""a.all(b, """', "r'\\'", 'b"e.map("',
                          "R\"\\\"", "'''.filter(q, '''"])


@st.composite
def _nest(draw: st.DrawFn, budget: int = 4, bound: tuple[str, ...] = ()) -> tuple[str, int, set[str]]:
    """A random valid CEL expression, its macro depth and the evidence paths it reads."""
    ws = lambda: draw(_WS)  # noqa: E731
    kind = draw(st.sampled_from(["path", "decoy", "macro", "op", "size", "list"] if budget else
                                ["path", "decoy"]))
    if kind == "path":
        if bound and draw(st.booleans()):
            return f"{draw(st.sampled_from(bound))}{ws()}.{ws()}f", 0, set()
        p = draw(st.sampled_from(["ev.l", "ev.m.n", "vars.k"]))
        return p.replace(".", f"{ws()}.{ws()}"), 0, {p}
    if kind == "decoy":
        return f"size({ws()}{draw(_DECOY)}{ws()})", 0, set()
    if kind == "macro":
        name = draw(st.sampled_from(expr.MACROS))
        var = f"v{len(bound)}"
        body, d, refs = draw(_nest(budget - 1, bound + (var,)))
        return (f"ev.l{ws()}.{ws()}{name}{ws()}({ws()}{var}{ws()},{ws()}{body}{ws()})", d + 1,
                refs | {"ev.l"})
    a, da, ra = draw(_nest(budget - 1, bound))
    if kind == "size":
        return f"size({ws()}{a}{ws()})", da, ra
    b, db, rb = draw(_nest(budget - 1, bound))
    if kind == "list":
        return f"[{ws()}{a},{ws()}{b}{ws()}]", max(da, db), ra | rb
    return f"{a}{ws()}=={ws()}{b}", max(da, db), ra | rb


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 500)), deadline=None, derandomize=True)
@given(_nest())
def test_fuzz_macro_depth_and_references_match_the_generated_expression(case: tuple[str, int, set[str]]) -> None:
    src, depth, refs = case
    _cel().compile(src)                         # valid CEL, as the library reads it
    sh = shape(src)
    assert sh.depth == depth, src
    assert {r for r, _ in sh.refs} == refs, src


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 500)), deadline=None, derandomize=True)
@given(st.text(string.printable, max_size=120))
def test_fuzz_the_lexer_fails_only_with_expr_errors(src: str) -> None:
    try:
        shape(src)
    except ExprError as e:
        assert e.col is None or 1 <= e.col <= len(src) + 1


# ---------------------------------------------------------------- evaluation bounds

def test_an_estimate_over_budget_is_refused_without_running() -> None:
    e = Expr("a.all(x, a.all(y, a.all(z, x + y + z >= 0)))")
    t = time.monotonic()
    with pytest.raises(ExprError, match="over budget"):
        e.evaluate({"a": list(range(4096))})
    assert time.monotonic() - t < 1.0


def test_a_slow_evaluation_is_stopped_at_its_budget_in_a_child() -> None:
    e = Expr("a.map(x, a.map(y, a.filter(z, z > x + y)))")   # minutes at 150 entries
    t = time.monotonic()
    with pytest.raises(ExprError, match="over its time budget of 0.5 s"):
        e.evaluate({"a": list(range(150))}, budget_s=0.5)
    assert time.monotonic() - t < 10        # not the minutes it would take
    # a costly-looking one that finishes comes back from its child with its value
    assert Expr("a.map(x, x * 2)").evaluate({"a": list(range(LIST_CAP))})[-1] == 2 * (LIST_CAP - 1)
    assert expr.INLINE_STEPS < Expr("a.map(x, x * 2)").shape.steps(LIST_CAP) <= expr.MAX_STEPS


def test_lists_are_cut_and_the_rule_that_read_one_says_so() -> None:
    lp = load_playbook("b.yaml", text=book("blocked.tasks.exists(t, t.tid == 4999)"))
    env = {"blocked": {"count": 1, "tasks": [{"tid": i} for i in range(5000)]}}
    c = conclude(lp, "n", env)
    assert c.status == "inconclusive" and c.rule is None     # the 5000th task is past the cut
    assert c.errors == [f"rule 1 saw the first {LIST_CAP} of 5000 entries of blocked.tasks"]
    # a list under the cap, or a rule that does not read the cut list: no note
    assert conclude(lp, "n", {"blocked": {"count": 1, "tasks": [{"tid": 4999}]}}).rule == 0
    lp2 = load_playbook("b.yaml", text=book())
    assert conclude(lp2, "n", env).errors == []


def test_a_rule_over_budget_is_its_error_and_the_node_goes_on() -> None:
    lp = load_playbook("b.yaml", text=book("blocked.tasks.all(x, blocked.tasks.all(y, blocked.tasks.all("
                                           "z, x.tid + y.tid + z.tid >= 0)))"))
    env = {"blocked": {"count": 9, "tasks": [{"tid": i} for i in range(LIST_CAP)]}}
    t = time.monotonic()
    c = conclude(lp, "n", env)
    assert time.monotonic() - t < 10        # refused, not run for hours
    assert (c.status, c.verdict, c.rule) == ("confirmed", "hung-task", 1)
    assert len(c.errors) == 1 and c.errors[0].startswith("rule 1: over budget")


def test_replaying_a_fixture_with_a_costly_rule_finishes_with_the_next_rules_verdict(tmp_path: Path) -> None:
    pb = tmp_path / "bounds.yaml"
    pb.write_text(book("blocked.tasks.map(x, blocked.tasks.map(y, blocked.tasks.filter(z, z.tid > x.tid + y.tid)))"
                       " == []"))
    case = tmp_path / "tests" / "bounds" / "big"
    case.mkdir(parents=True)
    (case / "evidence.json").write_text(json.dumps(
        {"n": {"blocked": {"count": 9, "tasks": [{"tid": i} for i in range(200)]}}}))
    (case / "report.json").write_text(json.dumps(
        {"nodes": [{"id": "n", "status": "confirmed"}], "complete": True, "started_at": "x",
         "duration_s": 1.0, "kernel": {}}))
    (case / "expect.yaml").write_text("verdicts: [{verdict: hung-task, node: n}]\n")
    t = time.monotonic()
    p = investigate("test", str(pb), timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert time.monotonic() - t < 30


# ---------------------------------------------------------------- format specs

def test_format_specs_are_capped_at_load_and_at_render() -> None:
    errs = errors_of(book(explain="{blocked.count:>40000000000} and {blocked.count:.65f}"))
    assert any(e.startswith("b.yaml:17:33:") and "width 40000000000 is over 64" in e for e in errs), errs
    assert any("precision 65 is over 64" in e for e in errs), errs
    assert any("is not a standard one" in e for e in errors_of(book(explain="{blocked.count:{x}}")) +
               errors_of(book(explain="{blocked.count:>>>}")))
    assert errors_of(book(explain="{blocked.count:>64} {blocked.count:,d} {blocked.count:*^10}")) == []
    assert render("{a:>40000000000}|{a:>6}", {"a": 7}) == "7|     7"


# ---------------------------------------------------------------- YAML numbers

@pytest.mark.parametrize("value,msg", [
    ("1:59:59", "base-60"), ("190:20:30.15", "base-60"), ("!!int 1:2", "base-60"),
    ("18446744073709551616", "64 bits"), ("-9223372036854775809", "64 bits"),
    ("1" + "0" * 200_000, "64 bits"), ("0b" + "1" * 65, "64 bits"),
])
def test_yaml_numbers_beyond_64_bits_or_in_base_60_are_refused(value: str, msg: str) -> None:
    t = time.monotonic()
    errs = errors_of(book().replace("limit: 5", f"limit: {value}"))
    assert time.monotonic() - t < 10        # quadratic conversion of 200,000 digits: minutes
    assert any(e.startswith("b.yaml:5:10:") and msg in e for e in errs), errs


@pytest.mark.parametrize("value,got", [("'1:59:59'", "1:59:59"), ("18446744073709551615", 2**64 - 1),
                                       ("-9223372036854775808", -2**63), ("0x10", 16), ("12:30pm", "12:30pm")])
def test_yaml_look_alikes_are_accepted(value: str, got: object) -> None:
    lp = load_playbook("b.yaml", text=book().replace("limit: 5", f"limit: {value}"))
    assert lp.spec.vars["limit"] == got


def test_base_60_in_a_probe_parameter_and_in_set_is_refused() -> None:
    text = book().replace("{use: sched.blocked}", "{use: sched.blocked, with: {min_sleep: 1:00}}")
    assert any(e.startswith("b.yaml:10:") and "base-60" in e for e in errors_of(text))
    lp = load_playbook("b.yaml", text=book())
    for bad in ("limit=1:59:59", "limit=99999999999999999999999"):
        with pytest.raises(VarError):
            apply_overrides(lp, [bad])
    assert apply_overrides(lp, ["limit=7"]) == {"limit": 7}
