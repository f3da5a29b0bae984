"""Routes: edges taken on what a node saw, not on its verdict.  A real D-state task (a
vfork() parent waiting for its child) started before the run: the first look sees it
stuck and routes to a node aimed at it; a look-alike that only sleeps (S state) sends
nothing on, and the node it would route to never runs.  And triage.yaml on the priority
inversion of tests/test_follow_findings.py: its first look routes the chain on to the same
root cause as freeze.yaml."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.build import c_helper
from scenarios.procs import SCENARIO_S, processes, sysctl, wait_alive
from test_follow_findings import CPU, _node, _start

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


@pytest.mark.cpu_heavy
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs a second CPU to starve")
def test_the_first_look_sends_the_chain_on_to_the_same_root_cause(tmp_path: Path) -> None:
    """triage.yaml: freeze.yaml's nodes behind a one-second first look.  The first look sees
    the waiter's lock wait and the holder queued for its CPU, and routes both on; the chain
    and its follow-up reach the same priority inversion as freeze.yaml does."""
    exe = c_helper("prio_inversion", tmp_path)
    with sysctl("kernel.sched_rt_runtime_us", "950000"), processes() as ps:
        proc, tids, mutex = _start(ps, exe, 20)
        p = investigate("playbooks/triage.yaml", "--window", "2", "--json", "--out", str(tmp_path / "b"), timeout=240)
        wait_alive(proc, 0)
    assert p.returncode == 1, p.stdout + p.stderr
    rep = json.loads(p.stdout)
    look = _node(rep, "triage")
    assert look["window_s"] == 1.0 and look["reached_from"] == []
    sent = [n for r in look["routes"] for n in r["next"]]
    assert "user-deadlock" in sent and "cpu-starvation" in sent, look["routes"]
    assert _node(rep, "user-deadlock")["reached_from"] == ["triage"]
    assert _node(rep, "holder-state")["reached_from"] == ["user-deadlock"]
    (v,) = [v for v in rep["verdicts"] if v["node"] == "holder-state"]
    assert v["verdict"] == "priority-inversion", v
    roles = {t["role"]: t["tid"] for t in v["tasks"]}
    assert roles == {"victim": tids["waiter"], "culprit": tids["middle"], "holder": tids["holder"]}, v["tasks"]
    assert v["locks"][0]["addr"] == mutex and v["cpus"] == [CPU]
    assert "holder-state" in rep["root_causes"], rep["root_causes"]
