"""What collectors share: the base class, C string decoding, task entities, histograms."""

from __future__ import annotations

import ctypes as C
import os
from dataclasses import dataclass
from typing import Any

from ...finding import rt_priority
from ...system import procfs


class ProbeCollector:
    """A probe's collector: ``start`` takes what the window is measured against (called
    once the probe is attached), ``finish`` turns the probe's maps into its evidence (called
    when the window closes).  ``inst`` is the probe instance (its object, parameter values
    and attach time)."""

    def start(self, inst: Any) -> None:
        """Nothing to take before the window: the kernel side counts from attach."""

    def finish(self, inst: Any) -> dict[str, Any]:
        raise NotImplementedError


class MmStall(C.Structure):
    """probes/reclaim.h's struct mm_stall: a task's time in reclaim and in compaction, and
    when the one going on began (0: none)."""
    _fields_ = [("reclaim_ns", C.c_uint64), ("compact_ns", C.c_uint64), ("reclaim_since", C.c_uint64),
                ("compact_since", C.c_uint64)]

    def upto(self, now: int) -> tuple[int, int]:
        """The time in reclaim and in compaction until ``now`` (monotonic ns), the ones still
        going on included."""
        return (self.reclaim_ns + (now - self.reclaim_since if 0 < self.reclaim_since < now else 0),
                self.compact_ns + (now - self.compact_since if 0 < self.compact_since < now else 0))


def ms(ns: int) -> float:
    """Nanoseconds as milliseconds, to the microsecond."""
    return round(ns / 1e6, 3)


def cstr(b: bytes) -> str:
    return bytes(b).split(b"\0", 1)[0].decode(errors="replace")


def policy_name(policy: int) -> str:
    return procfs.POLICIES.get(policy, str(policy))


def task_entity(tid: int, tgid: int, comm: str, prio: int | None = None,
                policy: int | None = None) -> dict[str, Any]:
    """A task as every evidence field and verdict names it; a thread of this investigation
    is marked ``investigator: true`` (an observer, never a finding's culprit or victim)."""
    e: dict[str, Any] = {"tid": tid, "pid": tgid, "comm": comm}
    if tid and tgid == os.getpid():
        e["investigator"] = True
    if prio is not None:
        e["prio"] = prio
        e["rt_priority"] = rt_priority(prio)
    if policy is not None:
        e["policy"] = policy_name(policy)
    return e


def log2_hist(slots: list[int], unit: str = "us") -> list[dict[str, int]]:
    """Non-empty log2 buckets as [lo, hi) ranges (bucket 0 holds 0..1)."""
    out = []
    for i, n in enumerate(slots):
        if n:
            lo = 0 if i == 0 else 1 << i
            out.append({"lo": lo, "hi": (1 << (i + 1)), "count": int(n), "unit": unit})  # type: ignore[dict-item]
    return out


def hist_quantile(slots: list[int], q: float) -> int:
    """Upper bound of the bucket holding quantile q (an over-estimate, never under)."""
    total = sum(slots)
    if not total:
        return 0
    acc = 0
    for i, n in enumerate(slots):
        acc += n
        if acc >= q * total:
            return 1 << (i + 1)
    return 1 << len(slots)


def unpack(struct_cls: type[C.Structure], raw: bytes) -> Any:
    return struct_cls.from_buffer_copy(raw[:C.sizeof(struct_cls)])


DEFAULT_MAX_RECORDS = 4096     # an object without the max_records parameter (a custom probe's)


@dataclass
class Snapshot:
    """One run of a probe's iterator: the records kept, and how many the kernel found."""
    records: list[Any]
    seen: int              # records the iterator found, those beyond its limit included
    limit: int

    @property
    def dropped(self) -> int:
        """Records the kernel found beyond the limit (probes/snapshot.h counts each record
        once, a record shown again after the read's buffer filled included)."""
        return self.seen - len(self.records) if len(self.records) >= self.limit else 0

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def by_tid(self) -> dict[int, Any]:
        return {r.tid: r for r in self.records}


def iter_records(inst: Any, record: type[C.Structure]) -> Snapshot:
    """Run the probe's iterator once: the fixed-size records it wrote, at most its
    ``max_records`` parameter (probes/snapshot.h), and the true count from its .bss
    (``snapshot_seen``; the records read, for an object that does not keep it)."""
    size = C.sizeof(record)
    link = next((lk for lk in inst.obj.links if lk.kind == "iter"), None)
    if link is None:
        raise RuntimeError(f"{inst.name}: its iterator is detached; no snapshot can be taken")
    limit = inst.values.get("max_records", DEFAULT_MAX_RECORDS)
    # one byte over the limit: the run is read to its end, so that the kernel counted it all
    data = link.read_iter(limit=limit * size + 1)
    records = [record.from_buffer_copy(data, off) for off in range(0, min(len(data), limit * size) - size + 1, size)]
    try:
        seen = inst.obj.read_global("snapshot_seen")
    except (KeyError, ValueError):
        seen = len(data) // size
    return Snapshot(records, max(seen, len(records)), limit)


def snapshot_bounds(*snaps: Snapshot) -> dict[str, Any]:
    """The evidence fields of a probe's snapshots: ``truncated`` when one of them hit its
    record limit, ``seen`` the records the closing one found (beyond the limit included)."""
    return {"truncated": any(s.truncated for s in snaps), "seen": snaps[-1].seen if snaps else 0}


def kernel_stack(stack_map: Any, stack_id: int, depth: int = 32) -> list[str]:
    """A stack map's kernel stack as symbols, without the probe's own frames."""
    if stack_id < 0:
        return []
    return kernel_frames(stack_map.stack(stack_id, depth=depth))


def kernel_frames(addrs: Any) -> list[str]:
    """Kernel return addresses as symbols, without the probe's own frames (the BPF program
    and the tracepoint/trampoline/kprobe glue that called it); zero addresses end nothing
    and are skipped."""
    from ...system.kallsyms import symbolize
    frames = symbolize([a for a in addrs if a])
    i = 0
    while i < len(frames) and frames[i].startswith(("bpf_prog_", "bpf_trace_run", "__bpf_trace_",
                                                    "bpf_trampoline_", "__bpf_prog_enter", "trace_call_bpf",
                                                    "kprobe_", "kretprobe_", "perf_trace_run_bpf", "arch_rethook",
                                                    "rethook_", "pre_handler_kretprobe", "0x")):
        i += 1
    return frames[i:]



def proc_task(tid: int, with_stack: bool = True) -> dict[str, Any] | None:
    """What a task is doing, read from /proc (a lock holder at the end of a wait-for chain, a
    FUSE daemon's thread): state, wchan and kernel stack (unless ``with_stack`` is false);
    None once it is gone.  Reads only /proc files that never reach into a filesystem the
    task may be stuck on."""
    st = procfs.task_stat(tid)
    try:
        with open(f"/proc/{tid}/wchan") as f:
            wchan = f.read().strip()
        stack = procfs.kernel_stack(tid) if with_stack else []
        with open(f"/proc/{tid}/status") as f:
            tgid = next(int(line.split()[1]) for line in f if line.startswith("Tgid:"))
    except (OSError, ValueError, StopIteration):
        return None
    if st is None:
        return None
    return {**task_entity(tid, tgid, st["comm"], st["prio"], st["policy"]), "state": st["state"],
            "wchan": "" if wchan == "0" else wchan, "stack": stack}


MAX_HOLDERS = 256       # lock holders read from /proc by one collector, per window


def holder_tasks(holders: Any, known: set[int], limit: int = MAX_HOLDERS) -> list[dict[str, Any]]:
    """What the holders of a probe's wait-for edges do (proc_task), for those of them that
    are not among its waiters already (``known``): each once, at most ``limit`` of them,
    the gone ones left out."""
    import itertools
    tids = itertools.islice(dict.fromkeys(h for h in holders if h not in known), limit)
    return [t for t in (proc_task(tid) for tid in tids) if t]
