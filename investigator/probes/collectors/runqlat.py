"""Evidence of ``sched.runqlat`` (probes/runqlat.bpf.c): run-queue waits per CPU and per
task, and for each task's worst wait, which task held that CPU meanwhile."""

from __future__ import annotations

import ctypes as C
from typing import Any

from ...system import procfs
from ...finding import Finding, Task
from ._common import ProbeCollector, cstr, hist_quantile, log2_hist, ms, task_entity, unpack

HIST_SLOTS = 32
TOP_TASKS = 20
u32, s32, u64 = C.c_uint32, C.c_int32, C.c_uint64


class CpuLat(C.Structure):
    _fields_ = [("slots", u64 * HIST_SLOTS), ("count", u64), ("sum_ns", u64), ("max_ns", u64),
                ("over", u64), ("max_tid", u32), ("pad", u32)]


class Culprit(C.Structure):
    _fields_ = [("overlap_ns", u64), ("tid", u32), ("tgid", u32), ("prio", s32), ("policy", u32),
                ("comm", C.c_char * 16)]


class TaskLat(C.Structure):
    _fields_ = [("count", u64), ("total_ns", u64), ("max_ns", u64), ("over", u64),
                ("max_at_ns", u64), ("tgid", u32), ("max_cpu", u32), ("prio", s32),
                ("policy", u32), ("comm", C.c_char * 16), ("culprit", Culprit)]


LAYOUTS = {"cpu_lat": CpuLat, "culprit": Culprit, "task_lat": TaskLat}
CONSTANTS = {"HIST_SLOTS": HIST_SLOTS}


CULPRIT_PCT = 50    # the culprit_pct parameter's default (probes/runqlat.yaml)


def _finding(w: dict[str, Any] | None) -> dict[str, Any]:
    """A task's worst wait as a finding: victim, culprit, CPU, and the tasks with roles."""
    if w is None:
        return Finding.empty(wait_ms=0.0, cpu=-1, victim={**task_entity(0, 0, "", 0, 0)},
                             culprit={**task_entity(0, 0, "", 0, 0), "held_ms": 0.0, "share": 0.0},
                             count_over=0).to_dict()
    victim = {k: w[k] for k in ("tid", "pid", "comm", "prio", "rt_priority", "policy")}
    tasks = [Task(w["tid"], w["pid"], w["comm"], "victim", prio=w["prio"], policy=w["policy"])]
    if w["culprit"]["tid"]:
        tasks.append(Task.of(w["culprit"], "culprit"))
    return Finding(tasks=tasks, cpus=[w["cpu"]],
                   details={"wait_ms": w["max_ms"], "cpu": w["cpu"], "victim": victim, "culprit": w["culprit"],
                            "count_over": w["over_count"]}).to_dict()


class Collector(ProbeCollector):

    def finish(self, inst: Any) -> dict[str, Any]:
        maps = inst.obj.maps
        per_cpu, merged = [], [0] * HIST_SLOTS
        total = over = sum_ns = max_ns = 0
        for k, v in maps["cpu_hist"].items():
            h = unpack(CpuLat, v)
            if not h.count:
                continue
            cpu = int.from_bytes(k, "little")
            slots = list(h.slots)
            merged = [a + b for a, b in zip(merged, slots)]
            total += h.count
            over += h.over
            sum_ns += h.sum_ns
            max_ns = max(max_ns, h.max_ns)
            per_cpu.append({"cpu": cpu, "count": h.count, "max_ms": ms(h.max_ns),
                            "avg_ms": ms(h.sum_ns // h.count), "over_count": h.over,
                            "max_tid": h.max_tid, "p99_ms": hist_quantile(slots, 0.99) / 1000})
        per_cpu.sort(key=lambda c: c["cpu"])

        tasks = []
        for k, v in maps["task_lat"].items(limit=65536):
            t = unpack(TaskLat, v)
            tid = int.from_bytes(k, "little")
            c = t.culprit
            culprit = task_entity(c.tid, c.tgid if c.tid else 0,
                                  cstr(c.comm) if c.tid else "swapper (idle)", c.prio, c.policy)
            culprit["held_ms"] = ms(c.overlap_ns)
            culprit["share"] = round(c.overlap_ns / t.max_ns, 3) if t.max_ns else 0.0
            if culprit.get("investigator"):
                # the investigation itself (loading probes is verifier work in our own
                # context, long on a slow machine): an observer effect, never the culprit
                culprit["share"] = 0.0
            tasks.append({**task_entity(tid, t.tgid, cstr(t.comm), t.prio, t.policy),
                          "max_ms": ms(t.max_ns), "total_ms": ms(t.total_ns), "count": t.count,
                          "over_count": t.over, "cpu": t.max_cpu, "culprit": culprit,
                          # when the worst wait ended, in seconds since the probe attached
                          # (bpf_ktime_get_ns and time.monotonic share CLOCK_MONOTONIC)
                          "max_ended_s": round(t.max_at_ns / 1e9 - inst.attached_at, 3)})
        # the investigation's own threads are not its subject: on a starved CPU they wait
        # too, and must not hide the task the engineer is looking for
        tasks = [t for t in tasks if not t.get("investigator")]
        tasks.sort(key=lambda t: t["max_ms"], reverse=True)

        # a culprit explains a wait when it held the CPU at least this share of it
        share = inst.values.get("culprit_pct", CULPRIT_PCT) / 100
        attributed = [t for t in tasks if t["culprit"]["tid"] and t["culprit"]["share"] >= share]
        worst = _finding(tasks[0] if tasks else None)
        starved = _finding(attributed[0] if attributed else None)
        by_cpu = []
        for cpu in sorted({t["cpu"] for t in tasks}):
            # per CPU: its longest wait that one culprit explains, else its longest wait
            w = next((t for t in attributed if t["cpu"] == cpu), None) or next(t for t in tasks if t["cpu"] == cpu)
            by_cpu.append(_finding(w))
        return {
            "count": total,
            "by_cpu": by_cpu,
            "max_ms": ms(max_ns),
            "avg_ms": ms(sum_ns // total) if total else 0.0,
            "p99_ms": hist_quantile(merged, 0.99) / 1000,
            "over_count": over,
            "hist_us": log2_hist(merged),
            "per_cpu": per_cpu,
            "tasks": tasks[:TOP_TASKS],
            "tasks_over_min": len(tasks),
            "starts_dropped": inst.obj.read_global("starts_dropped"),
            "worst": worst,
            "starved": starved,
            "rt_throttling": procfs.rt_throttling(),
        }
