"""kernel.reports: what the kernel itself reported about a freeze (investigator/system/kmsg.py),
from ``since`` before the window opened to its end."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from ...system import kmsg
from ._common import ProbeCollector

KEEP = 64               # reports kept, the latest
TOP = 20                # tasks named by the reports, kept in ``tasks``
STALLS = ("rcu-stall", "soft-lockup", "hard-lockup", "workqueue-lockup")


class Collector(ProbeCollector):
    def start(self, inst: Any) -> None:
        self.fd = kmsg.open_kmsg()
        self.t0_us = kmsg.now_us()
        since_us = inst.values.get("since", 300 * 10**9) // 1000
        self.reader = kmsg.Reader(self.fd)
        # the records already in the ring buffer: only the recent ones are kept; the
        # reports are told apart at the end, over the records in order
        self.records = [r for r in self.reader.read() if r.ts_us >= self.t0_us - since_us]
        self.capped_at_start = self.reader.capped
        self.since_s = since_us / 1e6

    def finish(self, inst: Any) -> dict[str, Any]:
        try:
            self.records += self.reader.read()
        finally:
            os.close(self.fd)
        reps = kmsg.reports(self.records)
        kinds = Counter(r.kind for r in reps)
        ev = [r.evidence(self.t0_us) for r in reps[-KEEP:]]
        tasks: dict[int, dict[str, Any]] = {}
        for r in reversed(ev):
            for t in r["tasks"]:
                if t["tid"] and t["tid"] not in tasks and len(tasks) < TOP:
                    tasks[t["tid"]] = {**t, "report": r["kind"]}
        hung = [r for r in ev if r["kind"] == "hung-task"]
        stalls = [r for r in ev if r["kind"] in STALLS]
        ooms = [r for r in ev if r["kind"] in ("oom-kill", "oom")]
        return {
            "count": len(reps),
            "kinds": dict(sorted(kinds.items())),
            "hung_count": kinds["hung-task"],
            "stall_count": sum(kinds[k] for k in STALLS),
            "oom_count": kinds["oom-kill"] + kinds["oom"],
            "rt_throttling": kinds["rt-throttling"] > 0,
            "reports": ev,
            "latest": ev[-1] if ev else _none(),
            "hung": hung[-TOP:],
            "stalls": stalls[-TOP:],
            # the latest RCU stall or lockup: the kernel's own word that a CPU made no progress
            "worst_stall": {**stalls[-1], "kernel_report": True} if stalls else {**_none(), "kernel_report": True},
            "ooms": ooms[-TOP:],
            "tasks": list(tasks.values()),
            "since_s": self.since_s,
            "records": len(self.records),
            "lost": self.reader.lost,
            "partial": self.capped_at_start or self.reader.capped or self.reader.lost > 0,
        }


def _none() -> dict[str, Any]:
    return {"kind": "", "seq": -1, "at_s": 0.0, "text": "", "cpu": -1, "cpus": [], "task": None, "blocker": None,
            "seconds": 0, "cgroup": "", "stack": [], "tasks": []}
