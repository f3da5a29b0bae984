"""Evidence of ``lock.contention`` (probes/lock.bpf.c): kernel lock waits per lock address and
kind, the waiter's stack, the owner (mutex, rwsem writer, rt_mutex) when the wait began;
waits still in progress when the window closes, which are wait-for edges (every one of
them, with a task table, for the node's wait-for graph: investigator/analyze/waitfor.py)."""

from __future__ import annotations

import ctypes as C
import time
from typing import Any

from ...analyze.waitfor import Edge, task_row, wait_tasks
from ...finding import Finding, Lock, Task
from ...system.kallsyms import kallsyms
from ._common import ProbeCollector, cstr, hist_quantile, kernel_frames, log2_hist, task_entity

SLOTS = 32
TOP = 20
u32, u64 = C.c_uint32, C.c_uint64
DEPTH = 24          # LOCK_STACK_DEPTH
WAITING_MAX = 10240     # the waiting map's max_entries (probes/lock.bpf.c): every wait in progress is read
STUCK_PCT = 90          # the stuck_pct parameter's default (probes/lock.yaml)
SPIN, READ, WRITE, RT, PERCPU, MUTEX = 1, 2, 4, 8, 16, 32


class LockWait(C.Structure):
    _fields_ = [("lock", u64), ("start_ns", u64), ("flags", u32), ("tgid", u32), ("owner_tid", u32),
                ("owner_tgid", u32), ("frames", u32), ("owner_flags", u32), ("nested", u32), ("tid", u32),
                ("comm", C.c_char * 16),
                ("owner_comm", C.c_char * 16), ("stack", u64 * DEPTH)]


class LockStat(C.Structure):
    _fields_ = [("count", u64), ("total_ns", u64), ("max_ns", u64), ("flags", u32), ("failed", u32),
                ("worst_tid", u32), ("worst_tgid", u32), ("worst_owner_tid", u32), ("worst_owner_tgid", u32),
                ("worst_frames", u32), ("nested", u32), ("worst_comm", C.c_char * 16),
                ("worst_owner_comm", C.c_char * 16), ("worst_stack", u64 * DEPTH)]


LAYOUTS = {"lock_wait": LockWait, "lock_stat": LockStat}
CONSTANTS = {"LOCK_SLOTS": SLOTS, "LOCK_STACK_DEPTH": DEPTH}


def lock_kind(flags: int) -> str:
    """The lock's kind from the waiters' contention_begin flags."""
    if flags & MUTEX:
        return "mutex"
    if flags & RT:
        return "rt_mutex"
    if flags & PERCPU:
        return "percpu_rwsem"
    if flags & SPIN:
        return "rwlock" if flags & (READ | WRITE) else "spinlock"
    if flags & (READ | WRITE):
        return "rwsem"
    return "other"


def lock_name(addr: int) -> str:
    """A static lock's symbol (cgroup_mutex); a lock inside an object has none."""
    if not kallsyms().readable:
        return ""
    name, _, off = kallsyms().name(addr).partition("+")
    return name if off == "0x0" else ""


def worst_finding(top: dict[str, Any] | None) -> Finding:
    """The lock with the most total wait as a finding: its worst waiter, the owner it waited
    for (when the lock records one) as holder, the lock."""
    if top is None:
        return Finding.empty(addr="", name="", kind="", count=0, total_ms=0.0, max_ms=0.0,
                             waiter=task_entity(0, 0, ""), owner=task_entity(0, 0, ""))
    waiter, owner = top["waiter"], top["owner"]
    tasks = [Task(waiter["tid"], waiter["pid"], waiter["comm"], "waiter")]
    if owner["tid"]:
        tasks.append(Task(owner["tid"], owner["pid"], owner["comm"], "holder"))
    return Finding(tasks=tasks, locks=[Lock(top["kind"], top["addr"], top["name"], owner["tid"], waiter["tid"])],
                   stack=top["stack"], details={k: v for k, v in top.items() if k != "stack"})


class Collector(ProbeCollector):

    def finish(self, inst: Any) -> dict[str, Any]:
        maps = inst.obj.maps
        now = time.monotonic_ns()
        locks = []
        for k, v in maps["by_lock"].lookup_batch(limit=4096):
            s = LockStat.from_buffer_copy(v)
            addr = int.from_bytes(k, "little")
            locks.append((s, addr))
        locks.sort(key=lambda x: -x[0].total_ns)
        out_locks = []
        for s, addr in locks[:TOP]:
            kind = lock_kind(s.flags)
            waiter = task_entity(s.worst_tid, s.worst_tgid, cstr(s.worst_comm))
            owner = task_entity(s.worst_owner_tid, s.worst_owner_tgid, cstr(s.worst_owner_comm))
            out_locks.append({"addr": hex(addr), "name": lock_name(addr), "kind": kind, "count": s.count,
                              "failed": s.failed, "nested": s.nested, "total_ms": round(s.total_ns / 1e6, 3),
                              "avg_us": round(s.total_ns / max(1, s.count) / 1e3, 3),
                              "max_ms": round(s.max_ns / 1e6, 3), "waiter": waiter, "owner": owner,
                              "stack": kernel_frames(list(s.worst_stack)[: s.worst_frames])})
        waiting, found = [], []
        for k, v in maps["waiting"].lookup_batch(limit=WAITING_MAX):
            w = LockWait.from_buffer_copy(v)
            tid = int.from_bytes(k, "little")
            kind = lock_kind(w.flags)
            reader_owned = kind == "rwsem" and bool(w.owner_flags & 1)
            owner_tid = 0 if reader_owned else w.owner_tid
            waiting.append({**task_entity(tid, w.tgid, cstr(w.comm)), "lock": hex(w.lock),
                            "name": lock_name(w.lock), "kind": kind,
                            "waiting_ms": round((now - w.start_ns) / 1e6, 3),
                            "owner": task_entity(owner_tid, w.owner_tgid if owner_tid else 0,
                                                 cstr(w.owner_comm) if owner_tid else ""),
                            "reader_owned": reader_owned, "stack": list(w.stack)[: w.frames]})
            if owner_tid and owner_tid != tid:
                found.append((tid, owner_tid, kind, hex(w.lock)))
        waiting.sort(key=lambda w: -w["waiting_ms"])
        for w in waiting[:TOP]:         # symbolized only where shown
            w["stack"] = kernel_frames(w["stack"])
        by_tid = {w["tid"]: w for w in waiting}
        observed_s = time.monotonic() - inst.attached_at
        # a wait that lasted (nearly) the whole window is stuck as far as we can see
        stuck_s = inst.values.get("stuck_pct", STUCK_PCT) / 100 * observed_s
        edges = [Edge(tid, owner, f"{kind} {addr}", kind, addr, by_tid[tid]["waiting_ms"] / 1e3,
                      by_tid[tid]["waiting_ms"] / 1e3 >= stuck_s) for tid, owner, kind, addr in found]
        rows = [task_row(w["tid"], w["pid"], w["comm"], stack=[f for f in w["stack"] if isinstance(f, str)])
                for w in waiting] + [w["owner"] for w in waiting if w["owner"]["tid"]]
        slots = [0] * SLOTS
        for i in range(SLOTS):
            vals = maps["hist"].lookup(i) or []
            slots[i] = sum(int.from_bytes(x, "little") for x in (vals if isinstance(vals, list) else [vals]))
        return {
            "contended_locks": len(locks),
            "waits": sum(s.count for s, _ in locks),
            "total_wait_ms": round(sum(s.total_ns for s, _ in locks) / 1e6, 3),
            "max_wait_ms": round(max((s.max_ns for s, _ in locks), default=0) / 1e6, 3),
            "p99_wait_us": hist_quantile(slots, 0.99),
            "hist_us": log2_hist(slots),
            "locks": out_locks,
            "worst": worst_finding(out_locks[0] if out_locks else None).to_dict(),
            "waiting_count": len(waiting),
            "waiting_max_ms": waiting[0]["waiting_ms"] if waiting else 0.0,
            "waiting": waiting[:TOP],
            "edges": [e.evidence() for e in edges],
            # waits begun while the waiting map was full, counted in the kernel
            "edges_dropped": inst.obj.read_global("waits_dropped"),
            "ended_dropped": inst.obj.read_global("ended_dropped"),
            "wait_tasks": wait_tasks(rows, edges),
        }
