"""Evidence of ``workqueue.latency`` (probes/workqueue.bpf.c): queue -> start delays and
execution times per work function and pool CPU; items still queued (pending) and still
executing (running) when the window closes, with their age."""

from __future__ import annotations

import ctypes as C
from typing import Any

from ...system.kallsyms import kallsyms
from ...finding import Finding, Task
from ._common import ProbeCollector, cstr, hist_quantile, log2_hist, ms, task_entity

SLOTS = 32
TOP = 20
u32, s32, u64 = C.c_uint32, C.c_int32, C.c_uint64


class WqQueued(C.Structure):
    _fields_ = [("ts", u64), ("func", u64), ("queuer_tid", u32), ("queuer_tgid", u32),
                ("pool_cpu", s32), ("req_cpu", u32), ("queuer_comm", C.c_char * 16), ("wq", C.c_char * 32)]


class WqRunning(C.Structure):
    _fields_ = [("ts", u64), ("func", u64), ("worker_tid", u32), ("cpu", s32), ("pool_cpu", s32), ("keyed", u32),
                ("worker_comm", C.c_char * 16)]


class WqKey(C.Structure):
    _fields_ = [("func", u64), ("cpu", s32), ("pad", u32)]


class WqStats(C.Structure):
    _fields_ = [("delay_slots", u64 * SLOTS), ("count", u64), ("delay_sum_ns", u64), ("delay_max_ns", u64),
                ("exec_count", u64), ("exec_sum_ns", u64), ("exec_max_ns", u64), ("worst_queuer_tid", u32),
                ("worst_queuer_tgid", u32), ("worst_at_ns", u64), ("worst_worker_tid", u32), ("pad2", u32),
                ("worst_queuer_comm", C.c_char * 16), ("worst_worker_comm", C.c_char * 16),
                ("wq", C.c_char * 32)]


LAYOUTS = {"wq_queued": WqQueued, "wq_running": WqRunning, "wq_key": WqKey, "wq_stats": WqStats}
CONSTANTS = {"WQ_HIST_SLOTS": SLOTS}


class Collector(ProbeCollector):

    def finish(self, inst: Any) -> dict[str, Any]:
        maps = inst.obj.maps
        ks = kallsyms()
        now = inst.observed_until_ns()
        funcs, merged = [], [0] * SLOTS
        total = 0
        for k, v in maps["stats_by_func"].items():
            key, s = WqKey.from_buffer_copy(k), WqStats.from_buffer_copy(v)
            slots = list(s.delay_slots)
            merged = [a + b for a, b in zip(merged, slots)]
            total += s.count
            funcs.append({"function": ks.function(key.func), "workqueue": cstr(s.wq), "cpu": key.cpu,
                          "count": s.count, "avg_delay_ms": ms(s.delay_sum_ns // s.count) if s.count else 0.0,
                          "max_delay_ms": ms(s.delay_max_ns), "exec_count": s.exec_count,
                          "avg_exec_ms": ms(s.exec_sum_ns // s.exec_count) if s.exec_count else 0.0,
                          "max_exec_ms": ms(s.exec_max_ns),
                          "worst_queued_by": task_entity(s.worst_queuer_tid, s.worst_queuer_tgid,
                                                         cstr(s.worst_queuer_comm)),
                          "worst_worker": task_entity(s.worst_worker_tid, s.worst_worker_tid,
                                                      cstr(s.worst_worker_comm))})
        funcs.sort(key=lambda f: f["max_delay_ms"], reverse=True)
        pending = []
        for _, v in maps["queued"].items(limit=65536):
            q = WqQueued.from_buffer_copy(v)
            pending.append({"function": ks.function(q.func), "workqueue": cstr(q.wq), "cpu": q.pool_cpu,
                            "age_ms": ms(max(0, now - q.ts)),
                            "queued_by": task_entity(q.queuer_tid, q.queuer_tgid, cstr(q.queuer_comm))})
        pending.sort(key=lambda p: p["age_ms"], reverse=True)
        running = []
        for _, v in maps["running"].items(limit=65536):
            r = WqRunning.from_buffer_copy(v)
            running.append({"function": ks.function(r.func), "cpu": r.cpu, "running_ms": ms(max(0, now - r.ts)),
                            "worker": task_entity(r.worker_tid, r.worker_tid, cstr(r.worker_comm))})
        running.sort(key=lambda r: r["running_ms"], reverse=True)

        worst = Finding.empty(function="", workqueue="", cpu=-1, delay_ms=0.0, state="",
                              queued_by=task_entity(0, 0, ""), worker=task_entity(0, 0, ""))
        cands = []
        if funcs:
            f = funcs[0]
            cands.append((f["max_delay_ms"], {"function": f["function"], "workqueue": f["workqueue"],
                                               "cpu": f["cpu"], "delay_ms": f["max_delay_ms"],
                                               "state": "started", "queued_by": f["worst_queued_by"],
                                               "worker": f["worst_worker"]}))
        if pending:
            p = pending[0]
            cands.append((p["age_ms"], {"function": p["function"], "workqueue": p["workqueue"], "cpu": p["cpu"],
                                         "delay_ms": p["age_ms"], "state": "pending", "queued_by": p["queued_by"],
                                         "worker": task_entity(0, 0, "")}))
        if cands:
            w = max(cands, key=lambda c: c[0])[1]
            worst = Finding(tasks=([Task.of(w["worker"], "victim")] if w["worker"]["tid"] else [])
                            + ([Task.of(w["queued_by"], "bystander")] if w["queued_by"]["tid"] else []),
                            cpus=[w["cpu"]] if w["cpu"] >= 0 else [], details=w)
        return {
            "count": total,
            "max_delay_ms": max((f["max_delay_ms"] for f in funcs), default=0.0),
            "p99_delay_ms": hist_quantile(merged, 0.99) / 1000,
            "hist_us": log2_hist(merged),
            "functions": funcs[:TOP],
            "pending_count": len(pending),
            "pending_max_ms": pending[0]["age_ms"] if pending else 0.0,
            "pending": pending[:TOP],
            "running_count": len(running),
            "running_max_ms": running[0]["running_ms"] if running else 0.0,
            "running": running[:TOP],
            "worst": worst.to_dict(),
            **{f"{m}_dropped": inst.obj.read_global(f"{m}_dropped") for m in ("queued", "stats", "exec")},
        }
