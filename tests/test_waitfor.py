"""The merged wait-for graph (waitfor.*) on real reproducers started before the
investigation: a flock ABBA deadlock between two processes, and a kernel-mutex chain that
ends in a task waiting for a reader that never reads -- hung-task, not deadlock.  Both are
concluded by playbooks/freeze.yaml's user-deadlock node."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.procs import FLOCK_ABBA, PTY_WRITERS, processes, wait_alive

from investigator.probes.manifest import kernel_version

pytestmark = [pytest.mark.bpf]


def freeze(tmp: Path) -> tuple[dict, dict]:
    p = investigate("playbooks/freeze.yaml", "--window", "2", "--json", "--out", str(tmp / "b"))
    assert p.returncode == 1, p.stderr
    rep = json.loads(p.stdout)
    return rep, next(v for v in rep["verdicts"] if v["node"] == "user-deadlock")


def test_flock_abba_deadlock_names_both_processes_and_files(tmp_path: Path) -> None:
    with processes() as ps:
        parent, (p0, p1) = ps.spawn_with_pids(FLOCK_ABBA, str(tmp_path / "pids"), name="flock-abba",
                                              dir=str(tmp_path), seconds=60)
        wait_alive(parent, 1.5)           # both hold one lock and wait for the other
        rep, v = freeze(tmp_path)
    assert v["verdict"] == "deadlock", v
    assert {t["tid"] for t in v["tasks"]} == {p0, p1}
    assert {t["comm"] for t in v["tasks"]} == {"flock-abba-0", "flock-abba-1"}
    locks = {(lk["holder_tid"], lk["waiter_tid"]): lk for lk in v["locks"]}
    # p0 holds first.lock and waits for second.lock, which p1 holds; and the reverse
    assert locks[(p0, p1)]["lock"] == f"flock {tmp_path}/first.lock"
    assert locks[(p1, p0)]["lock"] == f"flock {tmp_path}/second.lock"
    assert all(lk["source"] == "flock" for lk in v["locks"])
    assert "2 tasks wait for each other's locks" in v["summary"]
    # replay gives the same verdict from the bundle alone
    r = investigate("replay", str(tmp_path / "b"), "--json")
    again = next(x for x in json.loads(r.stdout)["verdicts"] if x["node"] == "user-deadlock")
    assert again["summary"] == v["summary"]


@pytest.mark.skipif(kernel_version() < (6, 16), reason="the kernel records a task's lock in task->blocker since 6.16")
def test_mutex_chain_ending_in_a_reader_that_never_reads_is_hung_task(tmp_path: Path) -> None:
    with processes() as ps:
        parent, (w0, w1) = ps.spawn_with_pids(PTY_WRITERS, str(tmp_path / "pids"), name="ptychain", drain=0,
                                              chunk=256 * 1024, seconds=60)
        wait_alive(parent, 1.0)           # w0 blocks holding the tty write mutex; w1 waits for it
        rep, v = freeze(tmp_path)
    assert v["verdict"] == "hung-task", v
    roles = {(t["tid"], t["role"]) for t in v["tasks"]}
    assert roles == {(w1, "waiter"), (w0, "holder")}, roles
    (lk,) = v["locks"]
    assert lk["kind"] == "mutex" and lk["waiter_tid"] == w1 and lk["holder_tid"] == w0
    assert f"ptychain-w0 (tid {w0}), sleeping in wait_woken" in v["summary"], v["summary"]
    # not a deadlock, and the other nodes stay quiet
    assert all(x["verdict"] != "deadlock" for x in rep["verdicts"])
