"""Reading a process's memory must never hang the investigation.  user.futex reads the
futex words of waiting tasks from their own memory, which takes the process's mmap_lock
for reading and waits while a writer holds it (a thread stuck in mmap() on a hung
filesystem).  Here the fault module (second-kernel guests only) holds the mmap_lock of a
pthread-deadlocked process for writing before the investigation starts, until the test
releases it after the investigation ended: the probe must see the lock busy, not read that
process, and say so -- without it the snapshot would wait for the release and then find
the deadlock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.build import c_helper
from scenarios.faults import FAULT_WRITER, MISSING, MODULE, fault_module, mmap_held, mmap_release, wait_mmap_held
from scenarios.procs import processes, start_abba

pytestmark = [pytest.mark.bpf, pytest.mark.second_kernel, pytest.mark.skipif(not MODULE.exists(), reason=MISSING)]


def test_futex_waiters_of_a_process_whose_mmap_lock_is_held_are_not_read(tmp_path: Path) -> None:
    exe = c_helper("abba", tmp_path)
    with fault_module(), processes() as ps:
        _, waiters = start_abba(ps, str(exe), settle=1.0)
        pid = waiters["ab"][1]
        # held until released below (120 s at the most, the module's own bound); the writer
        # writes once (its write returns at the release, after its 1 s) and exits
        hold = ps.spawn(FAULT_WRITER, name="mmap-holder", command=f"mmap-hold {pid} 120000", period=0.1,
                        seconds=1)
        try:
            wait_mmap_held(pid, hold)
            p = investigate("playbooks/deadlock.yaml", "--window", "2", "--json", "--out", str(tmp_path / "b"))
            still_held = mmap_held() == pid
        finally:
            mmap_release()
        hold.wait(timeout=30)
    assert still_held, "the mmap_lock hold ended before the investigation did"
    rep = json.loads(p.stdout)
    assert not [v for v in rep["verdicts"] if v["verdict"] == "deadlock"], rep["verdicts"]
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["user-deadlock"]["futex"]
    ours = {w["tid"]: w for w in ev["waiters"] if w["pid"] == pid}
    assert {tid for tid, _ in waiters.values()} <= set(ours), ev["waiters"]
    for w in ours.values():
        assert w["unread"].startswith("not read: the process's mmap_lock"), w
        assert w["owner_tid"] == 0
