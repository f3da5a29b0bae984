"""Evidence of ``sched.hung`` (probes/hung.bpf.c): the tasks the kernel's hung-task detector
reported during the window (sched:sched_process_hang), each with its record: stack, how long
it has not run, and the lock it is blocked on with that lock's owner (6.16+)."""

from __future__ import annotations

from typing import Any

from ...finding import Finding
from .blocked import EMPTY, STACK_DEPTH, BlockedRec, describe, finding
from ._common import ProbeCollector

REPORTS = 64
LAYOUTS = {"blocked_rec": BlockedRec}
CONSTANTS = {"STACK_DEPTH": STACK_DEPTH, "HUNG_REPORTS": REPORTS}


def _timeout() -> int:
    try:
        with open("/proc/sys/kernel/hung_task_timeout_secs") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


class Collector(ProbeCollector):

    def finish(self, inst: Any) -> dict[str, Any]:
        bss = next((m for n, m in inst.obj.maps.items() if n.endswith(".bss")), None)
        seq_raw = bss.lookup(0) if bss is not None else None
        reports: dict[int, dict[str, Any]] = {}
        for _, v in inst.obj.maps["reports"].items(limit=REPORTS):
            r = BlockedRec.from_buffer_copy(v)
            if not r.tid:
                continue
            cur = reports.get(r.tid)
            if cur is None or r.now_ns > cur["_at"]:
                reports[r.tid] = {**describe(r), "reports": (cur or {}).get("reports", 0) + 1, "_at": r.now_ns}
            else:
                cur["reports"] += 1
        tasks = sorted(reports.values(), key=lambda t: -t["blocked_s"])
        for t in tasks:
            t.pop("_at")
        total = int.from_bytes(seq_raw[:8], "little") if isinstance(seq_raw, bytes) else sum(t["reports"] for t in tasks)
        worst = finding(tasks[0]) if tasks else Finding.empty(**EMPTY)
        return {
            "timeout_s": _timeout(),
            "reports": total,
            "tasks_count": len(tasks),
            "tasks": tasks[:20],
            "worst": worst.to_dict(),
        }
