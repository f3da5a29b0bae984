"""Routes: edges taken on what a node saw, not on its verdict.  A real D-state task (a
vfork() parent waiting for its child) started before the run: the first look sees it
stuck and routes to a node aimed at it; a look-alike that only sleeps (S state) sends
nothing on, and the node it would route to never runs.  freeze.yaml's own first look, routing a
priority inversion on to its root cause, is in tests/test_follow_findings.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.build import c_helper
from scenarios.procs import SCENARIO_S, processes, wait_alive

# the routes are the engine's, the same on every kernel: the probes they lead to are proven
# in the second-kernel stage through freeze.yaml
pytestmark = [pytest.mark.bpf]

BOOK = """apiVersion: investigator/v1
kind: Playbook
metadata: {name: routes-test, description: a first look that routes what it saw}
start: [look]
nodes:
  look:
    hypothesis: a first look at the blocked tasks
    observe: {window: 1s}
    probes:
      - use: sched.blocked
      - use: system.pressure
        optional: true
    conclude:
      - when: blocked.stuck_count > 0
        verdict: inconclusive
        about: blocked.worst
        explain: "{blocked.stuck_count} task(s) stuck"
    otherwise: refuted
    route:
      - when: blocked.stuck_count > 0
        next: [why-stuck]
        because: "{blocked.worst.task.comm} (tid {blocked.worst.task.tid}) did not run through the first look"
  why-stuck:
    hypothesis: the stuck task waits for something
    focus: {from: look, tasks: [waiter]}
    probes: [{use: sched.progress}]
    conclude:
      - when: progress.worst.task.tid != 0 && progress.worst.pct.blocked >= 80.0
        verdict: hung-task
        about: '{"tasks": [{"tid": progress.worst.task.tid, "pid": progress.worst.task.pid, "comm": progress.worst.task.comm, "role": "victim"}]}'
        explain: "{progress.worst.task.comm} {progress.worst.doing}"
"""

SLEEPER = ["python3", "-c", f"import time; time.sleep({SCENARIO_S})"]


def _run(tmp: Path) -> dict:
    book = tmp / "routes.yaml"
    book.write_text(BOOK)
    p = investigate(str(book), "--window", "2", "--json", "--out", str(tmp / "b"))
    assert p.returncode in (0, 1), p.stderr
    return json.loads((tmp / "b" / "report.json").read_text())


def _state(pid: int) -> str:
    try:
        return next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("State:"))
    except (OSError, StopIteration):
        return ""


def test_a_stuck_task_seen_at_first_look_is_routed_to_the_node_aimed_at_it(tmp_path: Path) -> None:
    exe = c_helper("vfork_wait", tmp_path)
    with processes() as ps:
        parent = ps.spawn_argv([str(exe), str(SCENARIO_S)])
        while _state(parent.pid) != "D":
            wait_alive(parent, 0.05)
        rep = _run(tmp_path)
        text = (tmp_path / "b" / "report.md").read_text()
    nodes = {n["id"]: n for n in rep["nodes"]}
    look, why = nodes["look"], nodes["why-stuck"]
    # the first look's window is its own (1 s) under --window 2: it is at most that
    assert look["window_s"] == 1.0, look
    (route,) = look["routes"]
    assert route["next"] == ["why-stuck"] and f"(tid {parent.pid})" in route["because"], route
    assert why["reached_from"] == ["look"] and why["focus"]["tids"] == [parent.pid], why
    assert why["verdict"] == "hung-task", why
    (v,) = [v for v in rep["verdicts"] if v["node"] == "why-stuck"]
    assert [(t["tid"], t["role"]) for t in v["tasks"]] == [(parent.pid, "victim")]
    assert "why-stuck" in text


def test_a_task_that_only_sleeps_routes_nowhere(tmp_path: Path) -> None:
    with processes() as ps:
        s = ps.spawn_argv(SLEEPER)
        while _state(s.pid) != "S":
            wait_alive(s, 0.05)
        rep = _run(tmp_path)
    look = next(n for n in rep["nodes"] if n["id"] == "look")
    assert look["status"] == "refuted" and "routes" not in look, look
    assert [n["id"] for n in rep["nodes"]] == ["look"]


WAITING = """apiVersion: investigator/v1
kind: Playbook
metadata: {name: routes-wait, description: a focused node reached before its sources could aim it}
vars: {tid: 0, hit: true}
start: [look]
nodes:
  look:
    hypothesis: a first look that passes no finding on
    observe: {window: 1s}
    probes: [{use: sched.blocked}]
    conclude:
      - when: "true"
        verdict: inconclusive
    route:
      - when: "true"
        next: [slow, why]
        because: "always"
  slow:
    hypothesis: a longer look that finds the task
    observe: {window: 2s}
    probes: [{use: sched.blocked}]
    conclude:
      - when: vars.hit
        verdict: hung-task
        about: '{"tasks": [{"tid": vars.tid, "pid": vars.tid, "comm": "sleeper", "role": "waiter"}]}'
        next: [why]
        explain: "tid {vars.tid}"
    otherwise: refuted
  why:
    hypothesis: where the task's time goes
    focus: {from: [look, slow], tasks: [waiter]}
    probes: [{use: sched.progress}]
    conclude:
      - when: progress.worst.task.tid != 0
        verdict: inconclusive
        explain: "{progress.worst.task.comm} {progress.worst.doing}"
"""


@pytest.mark.parametrize("hit", [True, False], ids=["aimed-by-the-later-source", "no-source-finds-it"])
def test_a_focused_node_reached_first_waits_for_a_source_still_at_work(tmp_path: Path, hit: bool) -> None:
    book = tmp_path / "wait.yaml"
    book.write_text(WAITING)
    with processes() as ps:
        sleeper = ps.spawn_argv(SLEEPER)
        p = investigate(str(book), "--window", "2", "--json", "--out", str(tmp_path / "b"),
                        "--set", f"tid={sleeper.pid}", "--set", f"hit={'true' if hit else 'false'}")
        wait_alive(sleeper, 0)
    assert p.returncode in (0, 1), p.stderr
    rep = json.loads((tmp_path / "b" / "report.json").read_text())
    nodes = {n["id"]: n for n in rep["nodes"]}
    why = nodes["why"]
    if hit:
        # reached from the first look, which passed nothing: it waited for slow, and slow's
        # finding aimed it
        assert why["status"] != "skipped", why
        assert why["focus"]["from"] == "slow" and why["focus"]["tids"] == [sleeper.pid], why["focus"]
        assert why["reached_from"] == ["look", "slow"], why["reached_from"]
        ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["why"]["progress"]
        assert [t["tid"] for t in ev["tasks"]] == [sleeper.pid], ev["tasks"]
    else:
        # skipped only once slow concluded without a finding, and it says so
        assert why["status"] == "skipped" and "reached no finding" in " ".join(why["errors"]), why
        assert nodes["slow"]["verdict"] == "refuted"
    assert sum(1 for n in rep["nodes"] if n["id"] == "why") == 1
