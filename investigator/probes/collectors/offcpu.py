"""Evidence of ``sched.offcpu`` (probes/offcpu.bpf.c): time off the CPU per task and blocking
path (kernel and user stack), including tasks still away when the window closes."""

from __future__ import annotations

import bisect
import ctypes as C
from typing import Any

from ...system.procfs import read_mm_file
from ._common import ProbeCollector, cstr, kernel_stack, task_entity
from .blocked import state_letter

TOP = 20
u32, s32, u64 = C.c_uint32, C.c_int32, C.c_uint64


class OffcpuStart(C.Structure):
    _fields_ = [("ts", u64), ("kstack", s32), ("ustack", s32), ("state", u32), ("pad", u32)]


class OffcpuKey(C.Structure):
    _fields_ = [("tid", u32), ("tgid", u32), ("kstack", s32), ("ustack", s32), ("comm", C.c_char * 16)]


class OffcpuVal(C.Structure):
    _fields_ = [("total_ns", u64), ("count", u64), ("max_ns", u64)]


LAYOUTS = {"offcpu_start": OffcpuStart, "offcpu_key": OffcpuKey, "offcpu_val": OffcpuVal}


class UserMaps:
    """User addresses as ``file+0xoffset`` (what addr2line takes), from /proc/PID/maps (read
    without waiting on a busy mmap_lock: a process whose maps cannot be read at once keeps
    its raw addresses)."""

    def __init__(self) -> None:
        self._maps: dict[int, tuple[list[int], list[tuple[int, int, str]]]] = {}

    def _load(self, pid: int) -> tuple[list[int], list[tuple[int, int, str]]]:
        if pid not in self._maps:
            rows = []
            for line in (read_mm_file(f"/proc/{pid}/maps") or "").splitlines():
                parts = line.split(None, 5)
                if len(parts) < 6 or not parts[5].strip():
                    continue
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                rows.append((lo, hi, int(parts[2], 16), parts[5].strip()))
            rows.sort()
            self._maps[pid] = ([r[0] for r in rows], [(r[0], r[1], r[2], r[3]) for r in rows])  # type: ignore[misc]
        return self._maps[pid]

    def name(self, pid: int, addr: int) -> str:
        starts, rows = self._load(pid)
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0:
            lo, hi, off, path = rows[i]  # type: ignore[misc]
            if addr < hi:
                return f"{path.rsplit('/', 1)[-1]}+{addr - lo + off:#x}"
        return hex(addr)


class Collector(ProbeCollector):

    def finish(self, inst: Any) -> dict[str, Any]:
        maps = inst.obj.maps
        now = inst.observed_until_ns()
        um = UserMaps()
        kcache: dict[int, list[str]] = {}

        def kstack(sid: int) -> list[str]:
            if sid not in kcache:
                kcache[sid] = kernel_stack(maps["stacks"], sid)
            return kcache[sid]

        def ustack(pid: int, sid: int) -> list[str]:
            if sid < 0:
                return []
            return [um.name(pid, a) for a in maps["stacks"].stack(sid, depth=32) if a]

        rows = []
        for k, v in maps["offcpu"].lookup_batch(limit=8192):
            key, val = OffcpuKey.from_buffer_copy(k), OffcpuVal.from_buffer_copy(v)
            rows.append({"tid": key.tid, "pid": key.tgid, "comm": cstr(key.comm), "kstack": key.kstack,
                         "ustack": key.ustack, "total_ns": val.total_ns, "count": val.count, "max_ns": val.max_ns,
                         "ongoing_ns": 0, "state": ""})
        # still off the CPU when the window closed: often the most interesting.  Who they
        # are is known from their ended waits, else read from /proc -- only for the tasks
        # the evidence names (there can be thousands of sleepers)
        known = {r["tid"]: (r["pid"], r["comm"]) for r in rows}

        def ident(tid: int) -> tuple[int, str]:
            if tid not in known:
                try:
                    with open(f"/proc/{tid}/status") as f:
                        st = dict(line.split(":", 1) for line in f if ":" in line)
                    known[tid] = (int(st["Tgid"]), st["Name"].strip())
                except (OSError, KeyError, ValueError):
                    known[tid] = (tid, "")
            return known[tid]

        for k, v in maps["start"].lookup_batch(limit=10240):
            s = OffcpuStart.from_buffer_copy(v)
            rows.append({"tid": int.from_bytes(k, "little"), "kstack": s.kstack, "ustack": s.ustack,
                         "total_ns": max(0, now - s.ts), "count": 0, "max_ns": max(0, now - s.ts),
                         "ongoing_ns": max(0, now - s.ts), "state": state_letter(s.state)})
        rows.sort(key=lambda r: -r["total_ns"])
        per_task: dict[int, dict[str, Any]] = {}
        for r in rows:
            t = per_task.setdefault(r["tid"], {"offcpu_ms": 0.0, "blocks": 0, "ongoing_ms": 0.0})
            t["offcpu_ms"] = round(t["offcpu_ms"] + r["total_ns"] / 1e6, 3)
            t["blocks"] += r["count"]
            t["ongoing_ms"] = round(t["ongoing_ms"] + r["ongoing_ns"] / 1e6, 3)
        top = sorted(per_task.items(), key=lambda kv: -kv[1]["offcpu_ms"])[:TOP]
        tasks = [{**task_entity(tid, *ident(tid)), **t} for tid, t in top]
        stacks = []
        for r in rows[:TOP]:
            pid, comm = ident(r["tid"])
            stacks.append({**task_entity(r["tid"], pid, comm), "total_ms": round(r["total_ns"] / 1e6, 3),
                           "count": r["count"], "max_ms": round(r["max_ns"] / 1e6, 3),
                           "ongoing_ms": round(r["ongoing_ns"] / 1e6, 3), "state": r["state"],
                           "kernel_stack": kstack(r["kstack"]), "user_stack": ustack(pid, r["ustack"])})
        return {
            "tasks_count": len(per_task),
            "total_ms": round(sum(r["total_ns"] for r in rows) / 1e6, 3),
            "tasks": tasks,
            "stacks": stacks,
            "worst": stacks[0] if stacks else {**task_entity(0, 0, ""), "total_ms": 0.0, "count": 0, "max_ms": 0.0,
                                               "ongoing_ms": 0.0, "state": "", "kernel_stack": [], "user_stack": []},
        }
