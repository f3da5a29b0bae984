"""A pthread ABBA deadlock formed while a thousand other threads wait on another pthread
mutex, whose holder sleeps (tests/scenarios/mutex_pile.c, started first so that its
threads come first in the kernel's task order).  The pile is a look-alike: a thousand
stuck waits behind one holder that waits for nothing, a chain and not a cycle.  Both
deadlock.yaml and freeze.yaml must name the deadlock -- its two threads and its two
mutexes -- and nothing of the pile as part of it: every edge reaches the analysis."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.build import c_helper
from scenarios.procs import SCENARIO_S, processes, sysctl, threads_by_comm

pytestmark = [pytest.mark.bpf]

PILE = 1000
WAIT_S = 60.0           # how long the scenarios may take to reach their waits, at most


def _futex_waiting(pid: int, tids: list[str] | None = None) -> list[int]:
    """The threads of ``pid`` asleep in a futex wait (by their wchan)."""
    out = []
    for tid in tids if tids is not None else os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                if f.read().startswith("futex"):
                    out.append(int(tid))
        except OSError:
            continue
    return out


def _until(what: str, cond: "object") -> None:
    end = time.monotonic() + WAIT_S
    while not cond():           # type: ignore[operator]
        if time.monotonic() > end:
            raise AssertionError(f"the scenario did not reach {what} within {WAIT_S:g} s")
        time.sleep(0.1)


def _spawn(ps: object, argv: list[str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    ps.procs.append(proc)       # type: ignore[attr-defined]
    printed = dict(part.split("=") for part in proc.stdout.readline().split())  # type: ignore[union-attr]
    assert printed, f"{argv[0]} printed nothing (exit {proc.poll()})"
    return proc, printed


@pytest.mark.parametrize("playbook", ["deadlock.yaml", "freeze.yaml"])
def test_abba_deadlock_is_found_among_a_thousand_waiters(tmp_path: Path, playbook: str) -> None:
    pile_exe, abba_exe = c_helper("mutex_pile", tmp_path), c_helper("abba", tmp_path)
    # TIDs keep growing through the test (a pid_max of 32768 wraps them after a long suite)
    with sysctl("kernel.pid_max", "4194304"), processes() as ps:
        pile, pp = _spawn(ps, [str(pile_exe), str(PILE), str(SCENARIO_S)])
        assert int(pp["started"]) == PILE, pp
        holder = int(pp["holder"])
        _until(f"{PILE} threads in futex wait", lambda: len(_futex_waiting(pile.pid)) >= PILE)
        abba, printed = _spawn(ps, [str(abba_exe), str(SCENARIO_S)])
        _until("the ABBA deadlock", lambda: len(_futex_waiting(abba.pid, [
            str(t) for c, t in threads_by_comm(abba.pid).items() if c.startswith("lock-")])) == 2)
        threads = threads_by_comm(abba.pid)
        ab, ba = threads["lock-a-then-b"], threads["lock-b-then-a"]
        assert min(ab, ba) > max(int(t) for t in os.listdir(f"/proc/{pile.pid}/task"))
        p = investigate(f"playbooks/{playbook}", "--window", "2", "--json", "--out", str(tmp_path / "b"))
        assert pile.poll() is None and abba.poll() is None, "the scenarios must outlive the run"
    assert p.returncode == 1, p.stdout + p.stderr
    rep = json.loads(p.stdout)
    deadlocks = [v for v in rep["verdicts"] if v["verdict"] == "deadlock"]
    assert [v["node"] for v in deadlocks] == ["user-deadlock"], rep["verdicts"]
    (v,) = deadlocks
    assert sorted((t["tid"], t["pid"]) for t in v["tasks"]) == sorted([(ab, abba.pid), (ba, abba.pid)])
    a, b = hex(int(printed["a"], 16)), hex(int(printed["b"], 16))
    locks = {lk["addr"]: lk for lk in v["locks"]}
    assert set(locks) == {a, b}, v["locks"]
    assert locks[a]["holder_tid"] == ab and locks[a]["waiter_tid"] == ba
    assert locks[b]["holder_tid"] == ba and locks[b]["waiter_tid"] == ab
    # the pile is one stuck chain per waiter, never a cycle: one stuck cycle in all
    assert v["evidence"]["waitfor.stuck_cycles_count"] == 1, v["evidence"]
    pile_lock = hex(int(pp["lock"], 16))
    assert pile_lock not in locks and holder not in {t["tid"] for t in v["tasks"]}
    # every edge reached the analysis, none dropped
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["user-deadlock"]["futex"]
    pile_edges = [e for e in ev["edges"] if e["holder"] == holder]
    assert len(pile_edges) == PILE and all(e["lock"] == f"pthread_mutex {pile_lock}" for e in pile_edges)
    assert ev["edges_dropped"] == 0


CUT_PLAYBOOK = """\
apiVersion: investigator/v1
kind: Playbook
metadata:
  name: futex-cut
  description: user.futex with a record limit below the waiters it finds.
start: [cut]
nodes:
  cut:
    hypothesis: More futex waiters than the limit.
    probes:
      - use: user.futex
        with: {max_records: 100}
    conclude:
      - when: waitfor.stuck_cycles_count > 0
        verdict: deadlock
      - when: "true"
        verdict: refuted
"""


def test_waits_dropped_before_the_analysis_are_counted_and_shown(tmp_path: Path) -> None:
    """The futex snapshot kept to 100 records while 300 threads wait: the 200 and more it
    dropped are counted in the probe's evidence and in waitfor, and the report says that
    the graph lacks them."""
    exe = c_helper("mutex_pile", tmp_path)
    book = tmp_path / "cut.yaml"
    book.write_text(CUT_PLAYBOOK)
    with processes() as ps:
        pile, pp = _spawn(ps, [str(exe), "300", str(SCENARIO_S)])
        _until("300 threads in futex wait", lambda: len(_futex_waiting(pile.pid)) >= 300)
        p = investigate(str(book), "--window", "1", "--out", str(tmp_path / "b"))
    assert p.returncode == 0, p.stdout + p.stderr
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["cut"]["futex"]
    assert ev["truncated"] and len(ev["edges"]) <= 100 and ev["edges_dropped"] >= 200, ev["edges_dropped"]
    (node,) = json.loads((tmp_path / "b" / "report.json").read_text())["nodes"]
    note = f"the wait-for graph lacks {ev['edges_dropped']} wait(s)"
    assert [e for e in node["errors"] if e.startswith(note)], node["errors"]
    assert note in p.stdout, p.stdout
