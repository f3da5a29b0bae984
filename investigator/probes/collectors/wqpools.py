"""Evidence of ``workqueue.pools`` (probes/wqpools.bpf.c): every workqueue worker pool,
reached through its kworkers, snapshotted when the window opens and when it closes.

A pool is *stalled* when items wait on its worklist at both snapshots and no worker took
one in between (its ``watchdog_ts`` did not move).  How long it has made no progress is
``jiffies - watchdog_ts`` -- what the kernel's workqueue watchdog measures to report a
lockup (after 30 s by default) -- so a stall that began long before the investigation is
measured from its start.  Jiffies are converted with the kernel's HZ, measured between the
two snapshots (jiffies against the monotonic clock).

Why it makes no progress is told by its workers: one that is runnable but not on a CPU
waits for the CPU (starvation: the culprit is whoever holds that CPU, see sched.runnable);
workers all blocked (D) wait for something else."""

from __future__ import annotations

import ctypes as C
from typing import Any

from ...system.kallsyms import kallsyms
from ...finding import Finding, Task
from ._common import ProbeCollector, cstr, iter_records, snapshot_bounds, task_entity
from .blocked import state_letter

TOP = 20
WORKS, NAME = 8, 32
HZ_CHOICES = (100, 250, 300, 1000)
u32, s32, u64 = C.c_uint32, C.c_int32, C.c_uint64


class WqPoolRec(C.Structure):
    _fields_ = [("pool", u64), ("now_ns", u64), ("jiffies", u64), ("watchdog_ts", u64), ("current_func", u64),
                ("switches", u64), ("funcs", u64 * WORKS), ("tid", u32), ("state", u32), ("on_cpu", u32),
                ("on_rq", u32), ("cpu", s32), ("pending", u32), ("nr_workers", s32), ("nr_idle", s32),
                ("pool_flags", u32), ("worker_flags", u32), ("comm", C.c_char * 16),
                ("wq", (C.c_char * NAME) * WORKS)]


LAYOUTS = {"wqpool_rec": WqPoolRec}
CONSTANTS = {"WQP_WORKS": WORKS, "WQP_NAME_LEN": NAME}


def measured_hz(first: list[Any], last: list[Any]) -> int:
    """The kernel's HZ: jiffies against nanoseconds between the two snapshots (one worker
    seen in both), rounded to the nearest HZ a kernel can be built with; 250 (the most
    common: Debian's) when the window is too short to tell."""
    before = {r.tid: r for r in first}
    for r in last:
        b = before.get(r.tid)
        if b is not None and r.now_ns - b.now_ns >= 500_000_000:
            hz = (r.jiffies - b.jiffies) * 1e9 / (r.now_ns - b.now_ns)
            return min(HZ_CHOICES, key=lambda h: abs(h - hz))
    return 250


def _worker(r: Any, before: Any, ks: Any) -> dict[str, Any]:
    queued = r.state == 0 and bool(r.on_rq) and not r.on_cpu
    return {**task_entity(r.tid, r.tid, cstr(r.comm)), "state": state_letter(r.state),
            "on_cpu": bool(r.on_cpu), "queued": queued,
            "ran": before is None or before.switches != r.switches,
            "running": ks.function(r.current_func) if r.current_func else ""}


NO_WORKER = {**task_entity(0, 0, ""), "state": "", "queued": False}


class Collector(ProbeCollector):
    def start(self, inst: Any) -> None:
        self.start_snap = iter_records(inst, WqPoolRec)
        self.first = self.start_snap.records

    def finish(self, inst: Any) -> dict[str, Any]:
        end_snap = iter_records(inst, WqPoolRec)
        last = end_snap.records
        hz = measured_hz(self.first, last)
        ks = kallsyms()
        first_ts = {r.pool: r.watchdog_ts for r in self.first}
        pending_before = {r.pool for r in self.first if r.pending}
        before = {r.tid: r for r in self.first}
        pools: dict[int, dict[str, Any]] = {}
        for r in last:
            p = pools.get(r.pool)
            if p is None:
                idle = r.pending == 0
                stalled = not idle and r.pool in pending_before and first_ts.get(r.pool) == r.watchdog_ts
                p = pools[r.pool] = {
                    "cpu": r.cpu, "pending": r.pending,
                    "stalled": stalled,
                    # no worker took an item for this long (0 while its worklist is empty)
                    "stalled_ms": 0.0 if idle else round(max(0, r.jiffies - r.watchdog_ts) * 1000 / hz, 1),
                    "functions": [{"function": ks.function(f), "workqueue": cstr(r.wq[i])}
                                  for i, f in enumerate(r.funcs) if f][:WORKS],
                    "nr_workers": r.nr_workers, "nr_idle": r.nr_idle, "workers": []}
            p["workers"].append(_worker(r, before.get(r.tid), ks))
        stalled = sorted((p for p in pools.values() if p["stalled"]), key=lambda p: -p["stalled_ms"])
        worst = Finding.empty(cpu=-1, stalled_ms=0.0, pending=0, function="", workqueue="", why="",
                              worker=NO_WORKER)
        if stalled:
            p = stalled[0]
            ws = p["workers"]
            # the worker that stands for the pool: one waiting for the CPU, else a blocked one
            w = next((w for w in ws if w["queued"]), None) or next((w for w in ws if w["state"] == "D"), None) \
                or next((w for w in ws if w["on_cpu"] and w["running"]), None) or (ws[0] if ws else None)
            if w is None:
                why = "it has no worker"
            elif w["queued"]:
                why = f"its worker {w['comm']} (tid {w['tid']}) is runnable but gets no CPU"
            elif w["on_cpu"] and w["running"] and w["state"] != "D":
                why = f"its worker {w['comm']} (tid {w['tid']}) has been running {w['running']} without letting go"
            elif w["state"] == "D":
                why = f"its worker {w['comm']} (tid {w['tid']}) is blocked in D state, running {w['running'] or '?'}"
            else:
                why = "no worker takes its items (" + ", ".join(f"{x['comm']} {x['state']}" for x in ws[:4]) + ")"
            first = p["functions"][0] if p["functions"] else {"function": "", "workqueue": ""}
            worst = Finding(tasks=[Task.of(w, "victim")] if w else [], cpus=[p["cpu"]] if p["cpu"] >= 0 else [],
                            details={"cpu": p["cpu"], "stalled_ms": p["stalled_ms"], "pending": p["pending"],
                                     "function": first["function"], "workqueue": first["workqueue"], "why": why,
                                     "worker": {k: w[k] for k in ("tid", "pid", "comm", "state", "queued")} if w
                                     else NO_WORKER})
        return {
            "hz": hz,
            "pools_count": len(pools),
            "pending_count": sum(p["pending"] for p in pools.values()),
            "stalled_count": len(stalled),
            "stalled": [{**p, "workers": p["workers"][:8]} for p in stalled[:TOP]],
            "worst": worst.to_dict(),
            **snapshot_bounds(self.start_snap, end_snap),
        }
