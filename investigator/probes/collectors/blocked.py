"""Evidence of ``sched.blocked`` (probes/blocked.bpf.c): tasks in uninterruptible sleep,
snapshotted by a task iterator when the window opens and when it closes.

A task counts as *stuck* when it is in both snapshots and did not context-switch in
between (its nvcsw + nivcsw did not move): it made no progress during the window,
whatever the clocks say.  ``blocked_s`` -- how long since it last ran -- comes from the
scheduler's own clocks (sched_info.last_arrival, se.exec_start against their run queue's
clocks, probes/common.h task_off_cpu_ns())."""

from __future__ import annotations

import ctypes as C
import os
from collections import Counter
from typing import Any

from ...finding import Finding, Lock, Task
from ...system.kallsyms import symbolize
from ... import syscalls
from ...system.procfs import current_syscall
from ...analyze.waitfor import Edge, task_row, wait_tasks
from ._common import ProbeCollector, Snapshot, cstr, holder_tasks, iter_records, snapshot_bounds, task_entity

STACK_DEPTH = 32
TOP_TASKS = 50
u32, s32, u64 = C.c_uint32, C.c_int32, C.c_uint64
BLOCKER_KINDS = {0: "mutex", 1: "semaphore", 2: "rwsem-read", 3: "rwsem-write"}
PF_KTHREAD = 0x00200000


class BlockedRec(C.Structure):
    _fields_ = [("now_ns", u64), ("off_cpu_ns", u64), ("nvcsw", u64),
                ("nivcsw", u64), ("blocker", u64), ("lock_owner", u64), ("owner_tid", u32),
                ("owner_tgid", u32), ("tid", u32), ("tgid", u32), ("state", u32), ("flags", u32),
                ("prio", s32), ("stack_bytes", s32), ("comm", C.c_char * 16),
                ("owner_comm", C.c_char * 16), ("stack", u64 * STACK_DEPTH), ("blocker_src", u32),
                ("reserved", u32)]


class LockFn(C.Structure):
    _fields_ = [("lo", u64), ("hi", u64), ("kind", u32), ("valid", u32)]


LAYOUTS = {"blocked_rec": BlockedRec, "lock_fn": LockFn}
BLOCKER_SOURCES = {1: "kernel", 2: "stack"}
# The slow paths that sleep with a waiter on the task's stack, by blocker kind (0 mutex,
# 1 semaphore, 2 rwsem read, 3 rwsem write): kernel/locking/{mutex,rwsem,semaphore}.c
LOCK_SLOWPATHS = {"__mutex_lock": 0, "__ww_mutex_lock": 0, "__mutex_lock_slowpath": 0,
                  "__mutex_lock_killable_slowpath": 0, "__mutex_lock_interruptible_slowpath": 0,
                  "__down_common": 1, "__down": 1, "__down_interruptible": 1, "__down_killable": 1,
                  "__down_timeout": 1, "rwsem_down_read_slowpath": 2, "rwsem_down_write_slowpath": 3}
MAX_LOCK_FNS = 16
CONSTANTS = {"STACK_DEPTH": STACK_DEPTH, "MAX_LOCK_FNS": MAX_LOCK_FNS}


def load_lock_fns(inst: Any) -> int:
    """Tell the iterator where the lock slow paths are (from /proc/kallsyms); how many."""
    from ...system.kallsyms import kallsyms
    m = inst.obj.maps.get("lock_fns")
    if m is None:
        return 0
    ranges = kallsyms().ranges(LOCK_SLOWPATHS)[:MAX_LOCK_FNS - 1]
    if not ranges:                      # kallsyms hidden (kptr_restrict): no stack search
        return 0
    m.update(0, bytes(LockFn(min(r[0] for r in ranges), max(r[1] for r in ranges), 0, 1)))  # the span
    for i, (lo, hi, kind) in enumerate(ranges, 1):
        m.update(i, bytes(LockFn(lo, hi, kind, 1)))
    return len(ranges)


def state_letter(state: int) -> str:
    return "D" if state & 2 else "S" if state & 1 else "R"


def describe(r: BlockedRec) -> dict[str, Any]:
    """One task record (probes/task_record.h) as evidence: who, state, since when it has not
    run, its stack and where it sleeps, and the lock it is blocked on with its owner."""
    stack = []
    if r.stack_bytes > 0:
        stack = symbolize([a for a in list(r.stack)[: r.stack_bytes // 8] if a])
    blocker = None
    if r.blocker:
        blocker = {"kind": BLOCKER_KINDS.get(r.blocker & 3, "unknown"), "addr": hex(r.blocker & ~3),
                   "owner": task_entity(r.owner_tid, r.owner_tgid, cstr(r.owner_comm)) if r.owner_tid else None,
                   "source": BLOCKER_SOURCES.get(r.blocker_src, "kernel")}
    return {**task_entity(r.tid, r.tgid, cstr(r.comm), r.prio),
            "state": state_letter(r.state), "kthread": bool(r.flags & PF_KTHREAD),
            "blocked_s": round(r.off_cpu_ns / 1e9, 3),
            "switches": r.nvcsw + r.nivcsw, "stack": stack,
            "wchan": stack[0].split("+")[0] if stack else "", "blocker": blocker}


# What a task in D state waits for, from the functions on its stack: (functions any of
# which must be there, functions one of which must also be there -- or () -- and the words).
WAITS = (
    (("percpu_rwsem_wait", "percpu_down_read"),
     ("mnt_want_write", "__sb_start_write", "sb_start_write", "file_start_write", "sb_start_pagefault",
      "sb_start_intwrite", "mnt_want_write_file", "__sb_start_write_trylock"),
     "waits for a frozen filesystem to thaw (its sb_writers lock: fsfreeze -f, FIFREEZE, a snapshot)"),
    (("request_wait_answer", "fuse_simple_request", "__fuse_simple_request"), (),
     "waits for a FUSE daemon's answer"),
    (("rpc_wait_bit_killable", "__rpc_execute", "nfs_wait_bit_killable", "nfs4_wait_clnt_recover"), (),
     "waits for an NFS server"),
    (("jbd2_log_wait_commit", "wait_transaction_locked", "jbd2_journal_stop", "start_this_handle"), (),
     "waits for the filesystem journal (jbd2)"),
    (("__flush_work", "flush_work", "__flush_workqueue", "flush_workqueue", "drain_workqueue",
      "flush_delayed_work", "schedule_on_each_cpu", "__lru_add_drain_all", "work_on_cpu", "work_on_cpu_key"), (),
     "waits for queued kernel work to run (a workqueue item it flushes: see the workqueue pools)"),
    (("__wait_rcu_gp", "synchronize_rcu", "synchronize_rcu_expedited", "rcu_sync_enter", "rcu_barrier",
      "synchronize_rcu_tasks", "synchronize_rcu_tasks_trace"), (),
     "waits for an RCU grace period (a CPU whose kernel threads never run can stall them all)"),
    (("io_schedule", "folio_wait_bit_common", "__folio_lock", "folio_wait_writeback", "wait_on_page_bit_common",
      "__wait_on_buffer", "bit_wait_io", "blk_mq_get_tag", "submit_bio_wait", "blkdev_issue_flush",
      "wait_for_completion_io", "io_schedule_timeout"), (),
     "waits for I/O to complete"),
    (("do_signal_stop",), (), "is stopped by a signal (SIGSTOP, SIGTSTP: job control or kill -STOP)"),
    (("ptrace_stop",), (), "is stopped under ptrace (a debugger or tracer holds it)"),
    (("__refrigerator",), (), "is frozen (the cgroup freezer, or suspend)"),
    (("__mutex_lock", "__mutex_lock_slowpath", "mutex_lock_killable", "rwsem_down_write_slowpath",
      "rwsem_down_read_slowpath", "rt_mutex_slowlock", "__rt_mutex_slowlock_locked"), (),
     "waits for a kernel lock (a mutex or rwsem)"),
    (("futex_wait_queue", "futex_wait_queue_me", "futex_wait", "__futex_wait"), (),
     "waits on a futex (a user-space lock or condition variable)"),
    (("do_nanosleep", "hrtimer_nanosleep", "clock_nanosleep"), (), "sleeps on a timer (nanosleep)"),
    (("pipe_read", "pipe_write", "unix_stream_read_generic", "unix_stream_sendmsg", "tcp_recvmsg", "sk_wait_data",
      "wait_woken", "n_tty_read"), (), "waits for data (a pipe, socket or terminal)"),
    (("do_epoll_wait", "ep_poll", "do_sys_poll", "do_select", "core_sys_select"), (),
     "waits in poll/select/epoll for an event"),
    (("do_wait", "kernel_wait4"), (), "waits for a child process to exit"),
)
SYSCALL_FD = syscalls.numbers(syscalls.FD_FIRST)


def diagnosis(w: dict[str, Any], with_file: bool = True) -> str:
    """What a blocked task waits for, in words: the lock and its owner when known, else what
    its stack shows (a frozen filesystem, I/O, a FUSE daemon, ...), else where it sleeps;
    with the file it works on when its system call takes one (read from /proc links only:
    never from the filesystem it may be stuck on; ``with_file`` false for a wait that is
    over, whose system call is not the current one)."""
    b = w.get("blocker")
    if b:
        owner = b.get("owner")
        text = f"is blocked on {b['kind']} {b['addr']}" + (
            f" held by {owner['comm']} (tid {owner['tid']})" if owner else " (owner unknown)")
    else:
        funcs = {f.split("+")[0] for f in w["stack"]}
        text = next((words for anyof, also, words in WAITS if funcs & set(anyof) and (not also or funcs & set(also))),
                    f"sleeps in {w['stack'][0] if w['stack'] else w.get('wchan') or 'an unknown place'}")
    path = _syscall_file(w["tid"], w["pid"]) if with_file else ""
    return text + (f", on {path}" if path else "")


def _syscall_file(tid: int, pid: int) -> str:
    """The file of a task's current system call when it takes a file descriptor first."""
    call = current_syscall(pid, tid)
    if call is None or call[0] not in SYSCALL_FD:
        return ""
    try:
        target = os.readlink(f"/proc/{pid}/fd/{call[1][0]}")
    except OSError:
        return ""
    return target if target.startswith("/") else ""


def finding(w: dict[str, Any]) -> Finding:
    """A described blocked task as a finding: the task as waiter, the owner of the lock it
    is blocked on (when the kernel records one) as holder, that lock."""
    ent = {k: w[k] for k in ("tid", "pid", "comm")}
    tasks = [Task(w["tid"], w["pid"], w["comm"], "waiter")]
    locks = []
    b = w["blocker"]
    if b:
        owner = b["owner"] or {}
        locks.append(Lock(b["kind"], b["addr"], holder_tid=owner.get("tid", 0), waiter_tid=w["tid"],
                          extra={"owner_tid": owner.get("tid", 0)}))
        if owner:
            tasks.append(Task(owner["tid"], owner["pid"], owner["comm"], "holder"))
    return Finding(tasks=tasks, locks=locks, stack=w["stack"],
                   details={"task": ent, "blocked_s": w["blocked_s"], "wchan": w["wchan"], "blocker": b,
                            "diagnosis": diagnosis(w)})


EMPTY = {"blocked_s": 0.0, "task": task_entity(0, 0, ""), "wchan": "", "blocker": None, "diagnosis": ""}
"""The details of no blocked task (``sched.hung`` shares them)."""


def snapshot(inst: Any) -> Snapshot:
    return iter_records(inst, BlockedRec)


class Collector(ProbeCollector):
    def start(self, inst: Any) -> None:
        load_lock_fns(inst)
        self.start_snap = snapshot(inst)
        self.first = self.start_snap.by_tid()

    def finish(self, inst: Any) -> dict[str, Any]:
        end_snap = snapshot(inst)
        tasks = []
        for tid, r in end_snap.by_tid().items():
            before = self.first.get(tid)
            stuck = (before is not None and before.nvcsw + before.nivcsw == r.nvcsw + r.nivcsw
                     and before.state & 2 and r.state & 2)
            tasks.append({**describe(r), "stuck": bool(stuck)})
        tasks.sort(key=lambda t: (t["state"] != "D", not t["stuck"], -t["blocked_s"]))
        d_tasks = [t for t in tasks if t["state"] == "D"]
        stuck = [t for t in d_tasks if t["stuck"]]
        worst = Finding.empty(**EMPTY, state="")
        if d_tasks:
            w = max(stuck or d_tasks, key=lambda t: t["blocked_s"])
            worst = finding(w)
            worst.details.update(state=w["state"], stuck=w["stuck"])
        edges = [Edge(t["tid"], t["blocker"]["owner"]["tid"], f"{t['blocker']['kind']} {t['blocker']['addr']}",
                      t["blocker"]["kind"], t["blocker"]["addr"], t["blocked_s"],
                      bool(t["stuck"] or (t["state"] == "S" and t["tid"] in self.first and t["switches"] ==
                                          self.first[t["tid"]].nvcsw + self.first[t["tid"]].nivcsw)))
                 for t in tasks if t["blocker"] and t["blocker"]["owner"] and t["blocker"]["owner"]["tid"] != t["tid"]]
        # the lock most tasks were blocked on at the closing snapshot: a crowd behind one lock
        crowd = Counter((t["blocker"]["kind"], t["blocker"]["addr"]) for t in tasks if t["blocker"])
        (kind, addr), n = crowd.most_common(1)[0] if crowd else (("", ""), 0)
        known = {t["tid"] for t in tasks}
        holders = holder_tasks((e.holder for e in edges), known, TOP_TASKS)
        rows = [task_row(t["tid"], t["pid"], t["comm"], t["state"], t["wchan"], t["stack"], t.get("prio")) for t in tasks]
        rows += [t["blocker"]["owner"] for t in tasks if t["blocker"] and t["blocker"]["owner"]]
        return {
            "edges": [e.evidence() for e in edges],
            # tasks beyond the closing snapshot's record limit: the locks they wait for are unknown
            "edges_dropped": end_snap.dropped,
            "wait_tasks": wait_tasks(holders + rows, edges),
            "holders": holders,
            "busiest_lock": {"kind": kind, "addr": addr, "waiters": n},
            "count": len(d_tasks),
            "stuck_count": len(stuck),
            "max_blocked_s": max((t["blocked_s"] for t in d_tasks), default=0.0),
            "max_stuck_s": max((t["blocked_s"] for t in stuck), default=0.0),
            "sleeping_count": len(tasks) - len(d_tasks),
            "tasks": tasks[:TOP_TASKS],
            "worst": worst.to_dict(),
            **snapshot_bounds(self.start_snap, end_snap),
        }
