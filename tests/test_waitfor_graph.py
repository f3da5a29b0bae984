"""The wait-for analysis (investigator/analyze/waitfor.py) on its own: a 10,000-edge graph
with one deadlock among piles and chains that look like one; the task table the probes
give, read instead of every task-like dict (and the old way for bundles recorded before
it); edges from a bundle checked for shape; drops summed; replay of a recorded bundle
through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import REPO, investigate

from investigator.analyze import waitfor
from investigator.analyze.waitfor import Edge, analyze, task_row
from investigator.playbook import load_playbook


def _edge(w: int, h: int, lock: str, stuck: bool = True, waited: float = 5.0) -> dict[str, Any]:
    return Edge(w, h, f"pthread_mutex {lock}", "pthread_mutex", lock, waited, stuck).evidence()


def _big_graph() -> tuple[dict[str, Any], list[int]]:
    """10,000 stuck edges: 9,000 waiters on 9 piles (one holder each, which waits for
    nothing); 331 chains of three waits; a look-alike chain of five waits, 6 -> 7 -> ... ->
    11, whose last task waits for nothing (no wait closes it); and one 2-cycle, 90001 <->
    90002."""
    edges = []
    tid = 100_000
    for pile in range(9):
        holder = 1000 + pile
        for _ in range(1000):
            edges.append(_edge(tid, holder, hex(0x1000 + pile)))
            tid += 1
    for c in range(331):
        base = 500_000 + 10 * c
        edges += [_edge(base + k, base + k + 1, hex(0x9000 + base + k)) for k in range(3)]
    chain = [6, 7, 8, 9, 10, 11]
    edges += [_edge(a, b, hex(0x700 + a)) for a, b in zip(chain, chain[1:])]
    edges += [_edge(90001, 90002, "0xa"), _edge(90002, 90001, "0xb")]
    assert len(edges) == 10_000
    return {"futex": {"edges": edges, "edges_dropped": 0, "wait_tasks": []}}, chain


def test_a_deadlock_among_ten_thousand_edges_is_the_one_cycle() -> None:
    env, chain = _big_graph()
    g = analyze(env)
    assert g["edges_count"] == 10_000 and g["edges_dropped"] == 0
    assert (g["cycles_count"], g["stuck_cycles_count"]) == (1, 1)
    d = g["deadlock"]
    assert d["cycle"] == [90001, 90002] and d["stuck"]
    assert [(lk["addr"], lk["waiter_tid"], lk["holder_tid"]) for lk in d["locks"]] == \
        [("0xa", 90001, 90002), ("0xb", 90002, 90001)]
    # the look-alike is the longest chain, and a chain: it ends in a task that waits for nothing
    assert g["chain"]["length"] == 5
    assert [t["tid"] for t in g["chain"]["tasks"]] == chain
    assert g["chain"]["terminal"]["tid"] == 11


def test_a_dense_component_is_enumerated_within_its_bound() -> None:
    """Twelve tasks each waiting for every other one (a graph no kernel makes, with
    millions of cycles): the enumeration stops at its bound per component."""
    tids = range(1, 13)
    env = {"futex": {"edges": [_edge(a, b, hex(a * 100 + b)) for a in tids for b in tids if a != b]}}
    g = analyze(env)
    assert g["cycles_count"] == waitfor.MAX_CYCLES_PER_SCC
    assert len(g["cycles"]) == waitfor.MAX_CYCLES and g["deadlock"]["size"] >= 2


def test_the_task_table_names_the_tasks_not_any_dict_with_a_tid() -> None:
    """The probes' wait_tasks are the table; a task-like dict elsewhere in the evidence (a
    display list) is not read.  Rows from two probes fill each other in."""
    env = {
        "futex": {"edges": [_edge(11, 12, "0x1"), _edge(12, 11, "0x2")],
                  "waiters": [{"tid": 11, "pid": 10, "comm": "decoy"}],
                  "wait_tasks": [task_row(11, 10, "real-a", "S"), task_row(12, 10, "real-b", "S")]},
        "blocked": {"edges": [], "wait_tasks": [task_row(12, 10, "real-b", "S", "futex_wait_queue", ["a", "b"])],
                    "tasks": [{"tid": 12, "pid": 10, "comm": "decoy", "wchan": "elsewhere"}]},
    }
    g = analyze(env)
    assert [(t["tid"], t["comm"]) for t in g["deadlock"]["tasks"]] == [(11, "real-a"), (12, "real-b")]
    assert g["deadlock"]["tasks"][1]["stack"] == ["a", "b"]
    assert [lk["waiter_comm"] for lk in g["deadlock"]["locks"]] == ["real-a", "real-b"]


def test_evidence_without_a_task_table_is_read_the_old_way() -> None:
    """A bundle recorded before the probes gave wait_tasks (nor stuck on their edges):
    the task-like dicts of the evidence name the tasks, the waiters say what was stuck."""
    env = {"futex": {"edges": [{"waiter": 11, "holder": 12, "lock": "pthread_mutex 0x1", "kind": "pthread_mutex"},
                               {"waiter": 12, "holder": 11, "lock": "pthread_mutex 0x2", "kind": "pthread_mutex"}],
                     "waiters": [{"tid": 11, "pid": 10, "comm": "a", "stuck": True, "blocked_s": 4.0},
                                 {"tid": 12, "pid": 10, "comm": "b", "stuck": True, "blocked_s": 3.0}]}}
    g = analyze(env)
    assert g["stuck_cycles_count"] == 1 and g["deadlock"]["blocked_s"] == 3.0
    assert [(lk["addr"], lk["waiter_comm"]) for lk in g["deadlock"]["locks"]] == [("0x1", "a"), ("0x2", "b")]


def test_edges_of_the_wrong_shape_are_left_out_and_drops_are_summed() -> None:
    bad: list[Any] = [None, 3, {"waiter": "1", "holder": 2}, {"waiter": True, "holder": 2}, {"waiter": -1, "holder": 2},
                      {"waiter": 1, "holder": 2, "waited_s": "nan?"}, {"waiter": 2, "holder": 1, "waited_s": float("nan")}]
    g = analyze({"futex": {"edges": bad, "edges_dropped": 4}, "lock": {"edges": [], "edges_dropped": "9"},
                 "blocked": {"edges": [], "edges_dropped": 3}})
    assert g["edges_count"] == 2 and g["edges_dropped"] == 7
    assert g["cycles_count"] == 1 and g["cycles"][0]["blocked_s"] == 0.0 and not g["cycles"][0]["stuck"]


def _bundle(tmp: Path) -> Path:
    """The recorded pthread ABBA bundle (playbooks/tests/freeze/pthread-abba: evidence from
    before the probes gave a task table) with freeze.yaml beside it."""
    rec = REPO / "playbooks" / "tests" / "freeze" / "pthread-abba"
    lp = load_playbook(REPO / "playbooks" / "freeze.yaml")
    tmp.mkdir()
    for name in ("evidence.json", "report.json"):
        (tmp / name).write_bytes((rec / name).read_bytes())
    (tmp / "playbook.yaml").write_text(lp.text)
    (tmp / "imports.json").write_text(json.dumps(lp.imported))
    return tmp


def test_replay_of_a_bundle_recorded_before_the_task_table(tmp_path: Path) -> None:
    p = investigate("replay", str(_bundle(tmp_path / "old")), "--json")
    assert p.returncode == 1, p.stdout + p.stderr
    rep = json.loads(p.stdout)
    (v,) = [v for v in rep["verdicts"] if v["verdict"] == "deadlock"]
    assert sorted((t["comm"], t["role"]) for t in v["tasks"]) == [("lock-a-then-b", "waiter"),
                                                                  ("lock-b-then-a", "waiter")]
    assert {lk["waiter_comm"] for lk in v["locks"]} == {"lock-a-then-b", "lock-b-then-a"}
