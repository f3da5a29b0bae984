"""Evidence of ``sched.oncpu`` (probes/oncpu.bpf.c): sampled time per (CPU, task), per CPU
and per task, for rules that compare where work ran with where it should run."""

from __future__ import annotations

import ctypes as C
import os
from typing import Any

from ._common import ProbeCollector, cstr, kernel_stack, ms, policy_name, task_entity
from .offcpu import UserMaps

u32, s32, u64 = C.c_uint32, C.c_int32, C.c_uint64
PF_KTHREAD = 0x00200000
TOP_PLACEMENTS = 200
TOP_TASKS = 50
TOP_PER_CPU = 10


class OncpuKey(C.Structure):
    _fields_ = [("cpu", u32), ("tid", u32)]


class OncpuVal(C.Structure):
    _fields_ = [("ns", u64), ("samples", u64), ("tgid", u32), ("flags", u32), ("prio", s32), ("policy", u32),
                ("comm", C.c_char * 16), ("pcomm", C.c_char * 16)]


class OncpuHotKey(C.Structure):
    _fields_ = [("tid", u32), ("kstack", s32), ("ustack", s32), ("pad", u32)]


class OncpuCpu(C.Structure):
    _fields_ = [("ns", u64), ("samples", u64), ("idle_ns", u64)]


LAYOUTS = {"oncpu_key": OncpuKey, "oncpu_val": OncpuVal, "oncpu_cpu": OncpuCpu, "oncpu_hot_key": OncpuHotKey}
TOP_HOT = 10
NO_HOT = {"tid": 0, "samples": 0, "share": 0.0, "kernel_stack": [], "user_stack": []}


def hot_stacks(maps: Any, tasks: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """The focused tasks' samples by where they ran: (task, kernel stack, user stack) with
    its samples and its share of that task's samples, the most sampled first.  A sample in
    user mode has no kernel stack; user frames are file+offset."""
    rows = [(OncpuHotKey.from_buffer_copy(k), int.from_bytes(v[:8], "little"))
            for k, v in maps["hot"].lookup_batch(limit=4096)]
    per_task: dict[int, int] = {}
    for k, n in rows:
        per_task[k.tid] = per_task.get(k.tid, 0) + n
    rows.sort(key=lambda r: -r[1])
    um = UserMaps()
    out = []
    for k, n in rows[:TOP_HOT]:
        pid = tasks.get(k.tid, {}).get("pid", k.tid)
        out.append({"tid": k.tid, "comm": tasks.get(k.tid, {}).get("comm", ""), "samples": n,
                    "share": round(n / max(1, per_task[k.tid]), 3),
                    "kernel_stack": kernel_stack(maps["stacks"], k.kstack),
                    "user_stack": [um.name(pid, a) for a in maps["stacks"].stack(k.ustack, depth=32) if a]
                    if k.ustack >= 0 else []})
    return out



class Collector(ProbeCollector):

    def finish(self, inst: Any) -> dict[str, Any]:
        maps = inst.obj.maps
        window_s = inst.observed_s()
        per_cpu = {cpu: OncpuCpu.from_buffer_copy(raw) for cpu, raw in enumerate(maps["cpu_total"].lookup(0) or [])}
        # Shares are of the window, not of the samples: a CPU in a deep idle state may not
        # be sampled at all while idle (seen here: an idle CPU gave 41 samples in 2 s).
        window_ns = max(1, int(window_s * 1e9))
        placements = []
        busy: dict[int, int] = {}
        me = os.getpid()
        for k, v in maps["oncpu"].lookup_batch(limit=16384):
            key, val = OncpuKey.from_buffer_copy(k), OncpuVal.from_buffer_copy(v)
            if val.tgid == me:          # the investigation itself is never the finding
                continue
            busy[key.cpu] = busy.get(key.cpu, 0) + val.ns
            placements.append({"cpu": key.cpu, **task_entity(key.tid, val.tgid, cstr(val.comm), val.prio),
                               "pcomm": cstr(val.pcomm), "kthread": bool(val.flags & PF_KTHREAD),
                               "policy": policy_name(val.policy), "ms": ms(val.ns),
                               "share": round(min(1.0, val.ns / window_ns), 4)})
        placements.sort(key=lambda p: (-p["ms"], p["cpu"], p["tid"]))
        by_cpu = []
        for cpu in sorted(c for c, t in per_cpu.items() if t.samples):
            c = per_cpu[cpu]
            mine = [p for p in placements if p["cpu"] == cpu][:TOP_PER_CPU]
            b = round(min(1.0, busy.get(cpu, 0) / window_ns), 4)
            by_cpu.append({"cpu": cpu, "sampled_ms": ms(c.ns), "busy_share": b, "idle_share": round(1 - b, 4),
                           "tasks": [{k: p[k] for k in ("tid", "pid", "comm", "pcomm", "ms", "share")} for p in mine]})
        tasks: dict[int, dict[str, Any]] = {}
        for p in placements:
            t = tasks.setdefault(p["tid"], {**{k: p[k] for k in ("tid", "pid", "comm", "pcomm", "kthread")},
                                            "ms": 0.0, "cpus": []})
            t["ms"] = round(t["ms"] + p["ms"], 3)
            t["cpus"].append(p["cpu"])
        hot = hot_stacks(maps, tasks) if inst.targets.tids else []
        return {"window_s": round(window_s, 3), "samples": sum(c.samples for c in per_cpu.values()),
                "by_cpu": by_cpu, "placements": placements[:TOP_PLACEMENTS],
                "tasks": sorted(tasks.values(), key=lambda t: -t["ms"])[:TOP_TASKS],
                "hot": hot, "hottest": hot[0] if hot else dict(NO_HOT)}
