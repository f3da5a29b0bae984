"""Evidence of ``sched.runnable`` (probes/runnable.bpf.c): tasks queued on a run queue but
not running, and the tasks running on each CPU, snapshotted when the window opens and
when it closes.

A task is *starved through the window* when it is queued at both snapshots and did not run
in between (its nvcsw + nivcsw did not move): no wait of it ended, so sched.runqlat, which
measures waits when they end, never saw it.  Its wait so far is the scheduler's: its run
queue's clock less sched_info.last_queued, computed in the kernel (at least the time between
the two snapshots, by bpf_ktime_get_ns(), when that is not kept).  The culprit is the
task running on its CPU at the window's end, said to hold the CPU throughout when it also
did at the start."""

from __future__ import annotations

import ctypes as C
import os
from typing import Any

from ...finding import Finding, Task
from ._common import ProbeCollector, cstr, iter_records, snapshot_bounds, task_entity

TOP = 20
u32, s32, u64 = C.c_uint32, C.c_int32, C.c_uint64


class RunnableRec(C.Structure):
    _fields_ = [("now_ns", u64), ("waited_ns", u64), ("switches", u64), ("tid", u32), ("tgid", u32),
                ("prio", s32), ("policy", u32), ("cpu", u32), ("running", u32), ("comm", C.c_char * 16)]


LAYOUTS = {"runnable_rec": RunnableRec}


class Collector(ProbeCollector):
    def start(self, inst: Any) -> None:
        self.start_snap = iter_records(inst, RunnableRec)
        self.first = self.start_snap.by_tid()

    def finish(self, inst: Any) -> dict[str, Any]:
        end_snap = iter_records(inst, RunnableRec)
        last = end_snap.by_tid()
        me = os.getpid()
        on_cpu = {r.cpu: r for r in last.values() if r.running}
        first_on_cpu = {r.cpu: r for r in self.first.values() if r.running and r.tgid != me}
        was_on_cpu = {cpu: r.tid for cpu, r in first_on_cpu.items()}
        queued = [r for r in last.values() if not r.running and r.tgid != me]  # we wait too on a busy CPU
        per_cpu: dict[int, int] = {}
        for r in queued:
            per_cpu[r.cpu] = per_cpu.get(r.cpu, 0) + 1
        tasks = []
        for r in queued:
            before = self.first.get(r.tid)
            stuck = before is not None and not before.running and before.switches == r.switches
            waited_ms = r.waited_ns / 1e6
            if stuck:                       # queued at least from one snapshot to the other (one clock)
                waited_ms = max(waited_ms, (r.now_ns - before.now_ns) / 1e6)
            # the CPU idle at the end while a task stayed queued: its class was throttled at
            # that instant (RT throttling idles a CPU for 50 ms a second): the task that ran
            # there at the start is the one it waited behind
            c = on_cpu.get(r.cpu) or (first_on_cpu.get(r.cpu) if stuck else None)
            culprit = task_entity(c.tid, c.tgid, cstr(c.comm), c.prio, c.policy) if c else \
                task_entity(0, 0, "swapper (idle)", 0, 0)
            tasks.append({**task_entity(r.tid, r.tgid, cstr(r.comm), r.prio, r.policy), "cpu": r.cpu,
                          "waiting_ms": round(waited_ms, 3), "stuck": stuck, "queued": per_cpu[r.cpu],
                          "culprit": culprit,
                          "held_throughout": bool(stuck and c and was_on_cpu.get(r.cpu) == c.tid)})
        tasks.sort(key=lambda t: (not t["stuck"], -t["waiting_ms"]))
        worst = Finding.empty(waiting_ms=0.0, cpu=-1, stuck=False, held_throughout=False, queued=0,
                              victim=task_entity(0, 0, "", 0, 0), culprit=task_entity(0, 0, "", 0, 0))
        blamable = [t for t in tasks if t["culprit"]["tid"] and not t["culprit"].get("investigator")]
        if blamable:
            w = blamable[0]
            victim = {k: w[k] for k in ("tid", "pid", "comm", "prio", "rt_priority", "policy")}
            worst = Finding(tasks=[Task.of(victim, "victim"), Task.of(w["culprit"], "culprit")], cpus=[w["cpu"]],
                            details={"waiting_ms": w["waiting_ms"], "cpu": w["cpu"], "stuck": w["stuck"],
                                     "held_throughout": w["held_throughout"], "queued": w["queued"],
                                     "victim": victim, "culprit": w["culprit"]})
        return {
            "waiting_count": len(tasks),
            "stuck_count": sum(1 for t in tasks if t["stuck"]),
            "tasks": tasks[:TOP],
            "worst": worst.to_dict(),
            **snapshot_bounds(self.start_snap, end_snap),
        }
