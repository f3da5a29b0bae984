"""cgroup.throttling: cgroups whose CPU quota (CFS bandwidth) ran out during the window,
with what their tasks did meanwhile (investigator/system/cgroups.py reads the files).

At the window's start every cgroup folder is read (bounded: ``max_cgroups`` folders and
``scan_time``), and those with a quota are kept with their threads' /proc/TID/schedstat:
the time each has run and the time it has waited on a run queue.  At the end the kept
ones are read again: a cgroup that ended periods throttled is reported with the share of
its periods that did, the time its run queues were throttled, and its threads' CPU time
(who used the quota up) and run-queue waits (who waited for it) over the window, beside
how idle the machine's CPUs were meanwhile (/proc/stat): a quota, not a busy machine, kept
them waiting when the CPUs were idle.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ...system import cgroups, procfs
from ._common import ProbeCollector, ms, task_entity

TOP = 20            # throttled cgroups reported
TOP_TASKS = 16      # tasks reported per cgroup
# the culprit or victim of a cgroup whose threads all left it before the window's end
NOBODY = {"tid": 0, "pid": 0, "comm": "", "cpu_ms": 0.0, "wait_ms": 0.0}


def _task(tid: int) -> dict[str, Any] | None:
    st = procfs.task_stat(tid)
    if st is None:
        return None
    try:
        tgid = int(procfs.status(tid).get("Tgid", "0"))
    except ValueError:
        tgid = 0
    return task_entity(tid, tgid, st["comm"], st["prio"], st["policy"])


class Collector(ProbeCollector):
    def start(self, inst: Any) -> None:
        self.roots = {True: cgroups.v2_roots(), False: cgroups.v1_roots("cpu")}
        if not self.roots[True] and not self.roots[False]:
            raise OSError("no cgroup v2 hierarchy and no cgroup v1 cpu controller is mounted")
        limit = int(inst.values.get("max_cgroups", 2000))
        self.seconds = min(2.0, inst.values.get("scan_time", 5 * 10**8) / 1e9)
        self.max_tasks = int(inst.values.get("max_tasks", 4096))
        self.t0 = time.monotonic()
        self.ticks0 = procfs.cpu_ticks()
        self.kept: dict[str, tuple[bool, cgroups.Bandwidth]] = {}
        self.stopped: list[str] = []
        self.sched0: dict[int, tuple[int, int]] = {}
        end = time.monotonic() + self.seconds
        for v2, roots in self.roots.items():
            walk = cgroups.Walk(roots, limit=limit, seconds=self.seconds)
            for d in walk.run():
                if time.monotonic() > end:
                    self.stopped.append(f"reading the cgroups took over {self.seconds:g} s")
                    break
                bw = cgroups.bandwidth(d, v2)
                if bw is not None:
                    self.kept[d] = (v2, bw)
            if walk.stopped:
                self.stopped.append(f"the cgroup walk stopped at {walk.stopped}")
        for d, (v2, _) in self.kept.items():
            for tid in cgroups.threads(d, v2, self.max_tasks - len(self.sched0)):
                s = procfs.schedstat(tid)
                if s is not None:
                    self.sched0[tid] = s
            if len(self.sched0) >= self.max_tasks:
                self.stopped.append(f"{self.max_tasks} tasks")
                break

    def finish(self, inst: Any) -> dict[str, Any]:
        seconds = max(1e-3, time.monotonic() - self.t0)
        ticks1 = procfs.cpu_ticks()
        idle_pct = 0.0
        if self.ticks0 and ticks1 and ticks1[1] > self.ticks0[1]:
            idle_pct = round(100.0 * (ticks1[0] - self.ticks0[0]) / (ticks1[1] - self.ticks0[1]), 1)
        out = []
        for d, (v2, b0) in self.kept.items():
            b1 = cgroups.bandwidth(d, v2)
            if b1 is None or b1.throttled <= b0.throttled:
                continue
            periods = max(1, b1.periods - b0.periods)
            tasks = []
            for tid in cgroups.threads(d, v2, self.max_tasks):
                s0, s1 = self.sched0.get(tid), procfs.schedstat(tid)
                if s1 is None:
                    continue
                run, wait = (s1[0] - s0[0], s1[1] - s0[1]) if s0 else (0, 0)
                if s0 is None or (run <= 0 and wait <= 0):
                    continue
                t = _task(tid)
                if t is not None:
                    tasks.append({**t, "cpu_ms": ms(run), "wait_ms": ms(wait)})
            path = cgroups.rel(d, self.roots[v2])
            for t in tasks:
                t["cgroup"] = path
            tasks.sort(key=lambda t: (-t["cpu_ms"], t["tid"]))
            culprit = tasks[0] if tasks else dict(NOBODY)
            # who waited for the quota: the tasks, other than the one that used the most of
            # it, by their run-queue wait (a cgroup of one task is its own quota's victim)
            waiting = sorted((t for t in tasks if t is not culprit), key=lambda t: (-t["wait_ms"], t["tid"])) \
                or ([culprit] if culprit else [])
            victim = waiting[0] if waiting else culprit
            roles = ([{**culprit, "role": "culprit"}] if tasks and culprit is not victim else []) + \
                [{**t, "role": "victim"} for t in waiting[:TOP_TASKS] if tasks and (t["wait_ms"] > 0 or t is victim)]
            out.append({
                "path": path, "cgroup_version": 2 if v2 else 1,
                "quota_ms": round(b1.quota_us / 1000, 3), "period_ms": round(b1.period_us / 1000, 3),
                "quota_cpus": round(b1.quota_us / b1.period_us, 3),
                "periods": b1.periods - b0.periods, "throttled_periods": b1.throttled - b0.throttled,
                "throttled_pct": round(100.0 * (b1.throttled - b0.throttled) / periods, 1),
                "throttled_ms": round((b1.throttled_us - b0.throttled_us) / 1000, 3),
                "used_ms": round(sum(t["cpu_ms"] for t in tasks), 3),
                "culprit": culprit, "victim": victim,
                "tasks": roles, "cgroups": [path],
            })
        out.sort(key=lambda c: (-c["throttled_pct"], -c["throttled_ms"], c["path"]))
        none = {"path": "", "cgroup_version": 0, "quota_ms": 0.0, "period_ms": 0.0, "quota_cpus": 0.0,
                "periods": 0, "throttled_periods": 0, "throttled_pct": 0.0, "throttled_ms": 0.0,
                "used_ms": 0.0, "culprit": dict(NOBODY), "victim": dict(NOBODY),
                "tasks": [], "cgroups": []}
        return {
            "throttled": out[:TOP],
            "throttled_count": len(out),
            "worst": out[0] if out else none,
            "cgroups_count": len(self.kept),
            "idle_pct": idle_pct,
            "partial": bool(self.stopped),
            "partial_reason": "; ".join(self.stopped),
            "observed_s": round(seconds, 3),
            "cpus": os.cpu_count() or 1,
        }
