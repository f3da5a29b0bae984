"""system.pressure: the share of the window tasks were stalled on CPU, memory and I/O,
system-wide and per cgroup v2 (investigator/system/psi.py)."""

from __future__ import annotations

import time
from typing import Any

from ...system import cgroups, psi
from ._common import ProbeCollector

TOP = 20


def _read_cgroups(folders: list[str], seconds: float) -> tuple[dict[str, tuple[float, dict[str, Any]]], int]:
    """Each folder's pressure files with the time they were read, within ``seconds``; and how
    many folders were left unread when the time ran out."""
    out: dict[str, tuple[float, dict[str, Any]]] = {}
    end = time.monotonic() + seconds
    for i, d in enumerate(folders):
        if time.monotonic() > end:
            return out, len(folders) - i
        t = time.monotonic()
        v = {r: x for r in psi.RESOURCES for x in [psi.read(f"{d}/{r}.pressure")] if x}
        if v:
            out[d] = (t, v)
    return out, 0


class Collector(ProbeCollector):
    def start(self, inst: Any) -> None:
        why = psi.why_unavailable()
        if why:
            raise OSError(why)
        self.roots = cgroups.v2_roots()
        self.walk = cgroups.Walk(self.roots, limit=inst.values.get("max_cgroups", 2000),
                             seconds=min(2.0, inst.values.get("scan_time", 5 * 10**8) / 1e9))
        self.t0 = time.monotonic()
        self.sys0 = psi.system()
        self.cg0, self.unread0 = _read_cgroups(self.walk.run(), self.walk.seconds)

    def finish(self, inst: Any) -> dict[str, Any]:
        t1 = time.monotonic()
        seconds = max(1e-3, t1 - self.t0)
        sys1 = psi.system()
        out: dict[str, Any] = {}
        for r in psi.RESOURCES:
            a, b = self.sys0.get(r, {}), sys1.get(r, {})
            out[r] = {"some_pct": psi.share(a.get("some"), b.get("some"), seconds),
                      "full_pct": psi.share(a.get("full"), b.get("full"), seconds),
                      "avg10": b["some"].avg10 if "some" in b else 0.0,
                      "full_avg10": b["full"].avg10 if "full" in b else 0.0}
        worst = max(psi.RESOURCES, key=lambda r: (out[r]["some_pct"], out[r]["full_pct"]))
        cg1, unread1 = _read_cgroups(list(self.cg0), self.walk.seconds)
        found = []
        for d, (ta, before) in self.cg0.items():
            if d not in cg1:
                continue
            tb, after = cg1[d]
            span = max(1e-3, tb - ta)          # each cgroup's own pair of reads
            for r, b0 in before.items():
                b1 = after.get(r)
                if not b1:
                    continue
                some, full = psi.share(b0.get("some"), b1.get("some"), span), psi.share(b0.get("full"), b1.get("full"), span)
                if some > 0:
                    found.append({"path": cgroups.rel(d, self.roots), "resource": r, "some_pct": some, "full_pct": full,
                                    "avg10": b1["some"].avg10 if "some" in b1 else 0.0})
        found.sort(key=lambda c: (-c["some_pct"], -c["full_pct"], c["path"]))
        why = [f"the cgroup walk stopped at {self.walk.stopped}"] if self.walk.stopped else []
        why += [f"{n} cgroup(s) left unread at the {which} ({self.walk.seconds:g} s)"
                for n, which in ((self.unread0, "window's start"), (unread1, "window's end")) if n]
        return {
            **out,
            "worst": {"resource": worst, "some_pct": out[worst]["some_pct"], "full_pct": out[worst]["full_pct"]},
            "cgroups": found[:TOP],
            "worst_cgroup": found[0] if found else {"path": "", "resource": "", "some_pct": 0.0, "full_pct": 0.0, "avg10": 0.0},
            "cgroups_count": len(self.cg0),
            "cgroup_psi": bool(self.cg0),
            "partial": bool(why),
            "partial_reason": "; ".join(why),
            "observed_s": round(seconds, 3),
        }

