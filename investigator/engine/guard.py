"""The overhead guard: every probe counts its events in the kernel (``probe_stats``); the
guard samples the counters while nodes observe and detaches a probe whose cost goes over
budget -- its maps stay readable, so its nodes conclude on what it gathered -- and the run
goes on.  What it did is in the event log and in each affected node's report.

Budgets:
- per probe, an event rate (manifest ``budget.events_per_s``);
- per run, the estimated CPU time of all probes as a share of the machine
  (``--max-overhead``, percent), from each probe's measured cost per event
  (manifest ``budget.cost_ns``, measured with kernel.bpf_stats_enabled on the development
  machine: run_time_ns / run_cnt of each program).

A probe run by a helper process (a bpftrace program) has no in-kernel counters: its cost is
the CPU time of that process and its children (``cpu_seconds()``: its threads' schedstat, to the ns),
sampled the same way and counted against the same run budget; over it, the helper is
stopped (its ``detach_for_guard``).  The cost of its BPF programs runs in the traced
tasks' context and is not seen there.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from ..probes.instance import ProbeInstance

DEFAULT_MAX_OVERHEAD_PERCENT = 5.0
INTERVAL_S = 0.5


@dataclass
class _Sample:
    t: float
    count: float          # events, or CPU seconds of a helper process


@dataclass
class OverheadGuard:
    max_overhead_percent: float = DEFAULT_MAX_OVERHEAD_PERCENT
    ncpu: int = field(default_factory=lambda: os.cpu_count() or 1)
    last: dict[int, _Sample] = field(default_factory=dict)
    tripped: list[dict[str, Any]] = field(default_factory=list)
    next_check: float = 0.0

    def check(self, instances: list[ProbeInstance], emit: Any) -> None:
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + INTERVAL_S
        costs: list[tuple[float, ProbeInstance, float]] = []
        for inst in instances:
            helper = getattr(inst, "cpu_seconds", None)
            if inst.guard or (helper is None and inst.obj is None):
                continue
            if helper is not None:
                used = helper()
                prev = self.last.get(id(inst))
                if used is None:
                    continue
                self.last[id(inst)] = _Sample(now, used)
                if prev is not None and now - prev.t >= 0.05:
                    costs.append(((used - prev.count) / (now - prev.t) / self.ncpu * 100, inst, 0.0))
                continue
            # a snapshot probe costs only when it runs its iterator (twice per window,
            # bounded by the number of tasks); detaching it would lose the closing snapshot
            if inst.manifest.mode == "snapshot":
                continue
            ev = inst.stats()["events"]
            prev = self.last.get(id(inst))
            self.last[id(inst)] = _Sample(now, ev)
            if prev is None or now - prev.t < 0.05:
                continue
            rate = (ev - prev.count) / (now - prev.t)
            budget = inst.manifest.budget
            if rate > budget.events_per_s:
                self._trip(inst, emit, rate, f"{rate:,.0f} events/s over the probe's budget of "
                                              f"{budget.events_per_s:,.0f}/s")
                continue
            costs.append((rate * budget.cost_ns / 1e9 / self.ncpu * 100, inst, rate))
        total = sum(c for c, _, _ in costs)
        while costs and total > self.max_overhead_percent:
            costs.sort(key=lambda c: c[0])
            pct, inst, rate = costs.pop()
            own = "its process's CPU time" if getattr(inst, "cpu_seconds", None) else "estimated"
            self._trip(inst, emit, rate, f"estimated {total:.3g}% of the machine's CPU over the run's budget "
                                         f"of {self.max_overhead_percent}% (this probe: {pct:.3g}%, {own})")
            total -= pct

    def _trip(self, inst: ProbeInstance, emit: Any, rate: float, why: str) -> None:
        inst.detach_for_guard({"rate_per_s": round(rate), "reason": why})
        rec = {"probe": inst.name, "rate_per_s": round(rate), "reason": why}
        self.tripped.append(rec)
        emit("overhead_guard", **rec)
