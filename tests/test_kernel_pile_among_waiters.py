"""A pthread ABBA deadlock formed while a thousand other tasks wait on ONE kernel mutex:
a rename across two directories of a FUSE mount holds the superblock's
s_vfs_rename_mutex while it waits for a daemon that never answers, and a thousand threads
renaming across the same directories sleep on that mutex (lock_rename) in D state.  The
pile is a look-alike: a thousand stuck kernel-lock waits behind one holder that waits for
the daemon, a chain and not a cycle.  deadlock.yaml must name the ABBA -- its two threads,
its two mutexes -- and nothing of the pile, and sched.blocked must give every one of the
thousand kernel waits as an edge to the mutex's owner, none dropped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.build import c_helper
from scenarios.procs import FUSE_RENAMER, SCENARIO_S, fuse_mount, processes, threads_by_comm, wait_alive
from test_deadlock_among_waiters import _futex_waiting, _spawn, _until

pytestmark = [pytest.mark.bpf, pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")]

PILE = 1000

RENAME_PILE = """
import os, threading, time
open("/proc/self/comm", "w").write("{name}")
threading.stack_size(256 * 1024)
def rename():
    try:
        os.rename("{src}", "{dst}")     # sleeps on s_vfs_rename_mutex, held by the first renamer
    except OSError:
        pass                            # the connection aborted at the end of the test
ts = [threading.Thread(target=rename, daemon=True) for _ in range({n})]
for t in ts:
    t.start()
time.sleep({seconds})
"""


def _states(pid: int) -> list[str]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                out.append(f.read().rsplit(")", 1)[1].split()[0])
        except OSError:
            continue
    return out


def _wchan(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read()
    except OSError:
        return ""


def test_abba_deadlock_is_found_among_a_thousand_kernel_mutex_waiters(tmp_path: Path) -> None:
    abba_exe = c_helper("abba", tmp_path)
    with processes() as ps, fuse_mount(ps, str(tmp_path), "silent") as (daemon, mnt):
        holder = ps.spawn(FUSE_RENAMER, name="kpile-holder", src=f"{mnt}/a/x", dst=f"{mnt}/b/y")
        _until("the holder's wait for the daemon", lambda: _wchan(holder.pid) == "request_wait_answer")
        pile = ps.spawn(RENAME_PILE, name="kpile", src=f"{mnt}/a/z", dst=f"{mnt}/b/w", n=PILE,
                        seconds=SCENARIO_S)
        _until(f"{PILE} threads on the rename mutex", lambda: _states(pile.pid).count("D") >= PILE)
        pile_waiters = {int(t) for t in os.listdir(f"/proc/{pile.pid}/task")} - {pile.pid}
        abba, printed = _spawn(ps, [str(abba_exe), str(SCENARIO_S)])
        _until("the ABBA deadlock", lambda: len(_futex_waiting(abba.pid, [
            str(t) for c, t in threads_by_comm(abba.pid).items() if c.startswith("lock-")])) == 2)
        threads = threads_by_comm(abba.pid)
        ab, ba = threads["lock-a-then-b"], threads["lock-b-then-a"]
        p = investigate("playbooks/deadlock.yaml", "--window", "2", "--json", "--out", str(tmp_path / "b"))
        assert holder.poll() is None and pile.poll() is None and abba.poll() is None
        wait_alive(daemon, 0)
    assert p.returncode == 1, p.stdout + p.stderr
    rep = json.loads(p.stdout)
    deadlocks = [v for v in rep["verdicts"] if v["verdict"] == "deadlock"]
    assert [v["node"] for v in deadlocks] == ["user-deadlock"], rep["verdicts"]
    (v,) = deadlocks
    assert sorted(t["tid"] for t in v["tasks"]) == sorted([ab, ba])
    assert {lk["addr"] for lk in v["locks"]} == {hex(int(printed["a"], 16)), hex(int(printed["b"], 16))}
    assert v["evidence"]["waitfor.stuck_cycles_count"] == 1, v["evidence"]
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())
    blocked = ev["user-deadlock"]["blocked"]
    pile_edges = [e for e in blocked["edges"] if e["holder"] == holder.pid]
    assert len(pile_edges) == PILE, (len(pile_edges), blocked["edges"][:3])
    assert len({e["addr"] for e in pile_edges}) == 1 and all(e["kind"] == "mutex" for e in pile_edges)
    assert blocked["edges_dropped"] == 0
    assert {e["waiter"] for e in pile_edges} == pile_waiters
