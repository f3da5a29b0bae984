"""Evidence of ``block.io`` (probes/blockio.bpf.c): each device's request latency and the
requests it has not answered, each task's time waiting for I/O and its longest wait, joined
with the block I/O limits of the cgroups (investigator/system/cgroups.py's ``io_limits``).

A task stalls on I/O when it spent ``min_share`` of the window waiting for I/O and one wait
lasted ``min_wait`` or more: a task busy with a fast disk waits often but briefly.  Stalled
tasks are grouped by the device of their latest request and what held them back: a limit
on that device in their cgroup or one above it (v2 ``io.max``, v1 ``blkio.throttle.*``), a
device slow to answer (requests that took ``min_wait`` or more, or are still out after it),
else nothing this probe can name.  ``worst`` is the group with the most time waited.
"""

from __future__ import annotations

import ctypes as C
import time
from typing import Any

from ...system import cgroups, procfs
from ._common import ProbeCollector, cstr, hist_quantile, ms, task_entity

TOP = 20
TOP_VICTIMS = 16
READ_CGROUPS = 256
u32, u64 = C.c_uint32, C.c_uint64
SLOTS = 24
NODEV = {"dev": "", "name": "", "requests": 0, "avg_ms": 0.0, "max_ms": 0.0, "p99_ms": 0.0, "queued_avg_ms": 0.0,
         "mib": 0.0, "writes": 0, "errors": 0, "inflight": 0, "oldest_inflight_ms": 0.0}
NOBODY = {"tid": 0, "pid": 0, "comm": "", "iowait_ms": 0.0, "iowait_pct": 0.0, "max_wait_ms": 0.0}


class BlockioReq(C.Structure):
    _fields_ = [("insert_ts", u64), ("issue_ts", u64), ("dev", u32), ("tid", u32), ("bytes", u32), ("write", u32),
                ("comm", C.c_char * 16)]


class BlockioDev(C.Structure):
    _fields_ = [("count", u64), ("total_ns", u64), ("max_ns", u64), ("queued_ns", u64), ("bytes", u64),
                ("writes", u64), ("errors", u64), ("slots", u32 * SLOTS), ("pad", u32), ("pad2", u32)]


class BlockioTask(C.Structure):
    _fields_ = [("iowait_ns", u64), ("iowait_since", u64), ("max_wait_ns", u64), ("bytes", u64), ("waits", u32),
                ("requests", u32), ("dev", u32), ("tgid", u32), ("comm", C.c_char * 16)]


LAYOUTS = {"blockio_req": BlockioReq, "blockio_dev": BlockioDev, "blockio_task": BlockioTask}


def dev_name(dev: int) -> str:
    """The kernel's dev_t (major << 20 | minor) as "MAJ:MIN"."""
    return f"{dev >> 20}:{dev & 0xfffff}"


def _rate(v: int, per: str) -> str:
    return f"{v / (1 << 20):g} MiB/s" if per == "bps" else f"{v} I/Os per second"


class Collector(ProbeCollector):
    def start(self, inst: Any) -> None:
        self.t0 = time.monotonic_ns()
        self.stopped: list[str] = []
        self.roots = {True: cgroups.v2_roots(), False: cgroups.v1_roots("blkio")}
        seconds = min(2.0, inst.values.get("scan_time", 5 * 10**8) / 1e9)
        end = time.monotonic() + seconds
        self.limited: dict[tuple[bool, str], dict[str, dict[str, int]]] = {}
        for v2, roots in self.roots.items():
            walk = cgroups.Walk(roots, limit=int(inst.values.get("max_cgroups", 2000)), seconds=seconds)
            for d in walk.run():
                if time.monotonic() > end:
                    self.stopped.append(f"reading the cgroups' I/O limits took over {seconds:g} s")
                    break
                lim = cgroups.io_limits(d, v2)
                if lim:
                    self.limited[(v2, cgroups.rel(d, roots))] = lim
            if walk.stopped:
                self.stopped.append(f"the cgroup walk stopped at {walk.stopped}")

    def _limit(self, paths: dict[str, str], dev: str) -> tuple[str, int, dict[str, int], str] | None:
        """The nearest limit on ``dev`` at or above a task's cgroup (its v1 blkio hierarchy's,
        else its v2 cgroup): (path, version, limits, device).  A task whose device is not
        known -- the bios a cgroup's throttling holds are issued later from a kworker, never
        by the task -- is held by the nearest cgroup that limits exactly one device."""
        v2, chain = cgroups.ancestry(paths, "blkio")
        for path in chain:
            limits = self.limited.get((v2, path), {})
            if dev and limits.get(dev):
                return path, 2 if v2 else 1, limits[dev], dev
            if not dev and len(limits) == 1:
                (only, lim), = limits.items()
                return path, 2 if v2 else 1, lim, only
        return None

    def finish(self, inst: Any) -> dict[str, Any]:
        now = inst.observed_until_ns()
        window = max(1, now - self.t0)
        min_share, min_wait = float(inst.values.get("min_share", 20)), inst.values.get("min_wait", 10**8)
        maps = inst.obj.maps
        devices: dict[str, dict[str, Any]] = {}
        for k, v in maps["devs"].lookup_batch(limit=256):
            d, dev = BlockioDev.from_buffer_copy(v), dev_name(int.from_bytes(k[:4], "little"))
            slots = list(d.slots)
            devices[dev] = {**NODEV, "dev": dev, "name": procfs.block_device_name(dev), "requests": d.count,
                            "avg_ms": ms(d.total_ns // max(1, d.count)), "max_ms": ms(d.max_ns),
                            "p99_ms": round(hist_quantile(slots, 0.99) / 1000, 3),
                            "queued_avg_ms": ms(d.queued_ns // max(1, d.count)), "mib": round(d.bytes / (1 << 20), 1),
                            "writes": d.writes, "errors": d.errors}
        for _, v in maps["reqs"].lookup_batch(limit=16384):
            r = BlockioReq.from_buffer_copy(v)
            if not r.issue_ts or r.issue_ts > now:
                continue
            dev = dev_name(r.dev)
            d = devices.setdefault(dev, {**NODEV, "dev": dev, "name": procfs.block_device_name(dev)})
            d["inflight"] += 1
            d["oldest_inflight_ms"] = max(d["oldest_inflight_ms"], ms(now - r.issue_ts))
        rows = []
        for k, v in maps["tasks"].lookup_batch(limit=10240):
            t = BlockioTask.from_buffer_copy(v)
            tid = int.from_bytes(k[:4], "little")
            ongoing = now - t.iowait_since if 0 < t.iowait_since < now else 0
            wait = min(window, t.iowait_ns + ongoing)
            rows.append({**task_entity(tid, t.tgid or tid, cstr(t.comm)), "iowait_ms": ms(wait),
                         "iowait_pct": round(100.0 * wait / window, 1), "waits": t.waits,
                         "max_wait_ms": ms(max(t.max_wait_ns, ongoing)), "waiting_ms": ms(ongoing),
                         "requests": t.requests, "mib": round(t.bytes / (1 << 20), 1),
                         "dev": dev_name(t.dev) if t.dev else ""})
        rows.sort(key=lambda t: (-t["iowait_ms"], t["tid"]))
        stalled = [t for t in rows if t["iowait_pct"] >= min_share and t["max_wait_ms"] * 1e6 >= min_wait
                   and not t.get("investigator")]
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        causes: dict[tuple[str, str], dict[str, Any]] = {}
        for t in stalled[:READ_CGROUPS]:
            paths = cgroups.task_paths(t["tid"])
            t["cgroup"] = paths.get("blkio", paths.get("", ""))
            lim = self._limit(paths, t["dev"])
            if lim and not t["dev"]:
                t["dev"] = lim[3]
            t["device"] = devices.get(t["dev"], {}).get("name") or (procfs.block_device_name(t["dev"]) if t["dev"] else "")
            key = (t["dev"], lim[0] if lim else "")
            groups.setdefault(key, []).append(t)
            if lim:
                causes[key] = {"path": lim[0], "cgroup_version": lim[1], "limits": lim[2]}
        scopes = [self._scope(key, victims, devices.get(key[0], {**NODEV, "dev": key[0]}), causes.get(key), min_wait)
                  for key, victims in groups.items()]
        scopes.sort(key=lambda s: (-s["iowait_ms"], s["dev"]))
        devlist = sorted(devices.values(), key=lambda d: (-d["max_ms"], d["dev"]))
        return {
            "window_ms": ms(window),
            "devices": devlist[:TOP],
            "devices_count": len(devices),
            "slowest": devlist[0] if devlist else dict(NODEV),
            "tasks": rows[:TOP],
            "tasks_count": len(rows),
            "stalled_count": len(stalled),
            "scopes": scopes[:8],
            "worst": scopes[0] if scopes else self._none(),
            "limited_count": len(self.limited),
            "partial": bool(self.stopped),
            "partial_reason": "; ".join(self.stopped),
        }

    def _scope(self, key: tuple[str, str], victims: list[dict[str, Any]], dev: dict[str, Any],
               limit: dict[str, Any] | None, min_wait: int) -> dict[str, Any]:
        name = dev.get("name") or key[0] or "an unknown device"
        if limit:
            lims = ", ".join(f"{k} {_rate(v, k[1:])}" for k, v in sorted(limit["limits"].items()))
            cause, kind = f"cgroup {limit['path']} limits its I/O to {name} ({lims}); the device itself answered " \
                          f"in {dev['avg_ms']} ms on average", "limit"
        elif dev["max_ms"] * 1e6 >= min_wait or dev["oldest_inflight_ms"] * 1e6 >= min_wait:
            cause, kind = f"device {name} is slow to answer: requests took up to {dev['max_ms']} ms " \
                          f"({dev['avg_ms']} ms on average), {dev['inflight']} still out, the oldest for " \
                          f"{dev['oldest_inflight_ms']} ms", "device"
        else:
            cause, kind = f"waits for I/O on {name} that neither a cgroup limit nor the device's answers " \
                          f"(up to {dev['max_ms']} ms) explain", "unknown"
        roles = [{**v, "role": "victim"} for v in victims[:TOP_VICTIMS]]
        return {"dev": key[0], "device": name, "kind": kind, "cause": cause,
                "cgroup": limit["path"] if limit else "", "cgroup_version": limit["cgroup_version"] if limit else 0,
                "limits": limit["limits"] if limit else {}, "device_stats": dev,
                "victim": victims[0], "victims": victims[:TOP_VICTIMS], "victims_count": len(victims),
                "iowait_ms": round(sum(v["iowait_ms"] for v in victims), 3),
                "tasks": roles, "cgroups": [limit["path"]] if limit else []}

    def _none(self) -> dict[str, Any]:
        return {"dev": "", "device": "", "kind": "", "cause": "", "cgroup": "", "cgroup_version": 0, "limits": {},
                "device_stats": dict(NODEV), "victim": dict(NOBODY), "victims": [], "victims_count": 0,
                "iowait_ms": 0.0, "tasks": [], "cgroups": []}
