"""The cgroup hierarchies mounted here, bounded walks of their folders, and the files the
tool reads in them: a folder's CPU bandwidth (its quota and how often it was throttled),
its memory limit and what hitting it did, and its threads.

cgroup v2 has one hierarchy (type cgroup2), whose folders hold every controller's files:
``cpu.max`` ("QUOTA PERIOD" in microseconds, QUOTA "max" for none) and ``cpu.stat``
(``nr_periods``, ``nr_throttled``, ``throttled_usec``), ``cgroup.threads``.  cgroup v1 mounts
each controller (type cgroup, the controller named in the mount's options): the cpu
controller's folders hold ``cpu.cfs_quota_us`` (-1 for none), ``cpu.cfs_period_us`` and
``cpu.stat`` (``nr_periods``, ``nr_throttled``, ``throttled_time`` in nanoseconds), ``tasks``.
Memory: on v2 ``memory.max`` / ``memory.high`` ("max" for none), ``memory.current``,
``memory.events`` (``high``, ``max``: times the usage reached them; ``oom``, ``oom_kill``) and
``memory.stat`` (``workingset_refault_anon/_file``, ``pgmajfault``, ``pgscan``, ``pgsteal``);
on v1 ``memory.limit_in_bytes`` (a page-rounded 2^63 for none), ``memory.usage_in_bytes``,
``memory.failcnt`` (charges that hit the limit; ``memory.memsw.*`` the same for memory and
swap together, where swap is accounted), ``memory.oom_control`` (``oom_kill``) and
``memory.stat``'s hierarchical ``total_*`` counters.
Every read is one bounded read of a file opened without following a symbolic link.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Iterator

from .mounts import mount_table

READ_LIMIT = 1 << 16


def _once(points: list[str]) -> list[str]:
    """Each hierarchy once: a bind mount of a folder already listed is skipped."""
    seen: set[tuple[int, int]] = set()
    out = []
    for m in sorted(points):
        try:
            st = os.stat(m)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            out.append(m)
    return out


def v2_roots() -> list[str]:
    """The cgroup2 mounts, each hierarchy once."""
    return _once([m for m, t, _ in mount_table() if t == "cgroup2"])


def v1_roots(controller: str) -> list[str]:
    """The cgroup v1 mounts of one controller (``cpu``), each hierarchy once."""
    return _once([m for m, t, opts in mount_table() if t == "cgroup" and controller in opts])


def rel(d: str, roots: list[str]) -> str:
    """A cgroup folder as the kernel names the cgroup (/proc/PID/cgroup's "0::/a/b")."""
    for r in roots:
        if d == r:
            return "/"
        if d.startswith(r.rstrip("/") + "/"):
            return "/" + os.path.relpath(d, r)
    return d


@dataclass
class Walk:
    """The folders below ``roots``, at most ``limit`` of them and for at most ``seconds``;
    ``stopped`` says which bound ended the walk early."""
    roots: list[str]
    limit: int = 2000
    seconds: float = 0.5
    stopped: str = ""
    folders: list[str] = field(default_factory=list)
    with_roots: bool = False          # the roots themselves too (the v1 root cgroup holds tasks)

    def run(self) -> list[str]:
        end = time.monotonic() + self.seconds
        for root in self.roots:
            for d in ([root] if self.with_roots else []) + list(_dirs(root, end)):
                if len(self.folders) >= self.limit:
                    self.stopped = f"{self.limit} cgroups"
                    return self.folders
                if time.monotonic() > end:
                    self.stopped = f"{self.seconds:g} s"
                    return self.folders
                self.folders.append(d)
        return self.folders


def _dirs(root: str, end: float | None = None) -> Iterator[str]:
    """Every cgroup folder below ``root``, breadth first (the top of the tree before its
    leaves, so that a bounded walk keeps the slices and their services); symbolic links are
    not followed."""
    queue = [root]
    while queue:
        if end is not None and time.monotonic() > end:
            return
        d = queue.pop(0)
        try:
            with os.scandir(d) as it:
                subs = [e.path for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        if d != root:
            yield d
        queue.extend(sorted(subs))


def read_file(path: str, limit: int = READ_LIMIT) -> str | None:
    """One bounded read of a cgroup file, not following a symbolic link; None when it
    cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        chunks, n = [], 0
        while n < limit:
            b = os.read(fd, min(65536, limit - n))
            if not b:
                break
            chunks.append(b)
            n += len(b)
        return b"".join(chunks).decode(errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Bandwidth:
    """A cgroup's CPU quota and its throttling counters at one read."""
    quota_us: int              # CPU time the cgroup may use per period, in microseconds
    period_us: int
    periods: int               # periods in which the cgroup had runnable tasks
    throttled: int             # of those, periods that ended with it throttled
    throttled_us: int          # time its run queues spent throttled, summed over CPUs


def _stat(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            continue
    return out


def bandwidth(folder: str, v2: bool) -> Bandwidth | None:
    """The folder's CPU bandwidth; None when it has no quota, or no cpu controller files."""
    if v2:
        text = read_file(f"{folder}/cpu.max")
        parts = (text or "").split()
        if len(parts) != 2 or parts[0] == "max":
            return None
        try:
            quota, period = int(parts[0]), int(parts[1])
        except ValueError:
            return None
        st = _stat(read_file(f"{folder}/cpu.stat") or "")
        throttled_us = st.get("throttled_usec", 0)
    else:
        q, p = read_file(f"{folder}/cpu.cfs_quota_us"), read_file(f"{folder}/cpu.cfs_period_us")
        try:
            quota, period = int((q or "").strip()), int((p or "").strip())
        except ValueError:
            return None
        if quota < 0:
            return None
        st = _stat(read_file(f"{folder}/cpu.stat") or "")
        throttled_us = st.get("throttled_time", 0) // 1000
    if period <= 0 or "nr_periods" not in st:
        return None
    return Bandwidth(quota, period, st["nr_periods"], st.get("nr_throttled", 0), throttled_us)


def threads(folder: str, v2: bool, limit: int) -> list[int]:
    """The threads in the folder's cgroup itself (not its children), at most ``limit``."""
    text = read_file(f"{folder}/{'cgroup.threads' if v2 else 'tasks'}", limit=max(64, limit * 12))
    out = []
    for line in (text or "").splitlines():
        if len(out) >= limit:
            break
        if line.strip().isdigit():
            out.append(int(line))
    return out


V1_NO_LIMIT = 1 << 62          # v1 reports "no limit" as PAGE_COUNTER_MAX pages in bytes, near 2^63


@dataclass(frozen=True)
class Memory:
    """A memory cgroup's limit and its pressure counters at one read (bytes and counts)."""
    limit: int                 # memory.max / memory.limit_in_bytes; 0 for none
    high: int                  # memory.high (v2); 0 for none
    usage: int
    limit_hits: int            # memory.events max (v2), memory.failcnt + memsw.failcnt (v1)
    high_hits: int             # memory.events high (v2)
    oom_kills: int
    refaults: int              # workingset refaults, anon and file
    majfaults: int
    scanned: int               # pages reclaim looked at (v2 only; 0 on v1)
    reclaimed: int             # pages reclaim freed (v2 only)


def _bytes(text: str | None) -> int | None:
    """A limit file's value: 0 for "max" (or v1's no-limit value), None when unreadable."""
    t = (text or "").strip()
    if t == "max":
        return 0
    try:
        v = int(t)
    except ValueError:
        return None
    return 0 if v >= V1_NO_LIMIT else v


def memory(folder: str, v2: bool) -> Memory | None:
    """The folder's memory limit and counters; None when it has no memory controller files."""
    if v2:
        limit, high = _bytes(read_file(f"{folder}/memory.max")), _bytes(read_file(f"{folder}/memory.high"))
        usage = _bytes(read_file(f"{folder}/memory.current"))
        if limit is None or usage is None:
            return None
        ev = _stat(read_file(f"{folder}/memory.events") or "")
        st = _stat(read_file(f"{folder}/memory.stat") or "")
        return Memory(limit, high or 0, usage, ev.get("max", 0), ev.get("high", 0), ev.get("oom_kill", 0),
                      st.get("workingset_refault_anon", 0) + st.get("workingset_refault_file", 0),
                      st.get("pgmajfault", 0), st.get("pgscan", 0), st.get("pgsteal", 0))
    limit, usage = _bytes(read_file(f"{folder}/memory.limit_in_bytes")), \
        _bytes(read_file(f"{folder}/memory.usage_in_bytes"))
    if limit is None or usage is None:
        return None
    # with swap accounting, a charge is tried against memory+swap first: one that fails
    # there counts in memsw.failcnt only
    memsw = _bytes(read_file(f"{folder}/memory.memsw.limit_in_bytes")) or 0
    limit = min(x for x in (limit, memsw) if x) if limit or memsw else 0
    fail = (_bytes(read_file(f"{folder}/memory.failcnt")) or 0) + \
        (_bytes(read_file(f"{folder}/memory.memsw.failcnt")) or 0)
    oom = _stat(read_file(f"{folder}/memory.oom_control") or "")
    st = _stat(read_file(f"{folder}/memory.stat") or "")
    return Memory(limit, 0, usage, fail, 0, oom.get("oom_kill", 0),
                  st.get("total_workingset_refault_anon", 0) + st.get("total_workingset_refault_file", 0),
                  st.get("total_pgmajfault", 0), 0, 0)


def ancestry(paths: dict[str, str], controller: str) -> tuple[bool, list[str]]:
    """Where a task's ``controller`` limits live (``paths`` as task_paths gives them): its v1
    hierarchy of that controller when there is one, else its v2 cgroup -- (v2, its path and
    every ancestor's, nearest first, "/" last)."""
    v2 = controller not in paths
    path, out = paths.get(controller, paths.get("", "")), []
    while path:
        out.append(path)
        if path == "/":
            break
        path = path.rsplit("/", 1)[0] or "/"
    return v2, out


def task_paths(tid: int) -> dict[str, str]:
    """A task's cgroups from /proc/TID/cgroup: the v2 path under "", each v1 hierarchy's
    under each of its controllers ("memory", "cpu"); empty once the task is gone."""
    out: dict[str, str] = {}
    for line in (read_file(f"/proc/{tid}/cgroup") or "").splitlines():
        _, ctrls, path = (line.split(":", 2) + ["", ""])[:3]
        for c in (ctrls.split(",") if ctrls else [""]):
            out.setdefault(c, path)
    return out


def task_cgroup(tid: int) -> str | None:
    """The cgroup a verdict names a task by: its v2 path, or -- on a hybrid host whose v2
    tree holds none of its tasks -- the first v1 one below the root, of name=systemd (the
    unit tree), cpu, memory, pids, blkio; "/" for a task in every root; None once it is gone."""
    paths = task_paths(tid)
    if not paths:
        return None
    v2 = paths.get("")
    if v2 not in (None, "/"):
        return v2
    for c in ("name=systemd", "cpu", "memory", "pids", "blkio"):
        if paths.get(c) not in (None, "/"):
            return paths[c]
    return "/"


IO_KEYS = ("rbps", "wbps", "riops", "wiops")
V1_IO_FILES = {"rbps": "blkio.throttle.read_bps_device", "wbps": "blkio.throttle.write_bps_device",
               "riops": "blkio.throttle.read_iops_device", "wiops": "blkio.throttle.write_iops_device"}


def io_limits(folder: str, v2: bool) -> dict[str, dict[str, int]]:
    """The folder's block I/O limits by device ("MAJ:MIN"): bytes and I/Os per second for
    reads and writes, those set only (v2 ``io.max``, v1 ``blkio.throttle.*_device``)."""
    out: dict[str, dict[str, int]] = {}
    if v2:
        for line in (read_file(f"{folder}/io.max") or "").splitlines():
            dev, *pairs = line.split()
            for p in pairs:
                k, _, v = p.partition("=")
                if k in IO_KEYS and v.isdigit():
                    out.setdefault(dev, {})[k] = int(v)
        return out
    for k, name in V1_IO_FILES.items():
        for line in (read_file(f"{folder}/{name}") or "").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                out.setdefault(parts[0], {})[k] = int(parts[1])
    return out
