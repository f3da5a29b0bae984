"""One incident, one story: report.model.join links verdicts that tell the same incident
(the units around the live runs of tests/test_holder_state.py and test_follow_findings.py,
which check the same links on real conditions)."""

from __future__ import annotations

from investigator.report.model import build
from investigator.result import NodeResult, RunOutcome


def _node(nid: str, verdict: str, tids: list[tuple[int, str]], focus_from: str | None = None,
          visit: int = 1) -> NodeResult:
    about = {"tasks": [{"tid": t, "pid": t, "comm": f"t{t}", "role": r} for t, r in tids]}
    return NodeResult(id=nid, hypothesis="", window_s=1.0, status="confirmed", verdict=verdict,
                      confidence="high", summary=f"{verdict} of {tids}", about=about, visit=visit,
                      reached_from=[focus_from] if focus_from else [],
                      focus={"from": focus_from, "roles": ["holder"], "tids": []} if focus_from else None)


def _report(*nodes: NodeResult) -> dict:
    return build(RunOutcome(playbook="p", nodes=list(nodes), started_at="", duration_s=1.0, complete=True,
                            kernel={}))


def test_a_hung_task_whose_tasks_are_in_a_deadlock_is_its_symptom() -> None:
    rep = _report(_node("blocked-tasks", "hung-task", [(10, "waiter")]),
                  _node("user-deadlock", "deadlock", [(10, "waiter"), (11, "waiter")]),
                  _node("other", "hung-task", [(12, "waiter")]))
    hung, dead, other = rep["verdicts"]
    assert hung["symptom_of"] == "user-deadlock" and "deadlock" in hung["joined"]
    assert dead["symptoms"] == ["blocked-tasks"] and dead["symptom_of"] is None
    assert other["symptom_of"] is None and other["symptoms"] == []
    assert rep["root_causes"] == ["user-deadlock", "other"]


def test_a_follow_up_explains_the_finding_it_was_aimed_at() -> None:
    rep = _report(_node("cpu-starvation", "starvation", [(20, "victim"), (30, "culprit")]),
                  _node("user-deadlock", "hung-task", [(40, "waiter"), (20, "holder")]),
                  _node("holder-state", "priority-inversion", [(40, "victim"), (30, "culprit"), (20, "holder")],
                        focus_from="user-deadlock"))
    starv, chain, pi = rep["verdicts"]
    assert chain["symptom_of"] == "holder-state" and starv["symptom_of"] == "holder-state"
    assert sorted(pi["symptoms"]) == ["cpu-starvation", "user-deadlock"]
    assert rep["root_causes"] == ["holder-state"]


def test_verdicts_of_one_kind_or_of_other_tasks_stay_apart() -> None:
    rep = _report(_node("a", "hung-task", [(1, "waiter")]), _node("b", "hung-task", [(1, "waiter")]),
                  _node("c", "deadlock", [(2, "waiter"), (3, "waiter")]),
                  _node("d", "starvation", [(2, "victim"), (3, "culprit")]),
                  _node("e", "hung-task", [(0, "waiter")]))
    assert all(v["symptom_of"] is None for v in rep["verdicts"])
    assert rep["root_causes"] == ["a", "b", "c", "d", "e"]


def test_a_node_visited_twice_has_one_id_per_visit() -> None:
    rep = _report(_node("n", "hung-task", [(5, "waiter")]), _node("n", "deadlock", [(5, "waiter"), (6, "waiter")],
                                                                  visit=2))
    assert [v["id"] for v in rep["verdicts"]] == ["n", "n#2"]
    assert rep["verdicts"][0]["symptom_of"] == "n#2"


def test_the_kernels_own_report_joins_a_verdict_that_explains_it_and_stands_alone_otherwise() -> None:
    """A soft lockup the kernel reported names the task on the stuck CPU: a starvation that
    names that task as its culprit explains it; a report of another task stays a root cause."""
    report = _node("kernel-stall", "starvation", [(30, "culprit")])
    report.about["kernel_report"] = True
    lonely = _node("kernel-stall", "starvation", [(50, "culprit")], visit=2)
    lonely.about["kernel_report"] = True
    rep = _report(report, _node("cpu-starvation", "starvation", [(20, "victim"), (30, "culprit")]), lonely)
    told, starv, alone = rep["verdicts"]
    assert told["symptom_of"] == "cpu-starvation" and "kernel reported" in told["joined"], told
    assert starv["symptoms"] == ["kernel-stall"] and alone["symptom_of"] is None
    assert rep["root_causes"] == ["cpu-starvation", "kernel-stall#2"]
