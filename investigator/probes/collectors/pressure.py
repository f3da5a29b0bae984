"""system.pressure: the share of the window tasks were stalled on CPU, memory and I/O,
system-wide and per cgroup v2 (investigator/system/psi.py)."""

from __future__ import annotations

import os
import time
from typing import Any

from ...system import psi
from ...system.mounts import mounted_types
from ._common import ProbeCollector

TOP = 20


class Collector(ProbeCollector):
    def start(self, inst: Any) -> None:
        why = psi.why_unavailable()
        if why:
            raise OSError(why)
        self.roots = sorted(m for m, t in mounted_types().items() if t == "cgroup2")
        self.walk = psi.Walk(self.roots, limit=inst.values.get("max_cgroups", 2000),
                             seconds=min(2.0, inst.values.get("scan_time", 5 * 10**8) / 1e9))
        self.t0 = time.monotonic()
        self.sys0 = psi.system()
        folders = self.walk.run()
        self.cg0 = {d: {r: v for r in psi.RESOURCES for v in [psi.read(f"{d}/{r}.pressure")] if v} for d in folders}
        self.cg0 = {d: v for d, v in self.cg0.items() if v}

    def finish(self, inst: Any) -> dict[str, Any]:
        seconds = max(1e-3, time.monotonic() - self.t0)
        sys1 = psi.system()
        out: dict[str, Any] = {}
        for r in psi.RESOURCES:
            a, b = self.sys0.get(r, {}), sys1.get(r, {})
            out[r] = {"some_pct": psi.share(a.get("some"), b.get("some"), seconds),
                      "full_pct": psi.share(a.get("full"), b.get("full"), seconds),
                      "avg10": b["some"].avg10 if "some" in b else 0.0,
                      "full_avg10": b["full"].avg10 if "full" in b else 0.0}
        worst = max(psi.RESOURCES, key=lambda r: (out[r]["some_pct"], out[r]["full_pct"]))
        cgroups = []
        deadline = time.monotonic() + self.walk.seconds
        for d, before in self.cg0.items():
            if time.monotonic() > deadline:
                break
            for r, b0 in before.items():
                b1 = psi.read(f"{d}/{r}.pressure")
                if not b1:
                    continue
                some, full = psi.share(b0.get("some"), b1.get("some"), seconds), psi.share(b0.get("full"), b1.get("full"), seconds)
                if some > 0:
                    cgroups.append({"path": _rel(d, self.roots), "resource": r, "some_pct": some, "full_pct": full,
                                    "avg10": b1["some"].avg10 if "some" in b1 else 0.0})
        cgroups.sort(key=lambda c: (-c["some_pct"], -c["full_pct"], c["path"]))
        return {
            **out,
            "worst": {"resource": worst, "some_pct": out[worst]["some_pct"], "full_pct": out[worst]["full_pct"]},
            "cgroups": cgroups[:TOP],
            "worst_cgroup": cgroups[0] if cgroups else {"path": "", "resource": "", "some_pct": 0.0, "full_pct": 0.0, "avg10": 0.0},
            "cgroups_count": len(self.cg0),
            "cgroup_psi": bool(self.cg0),
            "partial": bool(self.walk.stopped),
            "partial_reason": f"the cgroup walk stopped at {self.walk.stopped}" if self.walk.stopped else "",
            "observed_s": round(seconds, 3),
        }


def _rel(d: str, roots: list[str]) -> str:
    """A cgroup folder as the kernel names the cgroup (/proc/PID/cgroup's "0::/a/b")."""
    for r in roots:
        if d.startswith(r.rstrip("/") + "/"):
            return "/" + os.path.relpath(d, r)
    return d
