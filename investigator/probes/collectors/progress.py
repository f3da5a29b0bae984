"""Evidence of ``sched.progress`` (probes/progress.bpf.c): where each watched task's time
went during the window -- on a CPU, waiting for one, asleep, blocked, waiting for I/O,
stopped, frozen -- with the time in memory reclaim and compaction, its longest stretch off
the CPU (where it left, who woke it, what that wait is, in words), and for the tasks of a
node's focus its user and kernel CPU time and the kernel's own run and run-queue times
(/proc/TID/schedstat) across the window.

A focused task is seeded when the window opens with its state read from /proc, so a task
that never switches during the window (a busy loop alone on its CPU, a task blocked since
long before) is accounted too; a runnable seed is resolved at its first switch, or at the
end by the kernel's own run time.  Other tasks are accounted from their first event on
(the time before it is ``unknown_ms``)."""

from __future__ import annotations

import ctypes as C
import time
from typing import Any

from ...finding import Finding, Task
from ...system import procfs
from ._common import MmStall, ProbeCollector, cstr, kernel_stack, ms, task_entity
from .blocked import diagnosis
from .offcpu import UserMaps

TOP = 20
u32, s32, u64 = C.c_uint32, C.c_int32, C.c_uint64
STATES = ("running", "runq", "sleep", "blocked", "io", "stopped", "frozen")
PS_R, PS_DEAD = 7, 8
SEED = {"R": PS_R, "S": 2, "I": 2, "D": 3, "T": 5, "t": 5}
WORDS = {"running": "ran on a CPU", "runq": "waited for a CPU", "sleep": "slept (interruptibly)",
         "blocked": "was blocked in uninterruptible sleep", "io": "waited for I/O",
         "stopped": "was stopped", "frozen": "was frozen", "unknown": "was not yet seen"}


class ProgressTask(C.Structure):
    _fields_ = [("since", u64), ("off_since", u64), ("first_ts", u64), ("ns", u64 * 7),
                ("mm", MmStall),
                ("longest_ns", u64), ("kstack", s32), ("ustack", s32), ("long_kstack", s32), ("long_ustack", s32),
                ("state", u32), ("off_state", u32), ("long_state", u32), ("tgid", u32), ("waker", u32),
                ("long_waker", u32), ("switches", u32), ("preempted", u32), ("wakeups", u32), ("pad", u32),
                ("comm", C.c_char * 16)]


LAYOUTS = {"progress_task": ProgressTask, "mm_stall": MmStall}


def _tgid(tid: int) -> int:
    try:
        return int(procfs.status(tid).get("Tgid", tid))
    except ValueError:
        return tid


class Collector(ProbeCollector):

    def start(self, inst: Any) -> None:
        """Seed the focused tasks (their state now, from /proc) and take their CPU times."""
        self.t0 = time.monotonic_ns()
        self.focus = [int(t) for t in inst.targets.tids]
        self.before: dict[int, tuple[dict[str, Any], tuple[int, int] | None]] = {}
        m = inst.obj.maps["tasks"]
        for tid in self.focus:
            st = procfs.task_stat(tid)
            if st is None or st["state"] not in SEED:
                continue
            self.before[tid] = (st, procfs.schedstat(tid))
            now = time.monotonic_ns()
            rec = ProgressTask(since=now, off_since=0 if st["state"] == "R" else now, state=SEED[st["state"]],
                               off_state=SEED[st["state"]], kstack=-1, ustack=-1, long_kstack=-1, long_ustack=-1,
                               tgid=_tgid(tid), comm=st["comm"].encode()[:15])
            try:
                m.update(tid.to_bytes(4, "little"), bytes(rec), flags=1)   # BPF_NOEXIST: an event came first
            except OSError:
                pass

    def finish(self, inst: Any) -> dict[str, Any]:
        maps = inst.obj.maps
        now = inst.observed_until_ns()
        window = max(1, now - self.t0)
        um = UserMaps()
        rows = []
        for k, v in maps["tasks"].lookup_batch(limit=10240):
            rows.append((int.from_bytes(k[:4], "little"), ProgressTask.from_buffer_copy(v)))
        # the focused tasks first, then by time not running (as counted in the kernel, the
        # ongoing state included): only those reported are read from /proc and symbolized
        order = {t: i for i, t in enumerate(self.focus)}

        def away(r: ProgressTask) -> int:
            ongoing = max(0, now - r.since) if 0 < r.state < len(STATES) else 0
            return sum(r.ns) - r.ns[0] + ongoing
        rows.sort(key=lambda tr: (tr[0] not in order, order.get(tr[0], 0), -away(tr[1])))
        out = [self._task(tid, r, now, window, maps["stacks"], um) for tid, r in rows[:TOP]]
        worst = out[0] if out else None
        return {
            "window_ms": ms(window),
            "tasks_count": len(rows),
            "focused": bool(self.focus),
            "reclaim_traced": any("reclaim" in link for link in inst.links),
            "tasks": out,
            "worst": self._finding(worst),
        }

    def _task(self, tid: int, r: ProgressTask, now: int, window: int, stack_map: Any, um: UserMaps) -> dict[str, Any]:
        ns = {s: int(r.ns[i]) for i, s in enumerate(STATES)}
        unknown = max(0, r.first_ts - self.t0) if r.first_ts else 0
        st = procfs.task_stat(tid)
        ongoing = max(0, now - r.since)
        if r.state < len(STATES):
            ns[STATES[r.state]] += ongoing
        elif r.state == PS_R:
            # seeded runnable and never switched since: the kernel's own run time says how
            # much of it was on a CPU
            before, base = self.before.get(tid, (None, None))
            after = procfs.schedstat(tid)
            if base and after and after[0]:
                ran = min(ongoing, max(0, after[0] - base[0]))
            elif before and st:         # schedstat reads 0 0 0 without sched_info: CPU time
                cpu = st["utime_s"] + st["stime_s"] - before["utime_s"] - before["stime_s"]
                ran = min(ongoing, max(0, int(cpu * 1e9)))
            else:
                ran = ongoing
            ns["running"] += ran
            ns["runq"] += ongoing - ran
        reclaim, compact = r.mm.upto(now)
        observed = max(1, sum(ns.values()))
        pid = r.tgid or tid
        comm = cstr(r.comm) or (st or {}).get("comm", "")
        # the longest stretch off the CPU: one that ended, or the one still going on
        long_ns, lk, lu, lstate, lwaker, still = r.longest_ns, r.long_kstack, r.long_ustack, r.long_state, \
            r.long_waker, False
        if r.off_since and r.state not in (0, PS_DEAD) and now - r.off_since >= long_ns:
            long_ns, lk, lu, lstate, lwaker, still = now - r.off_since, r.kstack, r.ustack, r.off_state, r.waker, True
        kst = kernel_stack(stack_map, lk) if lk >= 0 else []
        if still and not kst:           # seeded: it left the CPU before the window, /proc knows where
            kst = procfs.kernel_stack(tid)
        ust = [um.name(pid, a) for a in stack_map.stack(lu, depth=32) if a] if lu >= 0 else []
        longest: dict[str, Any] = {"state": STATES[lstate] if lstate < len(STATES) else "", "ms": ms(long_ns),
                                   "ongoing": still, "kernel_stack": kst, "user_stack": ust, "woken_by": None,
                                   "diagnosis": ""}
        if long_ns and longest["state"] == "runq":
            longest["diagnosis"] = "was preempted and waited for a CPU"
        elif long_ns and kst:           # without a focus no stack is taken: nothing to say
            longest["diagnosis"] = diagnosis({"tid": tid, "pid": pid, "stack": kst, "blocker": None,
                                              "wchan": kst[0].split("+")[0] if kst else ""}, with_file=still)
            if lwaker:
                w = procfs.task_stat(lwaker)
                longest["woken_by"] = task_entity(lwaker, _tgid(lwaker), w["comm"] if w else "")
        pct = {s: round(100.0 * v / observed, 1) for s, v in ns.items()}
        dominant = max(ns, key=lambda s: ns[s])
        t: dict[str, Any] = {**task_entity(tid, pid, comm, (st or {}).get("prio"), (st or {}).get("policy")),
                             "state": st["state"] if st else "gone",
                             "observed_ms": ms(observed), **{f"{s}_ms": ms(v) for s, v in ns.items()},
                             "unknown_ms": ms(unknown), "reclaim_ms": ms(reclaim), "compaction_ms": ms(compact),
                             "pct": {**pct, "reclaim": round(100.0 * reclaim / observed, 1)},
                             "dominant": dominant, "dominant_pct": pct[dominant],
                             "switches": r.switches, "preempted": r.preempted, "wakeups": r.wakeups,
                             "longest": longest, "tracer": task_entity(0, 0, "")}
        before = self.before.get(tid)
        if before and st:
            t["user_ms"] = round((st["utime_s"] - before[0]["utime_s"]) * 1000, 1)
            t["sys_ms"] = round((st["stime_s"] - before[0]["stime_s"]) * 1000, 1)
        tracer = int(procfs.status(tid).get("TracerPid", "0") or 0) if st and st["state"] in "tT" else 0
        if tracer:
            ts = procfs.task_stat(tracer)
            t["tracer"] = task_entity(tracer, _tgid(tracer), ts["comm"] if ts else "")
        t["doing"] = _doing(t)
        return t

    @staticmethod
    def _finding(t: dict[str, Any] | None) -> dict[str, Any]:
        if t is None:
            return Finding.empty(task=task_entity(0, 0, ""), dominant="", dominant_pct=0.0, doing="",
                                 pct={s: 0.0 for s in (*STATES, "reclaim")}, observed_ms=0.0,
                                 longest={"state": "", "ms": 0.0, "ongoing": False, "kernel_stack": [],
                                          "user_stack": [], "woken_by": None, "diagnosis": ""},
                                 tracer=task_entity(0, 0, "")).to_dict()
        tasks = [Task(t["tid"], t["pid"], t["comm"], "victim", prio=t.get("prio"), policy=t.get("policy"),
                      state=t["state"])]
        if t["tracer"]["tid"]:
            tasks.append(Task.of(t["tracer"], "culprit"))
        details = {k: v for k, v in t.items() if k not in ("tid", "pid", "comm", "prio", "rt_priority", "policy",
                                                             "investigator")}
        return Finding(tasks=tasks, stack=t["longest"]["kernel_stack"],
                       details={"task": task_entity(t["tid"], t["pid"], t["comm"], t.get("prio")), **details}).to_dict()


def _doing(t: dict[str, Any]) -> str:
    """Where a task's window went, in words: its main state and share, what its longest
    stretch away from the CPU was."""
    d = t["dominant"]
    text = f"{WORDS[d]} {t['pct'][d]}% of the {t['observed_ms']:.0f} ms observed"
    if t["state"] == "gone":
        text += ", then exited"
    if d == "running" and "user_ms" in t:
        text += f" ({t['user_ms']:.0f} ms in user space, {t['sys_ms']:.0f} ms in the kernel)"
    if t["reclaim_ms"] >= 1.0:
        text += f", {t['reclaim_ms']:.0f} ms of it in memory reclaim"
    if t["tracer"]["tid"]:
        text += f", traced by {t['tracer']['comm']} (tid {t['tracer']['tid']})"
    lg = t["longest"]
    if d != "running" and lg["ms"] and lg["diagnosis"]:
        text += f"; its longest stretch off the CPU, {lg['ms']:.0f} ms{' and going on' if lg['ongoing'] else ''}: " \
                f"{lg['diagnosis']}"
    return text
