"""Evidence of ``user.futex`` (probes/futex.bpf.c): tasks blocked in futex(), the
pthread mutex they wait for and its owner: every wait-for edge and a task table, for the
node's wait-for graph (investigator/analyze/waitfor.py finds its cycles).

An edge waiter -> owner is drawn only where the futex looks like a lock held by another
live thread: a glibc mutex (a FUTEX_WAIT on a non-zero word whose owner field, offset 8,
names it), a PI futex (whose word holds the owner TID), or a glibc pthread_rwlock_t held
for writing (its writer's TID lies 12 or 16 bytes after the futex its waiters sleep on).
A private futex (glibc's default) is owned by a thread of the waiter's own process; a
shared one (a PTHREAD_PROCESS_SHARED mutex in shared memory) by a thread of any process,
and then the word must also read as a locked mutex.  The TIDs in user memory are those of
the process's pid namespace: a containerised process's are mapped to ours through NSpid.
A wait is *stuck* when it is in both snapshots (window start and end), on the same futex,
and its task did not context-switch in between: a cycle of stuck waits is a deadlock.
``blocked_s`` -- how long since it last ran -- is read in the kernel from the scheduler's
own clocks (probes/common.h task_off_cpu_ns()), as sched.blocked reads it."""

from __future__ import annotations

import ctypes as C
import os
from typing import Any

from ...analyze.waitfor import Edge, task_row, wait_tasks
from ...system.procfs import PidNamespaces
from ._common import ProbeCollector, Snapshot, cstr, holder_tasks, iter_records, snapshot_bounds, task_entity
from .blocked import state_letter

TOP = 50
u32, s32, u64 = C.c_uint32, C.c_int32, C.c_uint64
FUTEX_CMD_MASK, FUTEX_PRIVATE_FLAG = 0x7F, 0x80
OPS = {0: "FUTEX_WAIT", 6: "FUTEX_LOCK_PI", 9: "FUTEX_WAIT_BITSET", 11: "FUTEX_WAIT_REQUEUE_PI",
       13: "FUTEX_LOCK_PI2"}
PI_OPS = {6, 13}
FUTEX_TID_MASK = 0x3FFFFFFF
EBUSY = 16


def unread(err: int) -> str:
    """Why a waiter's futex word was not read ("" when it was)."""
    if err == 0:
        return ""
    if err == -EBUSY:
        return "not read: the process's mmap_lock is held for writing or contended (reading would wait)"
    return f"not read: {os.strerror(-err) if err < 0 else err}"


class FutexRec(C.Structure):
    _fields_ = [("uaddr", u64), ("nvcsw", u64), ("nivcsw", u64), ("now_ns", u64), ("off_cpu_ns", u64),
                ("tid", u32), ("tgid", u32), ("op", u32), ("val", u32), ("word", u32),
                ("owner", u32), ("read_err", s32), ("state", u32), ("comm", C.c_char * 16), ("near_err", s32),
                ("near", u32 * 10), ("prio", s32), ("policy", u32)]


LAYOUTS = {"futex_rec": FutexRec}


READ_IN_USERSPACE = -38     # probes/futex.bpf.c: no bpf_copy_from_user_task() here (before 5.18)


def snapshot(inst: Any) -> Snapshot:
    snap = iter_records(inst, FutexRec)
    for r in snap.records:
        if r.read_err == READ_IN_USERSPACE:
            read_words(r)
    return snap


def _pread(fd: int, size: int, addr: int) -> tuple[int, bytes]:
    try:
        data = os.pread(fd, size, addr)
    except OSError as e:
        return -(e.errno or 5), b""
    return (0, data) if len(data) == size else (-5, b"")      # EIO: not all of it mapped


def read_words(r: FutexRec) -> None:
    """Fill the futex word, the owner and the words near it from the waiter's memory
    (/proc/TID/mem), for a record whose iterator could not read them: the kernel lacks
    bpf_copy_from_user_task().  The iterator has already looked at the process's
    mmap_lock, as it does before reading in the kernel."""
    try:
        fd = os.open(f"/proc/{int(r.tgid)}/task/{int(r.tid)}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        r.read_err = r.near_err = -(e.errno or 5)
        return
    try:
        r.read_err, words = _pread(fd, 12, r.uaddr)
        if not r.read_err:
            r.word, _, r.owner = (u32 * 3).from_buffer_copy(words)
        r.near_err, near = _pread(fd, 4 * len(r.near), r.uaddr - 16) if r.uaddr >= 16 else (-14, b"")
        if not r.near_err:
            C.memmove(r.near, near, len(near))
    finally:
        os.close(fd)


def _rwlock_writer(r: FutexRec) -> tuple[int, int]:
    """(the rwlock's address, its writer's TID) when the task waits on a write-locked
    glibc pthread_rwlock_t; (0, 0) otherwise.  glibc (2.25+) sleeps a writer on
    __writers_futex (offset 12) and a reader on __wrphase_futex (offset 8), both with the
    value 3 (locked | FUTEX_USED), while __readers (offset 0) has WRPHASE|WRLOCKED set and
    __cur_writer (offset 24) holds the writer's TID."""
    if r.near_err != 0 or r.op & FUTEX_CMD_MASK not in (0, 9) or r.val != 3 or r.word != 3:
        return 0, 0

    def at(off: int) -> int:        # the word at uaddr + off (near[] starts at uaddr - 16)
        return int(r.near[(off + 16) // 4])
    if at(-12) & 3 == 3 and at(-4) in (1, 3):       # a writer: base = uaddr - 12
        return r.uaddr - 12, at(12)
    if at(-8) & 3 == 3 and at(4) in (1, 3):         # a reader: base = uaddr - 8
        return r.uaddr - 8, at(16)
    return 0, 0


def _owner(r: FutexRec, namespaces: PidNamespaces) -> tuple[int, str, int]:
    """What the task waits for: (the owner's TID as we name it, the lock's kind, its
    address).  The owner is 0 when it is not a lock with a live owner."""
    cmd = r.op & FUTEX_CMD_MASK
    if r.read_err != 0 or r.word == 0:
        return 0, "futex", r.uaddr
    kind, addr = "pthread_mutex", r.uaddr
    if cmd in PI_OPS:
        kind, owner = "pi_futex", r.word & FUTEX_TID_MASK
    elif cmd in (0, 9):
        rw_addr, rw_owner = _rwlock_writer(r)
        if rw_owner:
            kind, addr, owner = "pthread_rwlock", rw_addr, rw_owner
        else:
            owner = r.owner
    else:
        return 0, "futex", r.uaddr
    private = bool(r.op & FUTEX_PRIVATE_FLAG)
    # shared memory holds anything: a shared mutex's word must read as glibc's locked mutex
    # (1 or 2, or the owner's TID for a robust or PI one) before its +8 is taken for an owner
    if kind == "pthread_mutex" and not private and r.word not in (1, 2) and r.word & FUTEX_TID_MASK != owner:
        return 0, "futex", r.uaddr
    owner = namespaces.global_tid(r.tgid, owner) if owner > 0 else 0
    if owner <= 0 or owner == r.tid:
        return 0, "futex", r.uaddr
    if not os.path.exists(f"/proc/{r.tgid}/task/{owner}" if private else f"/proc/{owner}/status"):
        return 0, "futex", r.uaddr
    return owner, kind, addr


class Collector(ProbeCollector):
    def start(self, inst: Any) -> None:
        self.start_snap = snapshot(inst)
        self.first = self.start_snap.by_tid()

    def finish(self, inst: Any) -> dict[str, Any]:
        end_snap = snapshot(inst)
        namespaces = PidNamespaces()
        waiters, edges, rows = [], [], []
        for tid, r in end_snap.by_tid().items():
            blocked_s = round(r.off_cpu_ns / 1e9, 3)
            before = self.first.get(tid)
            stuck = before is not None and before.uaddr == r.uaddr and \
                before.nvcsw + before.nivcsw == r.nvcsw + r.nivcsw
            owner, kind, addr = _owner(r, namespaces)
            cmd = r.op & FUTEX_CMD_MASK
            w = {**task_entity(tid, r.tgid, cstr(r.comm), r.prio, r.policy), "uaddr": hex(r.uaddr), "lock": hex(addr),
                 "op": OPS.get(cmd, str(cmd)),
                 "shared": not r.op & FUTEX_PRIVATE_FLAG, "unread": unread(r.read_err),
                 "word": r.word, "owner_tid": owner, "kind": kind, "blocked_s": blocked_s, "stuck": bool(stuck)}
            waiters.append(w)
            rows.append(task_row(tid, r.tgid, w["comm"], state_letter(r.state), prio=w["prio"], policy=w["policy"]))
            if owner:
                edges.append(Edge(tid, owner, f"{kind} {hex(addr)}", kind, hex(addr), blocked_s, bool(stuck)))
        rows += holder_tasks((e.holder for e in edges), {w["tid"] for w in waiters})
        waiters.sort(key=lambda w: (not w["owner_tid"], -w["blocked_s"]))
        return {
            "waiters_count": len(waiters),
            "mutex_waiters_count": sum(1 for w in waiters if w["owner_tid"]),
            "waiters": waiters[:TOP],
            "edges": [e.evidence() for e in edges],
            # waiters beyond the closing snapshot's record limit: their edges are unknown
            "edges_dropped": end_snap.dropped,
            "wait_tasks": wait_tasks(rows, edges),
            **snapshot_bounds(self.start_snap, end_snap),
        }
