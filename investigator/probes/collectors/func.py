"""Evidence of ``kernel.func`` (probes/func.bpf.c): calls of one kernel function -- count and
rate, callers (process, CPU, kernel stack), latency histogram, return values, latest calls."""

from __future__ import annotations

import ctypes as C
import errno
import time
from typing import Any

from ._common import ProbeCollector, cstr, hist_quantile, kernel_stack, log2_hist, ms, task_entity

SLOTS = 32
RECENT = 64        # FUNC_RECENT: the latest calls each CPU keeps
RET_OTHER = 0x7FFFFFFFFFFFFFFF
TOP = 20
u32, s32, u64, s64 = C.c_uint32, C.c_int32, C.c_uint64, C.c_int64


class FuncProc(C.Structure):
    _fields_ = [("calls", u64), ("total_ns", u64), ("max_ns", u64), ("errors", u64), ("zeros", u64),
                ("comm", C.c_char * 16)]


class FuncCpu(C.Structure):
    _fields_ = [("calls", u64), ("total_ns", u64), ("max_ns", u64), ("hist", u64 * SLOTS)]


class FuncEvent(C.Structure):
    _fields_ = [("seq", u64), ("end_ns", u64), ("latency_ns", u64), ("ret", s64), ("tid", u32),
                ("tgid", u32), ("cpu", u32), ("stack_id", s32), ("comm", C.c_char * 16)]


LAYOUTS = {"func_proc": FuncProc, "func_cpu": FuncCpu, "func_event": FuncEvent}


def ret_name(v: int) -> str:
    """How a return value class reads: -ENOMEM, 0, 3, or 'pointer/large'."""
    if v == RET_OTHER:
        return "pointer/large"
    if -4095 <= v < 0:
        name = errno.errorcode.get(-v)
        return f"-{name}" if name else str(v)
    return str(v)


class Collector(ProbeCollector):

    def finish(self, inst: Any) -> dict[str, Any]:
        maps = inst.obj.maps
        observed = max(1e-3, inst.observed_s())
        procs = []
        for k, v in maps["by_proc"].lookup_batch(limit=1024):
            p = FuncProc.from_buffer_copy(v)
            procs.append({"pid": int.from_bytes(k, "little"), "comm": cstr(p.comm), "calls": p.calls,
                          "errors": p.errors, "zeros": p.zeros, "avg_us": round(p.total_ns / max(1, p.calls) / 1e3, 3),
                          "max_us": round(p.max_ns / 1e3, 3)})
        procs.sort(key=lambda p: -p["calls"])
        cpus, slots = [], [0] * SLOTS
        raw = maps["by_cpu"].lookup(0) or []
        for cpu, v in enumerate(raw if isinstance(raw, list) else [raw]):
            c = FuncCpu.from_buffer_copy(v)
            for i in range(SLOTS):
                slots[i] += c.hist[i]
            if c.calls:
                cpus.append({"cpu": cpu, "calls": c.calls, "max_us": round(c.max_ns / 1e3, 3)})
        calls = sum(c["calls"] for c in cpus)
        returns = []
        for k, v in maps["returns"].items(limit=256):
            val = int.from_bytes(k, "little", signed=True)
            returns.append({"value": ret_name(val), "raw": val if val != RET_OTHER else None,
                            "count": int.from_bytes(v, "little")})
        returns.sort(key=lambda r: -r["count"])
        stacks = []
        for k, v in maps["by_stack"].items(limit=1024):
            sid = int.from_bytes(k, "little", signed=True)
            stacks.append((int.from_bytes(v, "little"), sid))
        stacks.sort(reverse=True)
        # a negative id: no kernel stack (a user function), or one the stack map refused
        # because another stack held its hash bucket -- counted, never shown as a caller
        callers = [{"count": n, "stack": kernel_stack(maps["stacks"], sid)} for n, sid in stacks if sid >= 0][:10]
        callers_unknown = sum(n for n, sid in stacks if sid < 0)
        # each CPU's ring of its latest calls: the latest calls of all are among them
        events = []
        for _, per_cpu in maps["recent"].items(limit=RECENT):
            for v in per_cpu if isinstance(per_cpu, list) else [per_cpu]:
                e = FuncEvent.from_buffer_copy(v)
                if e.end_ns:
                    events.append(e)
        events.sort(key=lambda e: e.end_ns)
        # the first call since attach is the earliest of the CPUs' first calls, known while
        # every CPU's ring still holds its own
        firsts = [e for e in events if e.seq == 0] if all(c["calls"] <= RECENT for c in cpus) else []
        first = min(firsts, key=lambda e: e.end_ns, default=None)
        now_ns = time.monotonic_ns()
        def call(e: FuncEvent) -> dict[str, Any]:
            return {**task_entity(e.tid, e.tgid, cstr(e.comm)), "cpu": e.cpu, "ret": ret_name(e.ret),
                    "latency_us": round(e.latency_ns / 1e3, 3), "ago_s": round((now_ns - e.end_ns) / 1e9, 3),
                    "stack": kernel_stack(maps["stacks"], e.stack_id)}
        recent = [call(e) for e in events[-20:]]
        errors = sum(r["count"] for r in returns if r["raw"] is not None and r["raw"] < 0)
        nulls = sum(r["count"] for r in returns if r["raw"] == 0)
        return {
            "function": inst.symbols.get("function", ""),
            "calls": calls,
            "rate_per_s": round(calls / observed, 3),
            "errors": errors,
            "zero_returns": nulls,
            "max_us": max((c["max_us"] for c in cpus), default=0.0),
            "p99_us": round(hist_quantile(slots, 0.99) / 1e3, 3),
            "hist_ns": log2_hist(slots, unit="ns"),
            "returns": returns[:TOP],
            "processes": procs[:TOP],
            "callers_unknown": callers_unknown,
            "cpus": cpus,
            "callers": callers,
            "recent": recent,
            "first": call(first) if first is not None else None,
            "last": recent[-1] if recent else None,
        }
