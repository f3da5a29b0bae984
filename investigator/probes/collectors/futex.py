"""Evidence of ``user.futex`` (probes/futex.bpf.c): tasks blocked in futex(), the
pthread mutex they wait for and its owner, the wait-for graph and its cycles.

An edge waiter -> owner is drawn only where the futex looks like a glibc mutex held by
another thread of the same process: a FUTEX_WAIT on a non-zero word whose owner field
(offset 8) names a live thread of that process -- or a PI futex, whose word holds the
owner TID.  A cycle is a *deadlock* when it is in both snapshots (window start and end)
and none of its tasks context-switched in between."""

from __future__ import annotations

import ctypes as C
import os
from typing import Any

from ...analyze.waitfor import Edge, cycles
from ._common import cstr, iter_snapshot, seconds_since_ran, task_entity

MAX_TASKS = 8192
TOP = 50
u32, s32, u64 = C.c_uint32, C.c_int32, C.c_uint64
OPS = {0: "FUTEX_WAIT", 6: "FUTEX_LOCK_PI", 9: "FUTEX_WAIT_BITSET", 11: "FUTEX_WAIT_REQUEUE_PI",
       13: "FUTEX_LOCK_PI2"}
PI_OPS = {6, 13}
FUTEX_TID_MASK = 0x3FFFFFFF


class FutexRec(C.Structure):
    _fields_ = [("uaddr", u64), ("nvcsw", u64), ("nivcsw", u64), ("now_ns", u64), ("last_arrival_ns", u64),
                ("exec_start_ns", u64), ("tid", u32), ("tgid", u32), ("op", u32), ("val", u32), ("word", u32),
                ("owner", u32), ("read_err", s32), ("state", u32), ("comm", C.c_char * 16)]


LAYOUTS = {"futex_rec": FutexRec}
SYSCALL_NR = {"x86_64": 202, "aarch64": 98}


def snapshot(inst: Any) -> dict[int, FutexRec]:
    return iter_snapshot(inst, FutexRec, MAX_TASKS)


def _owner(r: FutexRec) -> int:
    if r.read_err != 0 or r.word == 0:
        return 0
    if r.op in PI_OPS:
        owner = r.word & FUTEX_TID_MASK
    elif r.op in (0, 9):
        owner = r.owner
    else:
        return 0
    if owner <= 0 or owner == r.tid or not os.path.exists(f"/proc/{r.tgid}/task/{owner}"):
        return 0
    return owner


def empty_deadlock() -> dict[str, Any]:
    return {"size": 0, "stuck": False, "blocked_s": 0.0, "tasks": [], "locks": [], "cpus": [], "cycle": []}


class Collector:
    def start(self, inst: Any) -> None:
        self.first = snapshot(inst)

    def finish(self, inst: Any) -> dict[str, Any]:
        last = snapshot(inst)
        waiters, edges = [], []
        for tid, r in last.items():
            blocked_s = seconds_since_ran(r.now_ns, r.last_arrival_ns, r.exec_start_ns)
            before = self.first.get(tid)
            stuck = before is not None and before.uaddr == r.uaddr and \
                before.nvcsw + before.nivcsw == r.nvcsw + r.nivcsw
            owner = _owner(r)
            kind = "pi_futex" if r.op in PI_OPS else "pthread_mutex" if owner else "futex"
            w = {**task_entity(tid, r.tgid, cstr(r.comm)), "uaddr": hex(r.uaddr), "op": OPS.get(r.op, str(r.op)),
                 "word": r.word, "owner_tid": owner, "kind": kind, "blocked_s": blocked_s, "stuck": bool(stuck)}
            waiters.append(w)
            if owner:
                edges.append(Edge(tid, owner, f"{kind} {hex(r.uaddr)}", kind))
        by_tid = {w["tid"]: w for w in waiters}
        found = []
        for cyc in cycles(edges):
            members = [by_tid[e.waiter] for e in cyc]
            tasks = [{**{k: m[k] for k in ("tid", "pid", "comm")}, "role": "waiter"} for m in members]
            locks = [{"addr": e.lock.split()[-1], "kind": e.kind, "holder_tid": e.holder, "waiter_tid": e.waiter,
                      "waiter_comm": by_tid[e.waiter]["comm"],
                      "holder_comm": by_tid.get(e.holder, {}).get("comm", "")} for e in cyc]
            found.append({"size": len(cyc), "stuck": all(m["stuck"] for m in members),
                          "blocked_s": min(m["blocked_s"] for m in members), "tasks": tasks, "locks": locks,
                          "cpus": [], "cycle": [e.waiter for e in cyc]})
        found.sort(key=lambda c: (not c["stuck"], -c["blocked_s"]))
        waiters.sort(key=lambda w: (not w["owner_tid"], -w["blocked_s"]))
        return {
            "waiters_count": len(waiters),
            "mutex_waiters_count": sum(1 for w in waiters if w["owner_tid"]),
            "waiters": waiters[:TOP],
            "edges": [{"waiter": e.waiter, "holder": e.holder, "lock": e.lock, "kind": e.kind,
                       "stuck": by_tid[e.waiter]["stuck"], "waited_s": by_tid[e.waiter]["blocked_s"]}
                      for e in edges[:TOP * 4]],
            "cycles_count": len(found),
            "stuck_cycles_count": sum(1 for c in found if c["stuck"]),
            "cycles": found,
            "deadlock": found[0] if found else empty_deadlock(),
        }
