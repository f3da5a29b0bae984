"""Evidence of ``lock.contention`` (probes/lock.bpf.c): kernel lock waits per lock address and
kind, the waiter's stack, the owner (mutex, rwsem writer, rt_mutex) when the wait began;
waits still in progress when the window closes, which are wait-for edges (every one of
them, with a task table, for the node's wait-for graph: investigator/analyze/waitfor.py)."""

from __future__ import annotations

import ctypes as C
from typing import Any

from ...analyze.waitfor import Edge, task_row, wait_tasks
from ...finding import Finding, Lock, Task
from ...system import procfs
from ...system.kallsyms import kallsyms
from ._common import ProbeCollector, cstr, hist_quantile, kernel_frames, log2_hist, task_entity
from .filelocks import Scan, mount_devs, open_file_path

SLOTS = 32
TOP = 20
u32, u64 = C.c_uint32, C.c_uint64
DEPTH = 24          # LOCK_STACK_DEPTH
WAITERS = 8192      # LOCK_WAITERS: (lock, waiter) pairs
CONTENDERS = 8      # contenders and holders named per lock; the rest are counted
OBJ_INODE, OBJ_MM = 1, 2    # LOCK_OBJ_*
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
                ("worst_frames", u32), ("nested", u32), ("obj", u32), ("obj_dev", u32), ("obj_id", u64),
                ("worst_comm", C.c_char * 16),
                ("worst_owner_comm", C.c_char * 16), ("worst_stack", u64 * DEPTH)]


class LockWaiterKey(C.Structure):
    _fields_ = [("lock", u64), ("tid", u32), ("pad", u32)]


class LockWaiter(C.Structure):
    _fields_ = [("count", u64), ("total_ns", u64), ("max_ns", u64), ("tgid", u32), ("owner_tid", u32),
                ("owner_tgid", u32), ("pad", u32), ("comm", C.c_char * 16), ("owner_comm", C.c_char * 16)]


LAYOUTS = {"lock_wait": LockWait, "lock_stat": LockStat, "lock_waiter_key": LockWaiterKey,
           "lock_waiter": LockWaiter}
CONSTANTS = {"LOCK_SLOTS": SLOTS, "LOCK_STACK_DEPTH": DEPTH, "LOCK_WAITERS": WAITERS}


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


def contenders(pairs: list[tuple[int, LockWaiter]], observed_ns: int) -> dict[str, Any]:
    """One lock's waiters from its (tid, summed waits) pairs: every contender's share of the
    window (the top CONTENDERS named, the rest counted) and the holders they waited for
    (by how many contenders waited for each), and their summed share of the window (200: as
    much as two tasks' whole window)."""
    pairs = sorted(pairs, key=lambda p: -p[1].total_ns)
    window = max(1, observed_ns)
    named = [{**task_entity(tid, w.tgid, cstr(w.comm)), "waits": w.count,
              "wait_ms": round(w.total_ns / 1e6, 3), "wait_pct": round(100 * w.total_ns / window, 1),
              "max_ms": round(w.max_ns / 1e6, 3)} for tid, w in pairs[:CONTENDERS]]
    holders: dict[int, list[Any]] = {}
    for _, w in pairs:
        if w.owner_tid:
            h = holders.setdefault(w.owner_tid, [0, task_entity(w.owner_tid, w.owner_tgid, cstr(w.owner_comm))])
            h[0] += 1
    held = [{**e, "waited_by": n} for n, e in sorted(holders.values(), key=lambda h: -h[0])[:CONTENDERS]]
    others = max(0, len(pairs) - CONTENDERS)
    return {"waiters": len(pairs), "contenders": named, "others": others,
            "others_wait_ms": round(sum(w.total_ns for _, w in pairs[CONTENDERS:]) / 1e6, 3),
            "holders": held, "share_pct": round(100 * sum(w.total_ns for _, w in pairs) / window, 1),
            "who_waits": ", ".join(f"{c['comm']} (tid {c['tid']}) {c['wait_pct']:g}%" for c in named)
            + (f" and {others} more" if others else ""),
            "who_holds": ", ".join(f"{h['comm']} (tid {h['tid']})" for h in held) or "owners the lock does not record"}


def protected(s: LockStat, pids: list[int]) -> dict[str, Any]:
    """What the lock is part of, as the probe told it from the lock's address: an inode's
    i_rwsem (its device and inode number, and its path from a contender's open files) or a
    process's mmap_lock; empty when the probe could not tell."""
    if s.obj == OBJ_INODE:
        dev = f"{s.obj_dev >> 20:02x}:{s.obj_dev & 0xfffff:02x}"      # the kernel's dev_t, as /proc/locks prints it
        path, mounts, scan = "", mount_devs(), Scan(0.2)
        for pid in dict.fromkeys(pids):
            path = open_file_path(pid, dev, s.obj_id, mounts, scan) if pid else ""
            if path:
                break
        return {"object": "inode", "field": "i_rwsem", "dev": dev, "inode": s.obj_id, "path": path}
    if s.obj == OBJ_MM:
        return {"object": "mm", "field": "mmap_lock", "pid": s.obj_id, "comm": procfs.comm(s.obj_id)}
    return {}


def object_name(p: dict[str, Any]) -> str:
    """The lock named by what it protects: "i_rwsem of /srv/log" or "mmap_lock of app (pid 42)"."""
    if p.get("object") == "inode":
        return f"i_rwsem of {p['path'] or 'inode ' + str(p['inode']) + ' on ' + p['dev']}"
    if p.get("object") == "mm":
        return f"mmap_lock of {p['comm'] or 'process'} (pid {p['pid']})"
    return ""


def worst_finding(top: dict[str, Any] | None) -> Finding:
    """The lock with the most total wait as a finding: its contenders (the top ones) as
    waiters, the owners they waited for (when the lock records them) as holders -- a task
    that both waited and held is named as waiter -- and the lock."""
    if top is None:
        return Finding.empty(addr="", name="", kind="", count=0, total_ms=0.0, max_ms=0.0, share_pct=0.0,
                             waiters=0, contenders=[], others=0, holders=[], protects={},
                             waiter=task_entity(0, 0, ""), owner=task_entity(0, 0, ""))
    waiter, owner = top["waiter"], top["owner"]
    tasks = [Task(waiter["tid"], waiter["pid"], waiter["comm"], "waiter")]
    tasks += [Task.of(c, "waiter") for c in top["contenders"] if c["tid"] != waiter["tid"]]
    waiting = {t.tid for t in tasks}
    holders = [h for h in top["holders"] if h["tid"] not in waiting]
    if owner["tid"] and owner["tid"] not in waiting and all(h["tid"] != owner["tid"] for h in holders):
        holders.insert(0, owner)
    tasks += [Task.of(h, "holder") for h in holders]
    return Finding(tasks=tasks, locks=[Lock(top["kind"], top["addr"], top["name"], owner["tid"], waiter["tid"])],
                   stack=top["stack"], details={k: v for k, v in top.items() if k != "stack"})


class Collector(ProbeCollector):

    def finish(self, inst: Any) -> dict[str, Any]:
        maps = inst.obj.maps
        now = inst.observed_until_ns()
        locks = []
        for k, v in maps["by_lock"].lookup_batch(limit=4096):
            s = LockStat.from_buffer_copy(v)
            addr = int.from_bytes(k, "little")
            locks.append((s, addr))
        locks.sort(key=lambda x: -x[0].total_ns)
        top = {addr for _, addr in locks[:TOP]}
        pairs: dict[int, list[tuple[int, LockWaiter]]] = {}
        for k, v in maps["by_waiter"].lookup_batch(limit=WAITERS):
            key = LockWaiterKey.from_buffer_copy(k)
            if key.lock in top:
                pairs.setdefault(key.lock, []).append((key.tid, LockWaiter.from_buffer_copy(v)))
        observed_ns = int(inst.observed_s() * 1e9)
        out_locks = []
        for s, addr in locks[:TOP]:
            kind = lock_kind(s.flags)
            waiter = task_entity(s.worst_tid, s.worst_tgid, cstr(s.worst_comm))
            owner = task_entity(s.worst_owner_tid, s.worst_owner_tgid, cstr(s.worst_owner_comm))
            who = contenders(pairs.get(addr, []), observed_ns)
            # from the lock's own sum: a waiter whose pair found no room is still counted
            who["share_pct"] = round(100 * s.total_ns / max(1, observed_ns), 1)
            protects = protected(s, [c["pid"] for c in who["contenders"]] + [h["pid"] for h in who["holders"]])
            out_locks.append({"addr": hex(addr), "name": lock_name(addr) or object_name(protects), "kind": kind,
                              "count": s.count, **who, "protects": protects,
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
        observed_s = inst.observed_s()
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
            "waiters_dropped": inst.obj.read_global("waiters_dropped"),
            "wait_tasks": wait_tasks(rows, edges),
        }
