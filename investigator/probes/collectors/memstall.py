"""Evidence of ``mem.stall`` (probes/memstall.bpf.c): the share of the window each task lost
to memory -- reclaim, compaction and stall sleeps (refaults, swap-in, memory.high
throttling) -- and the pages each allocated, joined with the memory cgroups whose limits
they live under (investigator/system/cgroups.py) and the machine's own counters
(/proc/vmstat, /proc/meminfo).

The stalled tasks are grouped by where their memory ran out: the nearest memory cgroup
above them with a limit that was reached during the window (memory.events max or high on
v2, memory.failcnt on v1), else the whole machine.  ``worst`` is the group with the most
stalled time: its victims (the tasks that lost ``min_share`` of the window or more), its
limit and what hitting it did, and its culprit -- the task that allocated the most pages in
it, when it allocated at least twice as many as any victim other than itself.
"""

from __future__ import annotations

import ctypes as C
import time
from typing import Any

from ...system import cgroups, procfs
from ._common import MmStall, ProbeCollector, cstr, ms, task_entity

TOP = 20                # tasks reported
TOP_VICTIMS = 16        # victims named per group
READ_CGROUPS = 256      # tasks whose cgroups are read from /proc (the top stalled and allocators)
MIB = 1 << 20
PAGE = 4096
u32, u64 = C.c_uint32, C.c_uint64
VMSTAT = ("allocstall", "pgscan_direct", "pgscan_kswapd", "pgsteal_direct", "pgsteal_kswapd",
          "workingset_refault_anon", "workingset_refault_file", "pgmajfault", "compact_stall", "oom_kill")
NOBODY = {"tid": 0, "pid": 0, "comm": "", "stall_ms": 0.0, "stall_pct": 0.0, "alloc_mib": 0.0}


class MemstallTask(C.Structure):
    _fields_ = [("mm", MmStall), ("sleep_ns", u64), ("sleep_since", u64), ("alloc_pages", u64), ("reclaimed_pages", u64),
                ("reclaims", u32), ("compactions", u32), ("sleeps", u32), ("tgid", u32),
                ("kthread", u32), ("pad", u32), ("comm", C.c_char * 16)]


class MemstallAllocRun(C.Structure):
    _fields_ = [("tid", u32), ("pad", u32), ("pages", u64)]


LAYOUTS = {"memstall_task": MemstallTask, "mm_stall": MmStall, "memstall_alloc_run": MemstallAllocRun}


def _unflushed(inst: Any) -> dict[int, int]:
    """Pages allocated by the task each CPU last saw allocating, not yet in its entry (a
    task's burst is added when another task allocates there or when it leaves the CPU)."""
    runs = inst.obj.maps.get("alloc_runs")
    vals = runs.lookup(0) if runs is not None else None
    out: dict[int, int] = {}
    for v in vals if isinstance(vals, list) else []:
        r = MemstallAllocRun.from_buffer_copy(v)
        if r.tid and r.pages:
            out[r.tid] = out.get(r.tid, 0) + r.pages
    return out


def _vmstat() -> dict[str, int]:
    v = procfs.counters("/proc/vmstat")
    out = {k: v.get(k, 0) for k in VMSTAT}
    # per zone on most kernels (allocstall_normal, _movable, ...); one counter before 4.10
    out["allocstall"] = sum(n for k, n in v.items() if k.startswith("allocstall"))
    return out


def _mib(n: int) -> float:
    return round(n / MIB, 1)


class Collector(ProbeCollector):
    def start(self, inst: Any) -> None:
        self.t0 = time.monotonic_ns()
        self.vm0 = _vmstat()
        self.kswapd0 = {t: procfs.schedstat(t) for t in procfs.kthreads("kswapd")}
        self.stopped: list[str] = []
        # the memory cgroups with a limit, read now and again at the end
        self.roots = {True: cgroups.v2_roots(), False: cgroups.v1_roots("memory")}
        seconds = min(2.0, inst.values.get("scan_time", 5 * 10**8) / 1e9)
        limit = int(inst.values.get("max_cgroups", 2000))
        end = time.monotonic() + seconds
        self.limited: dict[tuple[bool, str], tuple[str, cgroups.Memory]] = {}
        for v2, roots in self.roots.items():
            walk = cgroups.Walk(roots, limit=limit, seconds=seconds)
            for d in walk.run():
                if time.monotonic() > end:
                    self.stopped.append(f"reading the memory cgroups took over {seconds:g} s")
                    break
                m = cgroups.memory(d, v2)
                if m is not None and (m.limit or m.high):
                    self.limited[(v2, cgroups.rel(d, roots))] = (d, m)
            if walk.stopped:
                self.stopped.append(f"the cgroup walk stopped at {walk.stopped}")

    def _group(self, paths: dict[str, str]) -> tuple[bool, str] | None:
        """The nearest limited memory cgroup at or above a task's (its v1 memory
        hierarchy's, else its v2 cgroup)."""
        v2, chain = cgroups.ancestry(paths, "memory")
        return next(((v2, p) for p in chain if (v2, p) in self.limited), None)

    def finish(self, inst: Any) -> dict[str, Any]:
        now = inst.observed_until_ns()
        window = max(1, now - self.t0)
        min_share = float(inst.values.get("min_share", 10))
        vm = {k: n - self.vm0.get(k, 0) for k, n in _vmstat().items()}
        mem = procfs.counters("/proc/meminfo")
        kswapd_ns = sum(max(0, (a or (0, 0))[0] - (self.kswapd0.get(t) or (0, 0))[0])
                        for t in self.kswapd0 for a in [procfs.schedstat(t)])
        rows = []
        pending = _unflushed(inst)
        for k, v in inst.obj.maps["tasks"].lookup_batch(limit=10240):
            r = MemstallTask.from_buffer_copy(v)
            tid = int.from_bytes(k[:4], "little")
            r.alloc_pages += pending.get(tid, 0)
            reclaim, compact = r.mm.upto(now)
            sleep = r.sleep_ns + (now - r.sleep_since if 0 < r.sleep_since < now else 0)
            stall = min(window, reclaim + compact + sleep)
            t = {**task_entity(tid, r.tgid or tid, cstr(r.comm)),
                 "stall_ms": ms(stall), "stall_pct": round(100.0 * stall / window, 1),
                 "reclaim_ms": ms(reclaim), "compaction_ms": ms(compact), "stall_sleep_ms": ms(sleep),
                 "reclaims": r.reclaims, "compactions": r.compactions, "stall_sleeps": r.sleeps,
                 "reclaimed_mib": _mib(r.reclaimed_pages * PAGE), "alloc_mib": _mib(r.alloc_pages * PAGE),
                 "kthread": bool(r.kthread)}
            rows.append((stall, r.alloc_pages, t))
        stalled = [t for s, _, t in sorted(rows, key=lambda x: (-x[0], x[2]["tid"]))
                   if t["stall_pct"] >= min_share and not t.get("investigator") and not t["kthread"]]
        allocators = [(a, t) for _, a, t in sorted(rows, key=lambda x: (-x[1], x[2]["tid"])) if a and not t["kthread"]]
        # where each named task's memory is limited: read for the top stalled and allocators
        group_of: dict[int, tuple[bool, str] | None] = {}
        for t in [*stalled, *(t for _, t in allocators)][:READ_CGROUPS]:
            if t["tid"] not in group_of:
                paths = cgroups.task_paths(t["tid"])
                t["cgroup"] = paths.get("memory", paths.get("", ""))
                group_of[t["tid"]] = self._group(paths) if paths else None
        groups: dict[Any, list[dict[str, Any]]] = {}
        for t in stalled:
            groups.setdefault(group_of.get(t["tid"]), []).append(t)
        scopes = [self._scope(key, victims, allocators, group_of, vm, mem) for key, victims in groups.items()]
        scopes.sort(key=lambda s: (-s["stall_ms"], s["path"]))
        tasks = [t for _, _, t in sorted(rows, key=lambda x: (-x[0], -x[1], x[2]["tid"]))[:TOP]]
        return {
            "window_ms": ms(window),
            "tasks_count": len(rows),
            "stalled_count": len(stalled),
            "tasks": tasks,
            "scopes": scopes[:8],
            "worst": scopes[0] if scopes else self._none(vm, mem),
            "system": {**self._system(vm, mem, kswapd_ns), "kswapd_wakes": inst.obj.read_global("kswapd_wakes")},
            "limited_count": len(self.limited),
            "memstall_traced": any("switch" in link for link in inst.links),
            "partial": bool(self.stopped),
            "partial_reason": "; ".join(self.stopped),
        }

    def _system(self, vm: dict[str, int], mem: dict[str, int], kswapd_ns: int) -> dict[str, Any]:
        return {"available_mib": _mib(mem.get("MemAvailable", 0) * 1024), "total_mib": _mib(mem.get("MemTotal", 0) * 1024),
                "direct_reclaims": vm["allocstall"], "scanned_direct": vm["pgscan_direct"],
                "scanned_kswapd": vm["pgscan_kswapd"], "reclaimed": vm["pgsteal_direct"] + vm["pgsteal_kswapd"],
                "refaults": vm["workingset_refault_anon"] + vm["workingset_refault_file"],
                "majfaults": vm["pgmajfault"], "compaction_stalls": vm["compact_stall"], "oom_kills": vm["oom_kill"],
                "kswapd_cpu_ms": ms(kswapd_ns)}

    def _scope(self, key: tuple[bool, str] | None, victims: list[dict[str, Any]],
               allocators: list[tuple[int, dict[str, Any]]], group_of: dict[int, Any],
               vm: dict[str, int], mem: dict[str, int]) -> dict[str, Any]:
        """One group of stalled tasks: its limit (or the machine), victims and culprit."""
        inside = [(a, t) for a, t in allocators if t["tid"] in group_of and group_of[t["tid"]] == key]
        culprit = dict(NOBODY)
        if inside:
            a, top = inside[0]
            others = [x for x, t in inside[1:] if any(v["tid"] == t["tid"] for v in victims)]
            if any(v["tid"] != top["tid"] for v in victims) and a >= 2 * max(others, default=0):
                culprit = top
        named = [v for v in victims if v["tid"] != culprit["tid"]]
        roles = ([{**culprit, "role": "culprit"}] if culprit["tid"] else []) + \
            [{**v, "role": "victim"} for v in named[:TOP_VICTIMS]]
        out: dict[str, Any] = {
            "victim": named[0], "culprit": culprit, "victims": named[:TOP_VICTIMS], "victims_count": len(named),
            "stall_ms": round(sum(v["stall_ms"] for v in named), 3), "tasks": roles,
            "alloc_mib": round(sum(t["alloc_mib"] for _, t in inside), 1)}
        if key is None:
            avail, total = _mib(mem.get("MemAvailable", 0) * 1024), _mib(mem.get("MemTotal", 0) * 1024)
            return {**out, "scope": "system", "path": "", "cgroup_version": 0, "cgroups": [],
                    "limit_mib": total, "high_mib": 0.0, "usage_mib": round(total - avail, 1),
                    "limit_hits": vm["allocstall"], "high_hits": 0, "oom_kills": vm["oom_kill"],
                    "refaults": vm["workingset_refault_anon"] + vm["workingset_refault_file"],
                    "majfaults": vm["pgmajfault"],
                    "cause": f"the whole machine: {avail:g} MiB of its {total:g} MiB available, "
                             f"{vm['allocstall']} direct reclaim(s) during the window"}
        v2, path = key
        folder, m0 = self.limited[key]
        m1 = cgroups.memory(folder, v2) or m0
        hits, high = m1.limit_hits - m0.limit_hits, m1.high_hits - m0.high_hits
        which = f"memory.max of {_mib(m1.limit):g} MiB" if v2 and m1.limit else \
            f"memory.high of {_mib(m1.high):g} MiB" if v2 else f"memory.limit_in_bytes of {_mib(m1.limit):g} MiB"
        # v1 with memory+swap limited as well counts no failed charge at all (6.18): the
        # usage against the limit tells then
        lim = m1.limit or m1.high
        reached = f"reached {hits} time(s) during the window" if hits else \
            f"memory.high exceeded {high} time(s) during the window" if high else \
            f"its usage at {100 * m1.usage // max(1, lim)}% of it at the window's end"
        for r in out["tasks"]:
            r.setdefault("cgroup", path)
        return {**out, "scope": "cgroup", "path": path, "cgroup_version": 2 if v2 else 1, "cgroups": [path],
                "limit_mib": _mib(m1.limit), "high_mib": _mib(m1.high), "usage_mib": _mib(m1.usage),
                "limit_hits": hits, "high_hits": high, "oom_kills": m1.oom_kills - m0.oom_kills,
                "refaults": m1.refaults - m0.refaults, "majfaults": m1.majfaults - m0.majfaults,
                "cause": f"cgroup {path} at its {which} ({_mib(m1.usage):g} MiB used), {reached}, "
                         f"{m1.refaults - m0.refaults} refault(s)"}

    def _none(self, vm: dict[str, int], mem: dict[str, int]) -> dict[str, Any]:
        return {"victim": dict(NOBODY), "culprit": dict(NOBODY), "victims": [], "victims_count": 0, "stall_ms": 0.0,
                "tasks": [], "alloc_mib": 0.0, "scope": "", "path": "", "cgroup_version": 0, "cgroups": [],
                "limit_mib": 0.0, "high_mib": 0.0, "usage_mib": 0.0, "limit_hits": 0, "high_hits": 0,
                "oom_kills": 0, "refaults": 0, "majfaults": 0, "cause": ""}
