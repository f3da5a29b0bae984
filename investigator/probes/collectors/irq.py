"""Evidence of ``irq.time`` (probes/irq.bpf.c): hard IRQ and softirq time per CPU, line and
vector, and the tasks in whose context softirqs ran (charged for them)."""

from __future__ import annotations

import ctypes as C
from typing import Any

from ...finding import Finding, Task
from ._common import ProbeCollector, cstr, kernel_stack, ms, task_entity

VECTORS = ("HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU")
TOP = 20
OWN_RAISES_PCT = 10     # the own_raises_pct parameter's default (probes/irq.yaml)
u32, s32, u64 = C.c_uint32, C.c_int32, C.c_uint64


class IrqStat(C.Structure):
    _fields_ = [("count", u64), ("total_ns", u64), ("max_ns", u64), ("pad", u64)]


class ChargeKey(C.Structure):
    _fields_ = [("tid", u32), ("vec", u32)]


class Charge(C.Structure):
    _fields_ = [("count", u64), ("total_ns", u64), ("tgid", u32), ("cpu", u32), ("kthread", u32), ("pad", u32),
                ("comm", C.c_char * 16)]


class RaiseKey(C.Structure):
    _fields_ = [("tid", u32), ("vec", u32), ("stack_id", s32), ("pad", u32)]


class HirqStat(C.Structure):
    _fields_ = [("count", u64), ("total_ns", u64), ("max_ns", u64), ("name", C.c_char * 24)]


LAYOUTS = {"irq_stat": IrqStat, "charge_key": ChargeKey, "charge": Charge, "hirq_stat": HirqStat,
           "raise_key": RaiseKey}

# A raise whose kernel stack passes through one of these came from an interrupt (IRQ, IPI,
# timer tick) or a softirq, not from the task that happened to be current.
IRQ_FRAMES = ("sysvec_", "asm_sysvec_", "common_interrupt", "asm_common_interrupt", "irq_exit",
              "__irq_exit_rcu", "handle_softirqs", "__do_softirq", "do_softirq", "run_ksoftirqd",
              "handle_irq_event", "__handle_irq_event_percpu", "generic_smp_call_function",
              "__flush_smp_call_function_queue", "hrtimer_interrupt", "__hrtimer_run_queues",
              "tick_handle_periodic", "update_process_times", "el1_interrupt", "el0_interrupt",
              "gic_handle_irq", "net_rx_action")


def from_interrupt(frames: list[str]) -> bool:
    return any(f.startswith(IRQ_FRAMES) for f in frames)


# The frames of a raise stack that say nothing of who raised it: the raise itself and the
# tracing of it.
RAISE_FRAMES = ("raise_softirq", "__raise_softirq", "trace_softirq_raise", "__traceiter_", "bpf_",
                "__bpf_", "perf_", "stack_trace", "arch_stack")


def raised_by(frames: list[str], depth: int = 4) -> list[str]:
    """What raised a softirq, from its raise stack: the first ``depth`` frames below the
    raise (the driver's completion, the IPI that steered a packet, the timer), innermost
    first."""
    return [f for f in frames if not f.startswith(RAISE_FRAMES)][:depth]


def context_of(tid: int, comm: str, kthread: bool) -> str:
    """Whose time a softirq took: the idle task's (free), ksoftirqd's (deferred, accounted
    as such), or a task's it interrupted (charged to it)."""
    if tid == 0:
        return "idle"
    if comm.startswith("ksoftirqd/"):
        return "ksoftirqd"
    return "kthread" if kthread else "task"


class Collector(ProbeCollector):

    def finish(self, inst: Any) -> dict[str, Any]:
        maps = inst.obj.maps
        # shares are of the time the probe observed (the overhead guard may detach it early)
        window_ns = max(1, int(inst.observed_s() * 1e9))
        per_cpu: dict[int, dict[str, Any]] = {}
        softirqs = []
        for vec in range(len(VECTORS)):
            vals = maps["softirqs"].lookup(vec) or []
            for cpu, raw in enumerate(vals if isinstance(vals, list) else [vals]):
                s = IrqStat.from_buffer_copy(raw)
                if not s.count:
                    continue
                softirqs.append({"vector": VECTORS[vec], "cpu": cpu, "count": s.count,
                                 "total_ms": ms(s.total_ns), "max_us": round(s.max_ns / 1e3, 3)})
                c = per_cpu.setdefault(cpu, {"softirq_ns": 0, "hardirq_ns": 0, "by_vec": {}})
                c["softirq_ns"] += s.total_ns
                c["by_vec"][VECTORS[vec]] = c["by_vec"].get(VECTORS[vec], 0) + s.total_ns
        hardirqs = []
        for k, vals in maps["hardirqs"].iter_items(limit=256):
            irq = int.from_bytes(k, "little", signed=True)
            for cpu, raw in enumerate(vals if isinstance(vals, list) else [vals]):
                h = HirqStat.from_buffer_copy(raw)
                if not h.count:
                    continue
                hardirqs.append({"irq": irq, "name": cstr(h.name), "cpu": cpu, "count": h.count,
                                 "total_ms": ms(h.total_ns), "max_us": round(h.max_ns / 1e3, 3)})
                per_cpu.setdefault(cpu, {"softirq_ns": 0, "hardirq_ns": 0, "by_vec": {}})["hardirq_ns"] += h.total_ns
        softirqs.sort(key=lambda s: -s["total_ms"])
        hardirqs.sort(key=lambda h: -h["total_ms"])
        charged = []
        for k, v in maps["charged"].lookup_batch(limit=4096):
            key, c = ChargeKey.from_buffer_copy(k), Charge.from_buffer_copy(v)
            comm = cstr(c.comm)
            vec = key.vec & 0xFFFF
            who = task_entity(key.tid, c.tgid, comm)
            charged.append({**who, "vector": VECTORS[vec] if vec < 10 else str(vec),
                            "cpu": c.cpu, "count": c.count, "charged_ms": ms(c.total_ns), "_vec": vec,
                            "share_pct": round(100 * c.total_ns / window_ns, 2),
                            # the investigation's own threads: its BPF work frees through RCU,
                            # which is no one else's work done in the wrong context
                            "context": "investigator" if who.get("investigator") else
                                       context_of(key.tid, comm, bool(c.kthread))})
        # who raised what: per (task, vector), raises of its own vs from interrupts
        # (a raise whose stack the stack map refused -- its hash bucket held another stack --
        # is unknown, and a task is never called foreign on raises of unknown origin)
        origin: dict[tuple[int, int], list[int]] = {}
        kinds: dict[int, int] = {}
        stacks: dict[int, list[str]] = {}
        by_stack: dict[tuple[int, int], dict[int, int]] = {}     # interrupt raises per stack
        for k, v in maps["raises"].lookup_batch(limit=4096):
            rk = RaiseKey.from_buffer_copy(k)
            if rk.stack_id not in kinds:
                stacks[rk.stack_id] = [f.split("+")[0] for f in kernel_stack(maps["raise_stacks"], rk.stack_id, depth=16)]
                kinds[rk.stack_id] = (1 if from_interrupt(stacks[rk.stack_id]) else 0) if stacks[rk.stack_id] else 2
            o = origin.setdefault((rk.tid, rk.vec), [0, 0, 0])
            n = int.from_bytes(v, "little")
            o[kinds[rk.stack_id]] += n
            if kinds[rk.stack_id] == 1:
                per = by_stack.setdefault((rk.tid, rk.vec), {})
                per[rk.stack_id] = per.get(rk.stack_id, 0) + n
        for c in charged:
            key = (c["tid"], c.pop("_vec"))
            c["raised_self"], c["raised_irq"], c["raised_unknown"] = origin.get(key, [0, 0, 0])
            per = by_stack.get(key) or {}
            top = max(per.items(), key=lambda kv: kv[1], default=(None, 0))[0]
            c["raised_by"] = raised_by(stacks.get(top, [])) if top is not None else []
        charged.sort(key=lambda c: -c["charged_ms"])
        cpus = []
        for cpu, c in sorted(per_cpu.items()):
            top = max(c["by_vec"].items(), key=lambda kv: kv[1], default=("", 0))
            cpus.append({"cpu": cpu, "softirq_ms": ms(c["softirq_ns"]), "hardirq_ms": ms(c["hardirq_ns"]),
                         "share_pct": round(100 * (c["softirq_ns"] + c["hardirq_ns"]) / window_ns, 2),
                         "top_vector": top[0], "top_vector_ms": ms(top[1])})
        worst_cpu = Finding.empty(cpu=-1, softirq_ms=0.0, hardirq_ms=0.0, share_pct=0.0, top_vector="",
                                  top_vector_ms=0.0)
        if cpus:
            w = max(cpus, key=lambda c: c["share_pct"])
            tasks = [Task(c["tid"], c["pid"], c["comm"], "bystander" if c["context"] != "task" else "victim",
                          extra={"charged_ms": c["charged_ms"]}) for c in charged if c["cpu"] == w["cpu"]][:5]
            worst_cpu = Finding(tasks=tasks, cpus=[w["cpu"]], details=w)
        in_tasks = [c for c in charged if c["context"] == "task"]
        # someone else's work: the task itself raised under own_raises_pct of the softirqs it ran
        own_pct = inst.values.get("own_raises_pct", OWN_RAISES_PCT)
        foreign = [c for c in in_tasks if (c["raised_self"] + c["raised_unknown"]) * 100 < own_pct * c["count"]]
        worst_charged = Finding.empty(**task_entity(0, 0, ""), vector="", cpu=-1, count=0, charged_ms=0.0,
                                      share_pct=0.0, raised_self=0, raised_irq=0, raised_unknown=0, context="",
                                      raised_by=[], raised_from="")
        if foreign:
            w = foreign[0]
            w["raised_from"] = " < ".join(w["raised_by"]) or "an interrupt whose stack was not kept"
            worst_charged = Finding(tasks=[Task.of(w, "victim")], cpus=[w["cpu"]], details=w)
        return {
            "softirq_ms": ms(sum(c["softirq_ns"] for c in per_cpu.values())),
            "hardirq_ms": ms(sum(c["hardirq_ns"] for c in per_cpu.values())),
            "cpus": cpus,
            "worst_cpu": worst_cpu.to_dict(),
            "softirqs": softirqs[:TOP],
            "hardirqs": hardirqs[:TOP],
            "charged": charged[:TOP],
            "charged_to_tasks_ms": round(sum(c["charged_ms"] for c in in_tasks), 3),
            "foreign_charged_ms": round(sum(c["charged_ms"] for c in foreign), 3),
            "worst_charged": worst_charged.to_dict(),
        }
