"""A kernel ABBA deadlock, started before the investigation: two tasks take the fault
module's two mutexes in opposite orders (tests/vm/faults/, second-kernel guests only).  On
6.1 and 6.12 the kernel records no lock a task is blocked on; sched.blocked finds each
waiter on its own stack, hence both mutexes and their owners, and the user-deadlock node
concludes deadlock with both tasks and both locks.  The waits are killable: the test ends
the deadlock by killing its tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.faults import FAULT_WRITER, MISSING, MODULE, fault_module
from scenarios.procs import processes, wait_alive

pytestmark = [pytest.mark.bpf, pytest.mark.second_kernel, pytest.mark.skipif(not MODULE.exists(), reason=MISSING)]


def test_kernel_mutex_abba_is_a_deadlock_with_both_locks(tmp_path: Path) -> None:
    with fault_module(), processes() as ps:
        a = ps.spawn(FAULT_WRITER, name="kabba-a", command="lock-pair 0 1 500", period=60, seconds=1)
        wait_alive(a, 0.2)
        b = ps.spawn(FAULT_WRITER, name="kabba-b", command="lock-pair 1 0 500", period=60, seconds=1)
        wait_alive(b, 1.5)          # each holds one mutex and waits for the other
        p = investigate("playbooks/deadlock.yaml", "--window", "2", "--json", "--out", str(tmp_path / "b"))
    assert p.returncode == 1, p.stderr
    rep = json.loads(p.stdout)
    (v,) = [v for v in rep["verdicts"] if v["node"] == "user-deadlock"]
    assert v["verdict"] == "deadlock", v
    assert sorted(t["tid"] for t in v["tasks"]) == sorted([a.pid, b.pid])
    locks = {(lk["waiter_tid"], lk["holder_tid"]): lk for lk in v["locks"]}
    assert set(locks) == {(a.pid, b.pid), (b.pid, a.pid)}, v["locks"]
    assert all(lk["kind"] == "mutex" and lk["source"] == "blocked" for lk in v["locks"])
    assert locks[(a.pid, b.pid)]["addr"] != locks[(b.pid, a.pid)]["addr"]      # two mutexes
    # each task's stack shows the module's lock-pair function
    for t in v["tasks"]:
        assert any("fault_lock_pair" in f for f in t.get("stack", [])), t
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["user-deadlock"]["blocked"]
    assert {t["blocker"]["source"] for t in ev["tasks"] if t["tid"] in (a.pid, b.pid)} <= {"stack", "kernel"}
