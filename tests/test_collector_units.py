"""Collector logic around the kernel's records, on records built by hand (the probes
themselves are tested on the real kernel elsewhere)."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace
from typing import Any

from investigator.probes.collectors import runqlat


class _Map:
    def __init__(self, rows: list[tuple[bytes, bytes]]) -> None:
        self.rows = rows

    def items(self, limit: int = 0) -> list[tuple[bytes, bytes]]:
        return self.rows


def _wait(tid: int, culprit_tid: int, culprit_tgid: int, comm: bytes) -> tuple[bytes, bytes]:
    c = runqlat.Culprit(overlap_ns=290_000_000, tid=culprit_tid, tgid=culprit_tgid, prio=120, policy=0, comm=comm)
    t = runqlat.TaskLat(count=3, total_ns=400_000_000, max_ns=300_000_000, over=3, max_at_ns=time.monotonic_ns(),
                        tgid=tid, max_cpu=1, prio=139, policy=0, comm=b"victim", culprit=c)
    return tid.to_bytes(4, "little"), bytes(t)


def _finish(rows: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    inst = SimpleNamespace(obj=SimpleNamespace(maps={"cpu_hist": _Map([]), "task_lat": _Map(rows)},
                                               read_global=lambda name: 0),
                           attached_at=time.monotonic() - 5, values={})
    return runqlat.Collector().finish(inst)


def test_the_investigation_itself_is_never_the_culprit_of_a_wait() -> None:
    """Loading probes is verifier work in the investigator's own context; on a slow machine
    a task may wait behind it.  That wait is reported, but never blamed on the observer."""
    ev = _finish([_wait(4242, os.getpid(), os.getpid(), b"python")])
    (t,) = ev["tasks"]
    assert t["culprit"]["investigator"] and t["culprit"]["share"] == 0.0 and t["culprit"]["held_ms"] == 290.0
    assert ev["starved"]["culprit"]["tid"] == 0
    assert ev["by_cpu"][0]["culprit"]["share"] == 0.0
    # the same wait behind any other task is attributed to it
    ev = _finish([_wait(4242, 777, 777, b"hog")])
    assert ev["starved"]["culprit"]["tid"] == 777 and ev["starved"]["culprit"]["share"] == 0.967


def test_what_a_blocked_task_waits_for_is_read_from_its_stack() -> None:
    from investigator.probes.collectors.blocked import diagnosis
    gone = 2 ** 22 + 7                  # no such task: no system call file to add

    def says(*stack: str) -> str:
        return diagnosis({"tid": gone, "pid": gone, "stack": list(stack), "blocker": None})
    # the stat_refresh writer behind a starved per-CPU kworker (seen in the 6.1 guest)
    assert says("__flush_work+0x10a", "schedule_on_each_cpu+0xa0", "vmstat_refresh+0x2f").startswith(
        "waits for queued kernel work to run")
    assert says("__wait_rcu_gp+0x12b", "synchronize_rcu+0x71", "expand_files+0x76").startswith(
        "waits for an RCU grace period")
    assert says("percpu_rwsem_wait+0x1", "__percpu_down_read+0x1", "mnt_want_write+0x1").startswith(
        "waits for a frozen filesystem")
    assert says("some_wait+0x3", "other+0x1") == "sleeps in some_wait+0x3"


def test_the_terminal_report_shows_stuck_tasks_and_pools_without_progress() -> None:
    from investigator.report.text import render_evidence
    culprit = {"tid": 122, "pid": 122, "comm": "rt-hog"}
    runnable = {"probe": {"name": "sched.runnable"}, "waiting_count": 1, "stuck_count": 1,
                "tasks": [{"tid": 35, "pid": 35, "comm": "kworker/1:1", "policy": "SCHED_OTHER", "cpu": 1,
                           "waiting_ms": 17013.3, "stuck": True, "culprit": culprit}]}
    pools = {"probe": {"name": "workqueue.pools"}, "pools_count": 6, "stalled_count": 1,
             "stalled": [{"cpu": 1, "stalled_ms": 17112.0, "pending": 7,
                          "functions": [{"function": "refresh_vm_stats", "workqueue": "events"}],
                          "workers": [{"comm": "kworker/1:1", "state": "R", "queued": True}]}]}
    text = render_evidence({"cpu-starvation": {"runnable": runnable}, "workqueue-stall": {"wqpools": pools}})
    assert "1 through the whole window" in text and "kworker/1:1  SCHED_OTHER  1" in text and "rt-hog (122)" in text
    assert "1 of 6 took no item" in text and "refresh_vm_stats (events)" in text and "kworker/1:1 R queued" in text
