"""Evidence of ``mem.alloc`` (probes/mem.bpf.c): failed kmalloc()s by call site and task,
their rate over time, and allocations made during the window and not freed, per call site."""

from __future__ import annotations

import ctypes as C
import time
from typing import Any

from ...system.kallsyms import kallsyms
from ...finding import Finding, Task
from ._common import ProbeCollector, cstr, task_entity

TOP = 20
SLOTS = 64
u32, u64 = C.c_uint32, C.c_uint64
GFP_BITS = {0x400: "__GFP_DIRECT_RECLAIM", 0x800: "__GFP_KSWAPD_RECLAIM", 0x40: "__GFP_IO",
            0x80: "__GFP_FS", 0x2000: "__GFP_NOWARN", 0x20: "__GFP_HIGH"}


class MemLive(C.Structure):
    _fields_ = [("call_site", u64), ("ts", u64), ("bytes", u32), ("pad", u32)]


class MemSite(C.Structure):
    _fields_ = [("allocs", u64), ("frees", u64), ("failures", u64), ("bytes_out", u64), ("last_fail_ns", u64),
                ("fail_bytes", u64), ("fail_tid", u32), ("fail_tgid", u32), ("fail_gfp", u32), ("pad", u32),
                ("fail_comm", C.c_char * 16), ("pad2", u64 * 2)]


LAYOUTS = {"mem_live": MemLive, "mem_site": MemSite}


class Collector(ProbeCollector):

    def finish(self, inst: Any) -> dict[str, Any]:
        maps = inst.obj.maps
        ks = kallsyms()
        now = time.monotonic_ns()
        bucket_ms = inst.values.get("rate_bucket", 100_000_000) / 1e6
        sites = {}
        for k, v in maps["sites"].lookup_batch(limit=4096):
            sites[int.from_bytes(k, "little")] = MemSite.from_buffer_copy(v)
        live_n: dict[int, int] = {}
        oldest: dict[int, int] = {}
        for _, v in maps["live"].lookup_batch(limit=65536):
            lv = MemLive.from_buffer_copy(v)
            live_n[lv.call_site] = live_n.get(lv.call_site, 0) + 1
            oldest[lv.call_site] = min(oldest.get(lv.call_site, lv.ts), lv.ts)
        failures, outstanding = [], []
        for addr, s in sites.items():
            name = ks.name(addr) if ks.readable else hex(addr)
            if s.failures and s.failures < 1 << 63:
                failures.append({"site": name, "count": s.failures, "bytes": s.fail_bytes,
                                 "gfp": hex(s.fail_gfp), "ago_s": round((now - s.last_fail_ns) / 1e9, 3),
                                 "task": task_entity(s.fail_tid, s.fail_tgid, cstr(s.fail_comm))})
            if live_n.get(addr):
                outstanding.append({"site": name, "count": live_n[addr], "bytes": int(s.bytes_out),
                                    "allocs": s.allocs, "frees": s.frees,
                                    "oldest_s": round((now - oldest[addr]) / 1e9, 3)})
        failures.sort(key=lambda f: -f["count"])
        outstanding.sort(key=lambda o: -o["bytes"])
        rate = []
        for i in range(SLOTS):
            raw = maps["fail_rate"].lookup(i)
            rate.append(int.from_bytes(raw, "little") if isinstance(raw, bytes) else 0)
        # The last slot takes every failure after the series' span (SLOTS - 1 buckets from
        # the first event): it is a count, not a bucket, so no peak is read from it.
        after_series = rate.pop()
        while rate and not rate[-1]:
            rate.pop()
        worst = Finding.empty(site="", count=0, bytes=0, gfp="", ago_s=0.0, task=task_entity(0, 0, ""))
        if failures:
            worst = Finding(tasks=[Task.of(failures[0]["task"], "victim")], details=failures[0])
        observed = max(1e-3, inst.observed_s())
        # The total from the rate series: it holds every failure since attach (its last slot
        # takes the overflow), and one read of it is consistent with itself -- a failure
        # landing between the reads of the sites and of the series would otherwise make the
        # total and the series disagree by one (seen on 6.1 under emulation: 27 vs 28).
        total_fail = sum(rate) + after_series
        return {
            "failures": total_fail,
            "failure_rate_per_s": round(total_fail / observed, 3),
            "failure_sites": failures[:TOP],
            "worst_failure": worst.to_dict(),
            "rate_bucket_ms": bucket_ms,
            "failures_over_time": rate,
            "failures_after_series": after_series,
            "series_span_s": round(bucket_ms * (SLOTS - 1) / 1e3, 3),
            "peak_failures_per_bucket": max(rate, default=0),
            "allocs": sum(s.allocs for s in sites.values()),
            "outstanding_count": sum(live_n.values()),
            "outstanding_bytes": sum(o["bytes"] for o in outstanding),
            "outstanding": outstanding[:TOP],
        }
