"""Evidence of ``lock.hold`` (probes/lockhold.bpf.c): kernel mutex hold times per mutex, the
longest hold's holder and its stack at acquisition, and the latest holds in order."""

from __future__ import annotations

import ctypes as C
from typing import Any

from ...finding import Finding, Lock, Task
from ._common import ProbeCollector, cstr, hist_quantile, kernel_frames, log2_hist, task_entity
from .lock import lock_name

SLOTS = 32
DEPTH = 24          # HOLD_STACK_DEPTH
TOP = 20
u32, u64 = C.c_uint32, C.c_uint64


class HoldStat(C.Structure):
    _fields_ = [("count", u64), ("total_ns", u64), ("max_ns", u64), ("worst_tid", u32), ("worst_tgid", u32),
                ("worst_frames", u32), ("pad", u32), ("worst_comm", C.c_char * 16), ("hist", u64 * SLOTS),
                ("worst_stack", u64 * DEPTH)]


class HoldEvent(C.Structure):
    _fields_ = [("lock", u64), ("acquired_ns", u64), ("released_ns", u64), ("tid", u32), ("tgid", u32),
                ("comm", C.c_char * 16)]


class HoldKey(C.Structure):
    _fields_ = [("lock", u64), ("tid", u32), ("pad", u32)]


class HoldStart(C.Structure):
    _fields_ = [("ts", u64), ("frames", u32), ("pad", u32), ("stack", u64 * DEPTH)]


LAYOUTS = {"hold_stat": HoldStat, "hold_event": HoldEvent, "hold_key": HoldKey, "hold_start": HoldStart}


def worst_finding(w: dict[str, Any] | None) -> Finding:
    """The mutex held longest as a finding: its holder, the mutex."""
    if w is None:
        return Finding.empty(addr="", name="", count=0, max_ms=0.0, total_ms=0.0, holder=task_entity(0, 0, ""))
    h = w["holder"]
    return Finding(tasks=[Task(h["tid"], h["pid"], h["comm"], "holder")],
                   locks=[Lock("mutex", w["addr"], w["name"], h["tid"])], stack=w["stack"],
                   details={k: v for k, v in w.items() if k != "stack"})


class Collector(ProbeCollector):

    def finish(self, inst: Any) -> dict[str, Any]:
        maps = inst.obj.maps
        now = inst.observed_until_ns()
        locks, merged = [], [0] * SLOTS
        for k, v in maps["by_lock"].lookup_batch(limit=4096):
            s = HoldStat.from_buffer_copy(v)
            addr = int.from_bytes(k, "little")
            for i in range(SLOTS):
                merged[i] += s.hist[i]
            locks.append({"addr": hex(addr), "name": lock_name(addr), "count": s.count,
                          "total_ms": round(s.total_ns / 1e6, 3), "avg_us": round(s.total_ns / max(1, s.count) / 1e3, 3),
                          "max_ms": round(s.max_ns / 1e6, 3), "p99_us": hist_quantile(list(s.hist), 0.99),
                          "holder": task_entity(s.worst_tid, s.worst_tgid, cstr(s.worst_comm)),
                          "_stack": list(s.worst_stack)[: s.worst_frames]})
        locks.sort(key=lambda lk: -lk["max_ms"])
        for lk in locks[:TOP]:
            lk["stack"] = kernel_frames(lk.pop("_stack"))
        for lk in locks[TOP:]:
            lk.pop("_stack")
        holding = []
        for k, v in maps["held"].lookup_batch(limit=8192):
            hk, hs = HoldKey.from_buffer_copy(k), HoldStart.from_buffer_copy(v)
            holding.append({"addr": hex(hk.lock), "name": lock_name(hk.lock), "tid": hk.tid,
                            "held_ms": round((now - hs.ts) / 1e6, 3)})
        holding.sort(key=lambda h: -h["held_ms"])
        recent = []
        for _, v in maps["recent"].items(limit=128):
            e = HoldEvent.from_buffer_copy(v)
            if e.acquired_ns:
                recent.append(e)
        recent.sort(key=lambda e: e.acquired_ns)
        t0 = recent[0].acquired_ns if recent else 0
        timeline = [{**task_entity(e.tid, e.tgid, cstr(e.comm)), "addr": hex(e.lock),
                     "acquired_ms": round((e.acquired_ns - t0) / 1e6, 3),
                     "released_ms": round((e.released_ns - t0) / 1e6, 3),
                     "held_ms": round((e.released_ns - e.acquired_ns) / 1e6, 3)} for e in recent]
        return {
            "mutexes": len(locks),
            "holds": sum(lk["count"] for lk in locks),
            "max_hold_ms": locks[0]["max_ms"] if locks else 0.0,
            "p99_hold_us": hist_quantile(merged, 0.99),
            "hist_us": log2_hist(merged),
            "locks": locks[:TOP],
            "worst": worst_finding(locks[0] if locks else None).to_dict(),
            "holding_count": len(holding),
            "holding": holding[:TOP],
            "timeline": timeline[-64:],
        }
