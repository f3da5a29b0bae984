"""Follow the findings: freeze.yaml's first look finds a task stuck behind a lock holder and
sends it to user-deadlock and to the follow-up holder-state, aimed at that holder alone (its
TID in the kernel's filter), which finds why the holder does not let go.

The condition is real and set up before the investigation (tests/scenarios/prio_inversion.c,
all on CPU 1, RT throttling at its default so the machine stays alive): a SCHED_OTHER holder
of a normal pthread mutex, a waiter blocked on the mutex, and a SCHED_FIFO middle task that
spins.  With a SCHED_FIFO waiter more important than the middle task it is a priority
inversion; with a SCHED_OTHER waiter (the look-alike) it is the holder's starvation, and no
inversion."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.build import c_helper
from scenarios.procs import SCENARIO_S, processes, sysctl, wait_alive

pytestmark = [pytest.mark.bpf, pytest.mark.cpu_heavy, pytest.mark.second_kernel,
              pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs a second CPU to starve")]

CPU = 1


def _runq_wait_ms(tid: int) -> float:
    """How long the task has waited for a CPU in all, from its schedstat."""
    return int(Path(f"/proc/{tid}/schedstat").read_text().split()[1]) / 1e6


def _start(ps, exe: Path, waiter_prio: int) -> tuple[subprocess.Popen[str], dict[str, int], str]:
    proc = subprocess.Popen([str(exe), str(SCENARIO_S), str(CPU), str(waiter_prio), "10"],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    ps.procs.append(proc)
    printed = dict(part.split("=") for part in proc.stdout.readline().split())  # type: ignore[union-attr]
    tids = {k: int(printed[k]) for k in ("holder", "waiter", "middle")}
    # the holder has been kept from its CPU for a while before the investigation starts
    base, deadline = _runq_wait_ms(tids["holder"]), time.monotonic() + 120
    while _runq_wait_ms(tids["holder"]) - base < 1500:
        assert time.monotonic() < deadline and proc.poll() is None, "the holder was never kept from its CPU"
        time.sleep(0.05)
    return proc, tids, hex(int(printed["mutex"], 16))


def _run(tmp_path: Path) -> dict:
    p = investigate("playbooks/freeze.yaml", "--window", "2", "--json", "--out", str(tmp_path / "b"), timeout=240)
    assert p.returncode == 1, p.stdout + p.stderr
    return json.loads(p.stdout)


def _node(rep: dict, nid: str) -> dict:
    (n,) = [n for n in rep["nodes"] if n["id"] == nid]
    return n


@pytest.mark.parametrize("waiter_prio", [20, 0], ids=["fifo-waiter", "normal-waiter-look-alike"])
def test_the_holder_of_a_lock_is_followed_to_why_it_does_not_let_go(tmp_path: Path, waiter_prio: int) -> None:
    exe = c_helper("prio_inversion", tmp_path)
    with sysctl("kernel.sched_rt_runtime_us", "950000"), processes() as ps:
        proc, tids, mutex = _start(ps, exe, waiter_prio)
        rep = _run(tmp_path)
        wait_alive(proc, 0)     # the scenario outlived the investigation
    # the first hop: the waiter is stuck behind the holder (a chain, no cycle)
    (chain,) = [v for v in rep["verdicts"] if v["node"] == "user-deadlock"]
    assert chain["verdict"] == "hung-task"
    roles = {t["role"]: t["tid"] for t in chain["tasks"]}
    assert roles == {"waiter": tids["waiter"], "holder": tids["holder"]}, chain["tasks"]
    # the first look saw the waiter's lock wait and the holder queued for its CPU, and routed
    # both on
    look = _node(rep, "triage")
    assert look["window_s"] == 1.0 and look["reached_from"] == []
    sent = [n for r in look["routes"] for n in r["next"]]
    assert "user-deadlock" in sent and "cpu-starvation" in sent, look["routes"]
    # and sent the stuck chain's holder straight on to holder-state, aimed by the route's finding
    assert "holder-state" in sent, look["routes"]
    (passed,) = [r["about"] for r in look["routes"] if "holder-state" in r["next"]]
    assert {t["role"]: t["tid"] for t in passed["tasks"]} == {"waiter": tids["waiter"], "holder": tids["holder"]}
    node = _node(rep, "holder-state")
    assert node["reached_from"] == ["triage"] and _node(rep, "user-deadlock")["reached_from"] == ["triage"]
    assert node["focus"]["tids"] == [tids["holder"]] and node["focus"]["roles"] == ["holder"]
    assert node["focus"]["from"] == "triage"
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["holder-state"]
    assert {t["tid"] for t in ev["runqlat"]["tasks"]} == {tids["holder"]}, ev["runqlat"]["tasks"]
    (v,) = [v for v in rep["verdicts"] if v["node"] == "holder-state"]
    if waiter_prio:
        assert v["verdict"] == "priority-inversion", v
        roles = {t["role"]: t for t in v["tasks"]}
        assert roles["victim"]["tid"] == tids["waiter"] and roles["culprit"]["tid"] == tids["middle"]
        assert roles["holder"]["tid"] == tids["holder"]
        assert roles["victim"]["prio"] < roles["culprit"]["prio"] < roles["holder"]["prio"]
        (lk,) = v["locks"]
        assert lk["addr"] == mutex and lk["holder_tid"] == tids["holder"] and lk["waiter_tid"] == tids["waiter"]
        assert v["cpus"] == [CPU]
        assert "Priority inversion" in v["summary"] and "pi-middle" in v["summary"]
    else:
        # the waiter matters less than the spinner: the holder is starved, no inversion
        assert v["verdict"] == "starvation", v
        roles = {t["role"]: t["tid"] for t in v["tasks"]}
        assert roles == {"victim": tids["holder"], "culprit": tids["middle"]}, v["tasks"]
        assert not [x for x in rep["verdicts"] if x["verdict"] == "priority-inversion"]
    # one incident, one story: the chain, and the holder's starvation seen by cpu-starvation,
    # are symptoms of the follow-up's verdict
    assert chain["symptom_of"] == "holder-state" and rep["root_causes"].count("holder-state") == 1
    for x in rep["verdicts"]:
        if x["node"] == "cpu-starvation" and {t["tid"] for t in x["tasks"]} <= set(tids.values()):
            assert x["symptom_of"] == "holder-state", x
    assert v["evidence"]["details"].get("wait_ms", 0) >= 100 or v["evidence"]["details"].get("waiting_ms", 0) >= 1000


