"""Kernel lock contention as the waiters feel it: eight processes rewriting the first MiB of
one file on a tmpfs the test mounts, again and again -- each write holds the file's i_rwsem
for writing, so at any moment most of the others wait for it, a few milliseconds to tens of
milliseconds at a time, thousands of waits in all.  Started before the investigation;
freeze.yaml's first look sees the crowd blocked on one rwsem and routes to kernel-locks,
whose verdict names every writer as a waiter with its share of the window, the writers they
waited for as holders, and the lock as the i_rwsem of that file.

Look-alike that must never be named: four processes doing the same writes, each to a file
of its own (the same load on the same filesystem, no lock in common)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.procs import FILE_WRITERS, SCENARIO_S, processes, small_tmpfs, wait_alive

# Host only: under the guests' software emulation twelve busy writers leave the investigation
# too little CPU to finish in time; lock.contention itself runs in the guests
# (test_lock_probe.py, test_lock_nesting.py).
pytestmark = [pytest.mark.bpf]


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _wait_for_crowd(pids: list[int], n: int = 3) -> None:
    """At least ``n`` of the writers in D state at once: waiting for the file's lock."""
    deadline = time.monotonic() + 60
    while sum(_state(p) == "D" for p in pids) < n:
        assert time.monotonic() < deadline, [_state(p) for p in pids]
        time.sleep(0.01)


def test_eight_writers_of_one_file_are_contenders_for_its_inode_lock(tmp_path: Path) -> None:
    with small_tmpfs(str(tmp_path), "64m") as mnt, processes() as ps:
        shared = f"{mnt}/shared"
        parent, writers = ps.spawn_with_pids(FILE_WRITERS, str(tmp_path / "w"), name="inv-crowd", path=shared,
                                             writers=8, mib=1, shared=True, seconds=SCENARIO_S)
        own, alone = ps.spawn_with_pids(FILE_WRITERS, str(tmp_path / "o"), name="inv-alone", path=f"{mnt}/own",
                                        writers=4, mib=1, shared=False, seconds=SCENARIO_S)
        _wait_for_crowd(writers)
        inode = os.stat(shared).st_ino
        p = investigate("playbooks/freeze.yaml", "--window", "2", "--json", timeout=240)
        for x in (parent, own):
            wait_alive(x, 0)
    assert p.returncode == 1, p.stdout + p.stderr
    rep = json.loads(p.stdout)
    (look,) = [n for n in rep["nodes"] if n["id"] == "triage"]
    assert any("kernel-locks" in r["next"] for r in look["routes"]), look["routes"]
    (v,) = [v for v in rep["verdicts"] if v["node"] == "kernel-locks"]
    assert v["verdict"] == "contention", v
    d = v["evidence"]["details"]
    assert d["kind"] == "rwsem" and d["name"] == f"i_rwsem of {shared}", d
    assert d["protects"]["object"] == "inode" and d["protects"]["path"] == shared, d["protects"]
    assert d["protects"]["inode"] == inode, d["protects"]
    # every writer a contender, each of them waiting a large share of the window; together
    # they lost several tasks' whole window
    assert d["waiters"] == 8 and d["others"] == 0, d
    assert {c["tid"] for c in d["contenders"]} == set(writers), d["contenders"]
    assert all(c["wait_pct"] >= 20.0 and c["waits"] > 0 for c in d["contenders"]), d["contenders"]
    assert d["share_pct"] >= 200.0 and d["count"] >= 50, d
    # the holders they waited for are writers too (each holds it in turn)
    assert d["holders"] and {h["tid"] for h in d["holders"]} <= set(writers), d["holders"]
    assert {t["tid"] for t in v["tasks"] if t["role"] == "waiter"} == set(writers), v["tasks"]
    assert {t["role"] for t in v["tasks"]} == {"waiter"}, v["tasks"]
    assert (v["locks"][0]["kind"], v["locks"][0]["name"]) == ("rwsem", f"i_rwsem of {shared}"), v["locks"]
    assert shared in v["summary"] and "8 tasks" in v["summary"], v["summary"]
    # the look-alike: the same writes to files of their own, never a contender; twelve busy
    # writers on a small machine may keep a kworker from its CPU (a true verdict of another kind)
    named = {t["tid"] for x in rep["verdicts"] if x["verdict"] != "starvation" for t in x["tasks"]}
    assert not named & set(alone), rep["verdicts"]
    assert v["confidence"] == "high", v
