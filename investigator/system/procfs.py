"""Small readers of /proc: task names, sched policies, CPU affinity, kernel settings."""

from __future__ import annotations

import ctypes
import os
import selectors
import shutil
import subprocess
import time
from functools import lru_cache
from typing import Any

POLICIES = {0: "SCHED_OTHER", 1: "SCHED_FIFO", 2: "SCHED_RR", 3: "SCHED_BATCH", 5: "SCHED_IDLE",
            6: "SCHED_DEADLINE", 7: "SCHED_EXT"}


def _read(path: str) -> str | None:
    """A /proc file's text; a name cut inside a character (comm is cut at 15 bytes) reads with
    a replacement character instead of failing."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return None


def sysctl(name: str) -> str | None:
    s = _read("/proc/sys/" + name.replace(".", "/"))
    return s.strip() if s is not None else None


def comm(task: int | str) -> str:
    """A task's name ("" when it is gone)."""
    return (_read(f"/proc/{task}/comm") or "").strip()


def status(task: int | str = "self") -> dict[str, str]:
    """/proc/TASK/status as name -> value ("self", a PID, or "PID/task/TID"); {} if gone."""
    text = _read(f"/proc/{task}/status") or ""
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}


def kernel_stack(tid: int | str, depth: int = 32) -> list[str]:
    """/proc/TID/stack as its function names with offsets (``do_sys_poll+0x3a/0x60``), at
    most ``depth`` of them; [] when it cannot be read (gone, or not root)."""
    text = _read(f"/proc/{tid}/stack") or ""
    return [line.split(" ", 1)[-1].strip() for line in text.splitlines()][:depth]


_abandoned: list[subprocess.Popen[bytes]] = []


def abandon(p: subprocess.Popen[bytes]) -> None:
    """Leave a killed child that may still be waiting in the kernel: it is reaped by a later
    call once it has died, never waited for."""
    for q in list(_abandoned):               # reap the ones that have died since
        if q.poll() is not None:
            _abandoned.remove(q)
    _abandoned.append(p)


def run_in_child(argv: list[str], what: str, timeout: float, limit: int = 1 << 22) -> bytes:
    """Run a small command (its standard output, up to ``limit`` bytes), giving up after
    ``timeout`` seconds with TimeoutError -- for a system call that can wait uninterruptibly
    on what is being investigated (a read of /proc/locks waits for an RCU grace period; a
    mkdir on a frozen filesystem waits for the thaw).  A thread of ours stuck like that would
    keep this process from exiting until the kernel lets go; an abandoned child is killed (it
    dies once its call returns) and never waited for.  OSError when the command fails."""
    exe = shutil.which(argv[0]) or f"/bin/{argv[0]}"
    p = subprocess.Popen([exe, *argv[1:]], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, close_fds=True)
    assert p.stdout is not None and p.stderr is not None
    out = bytearray()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(p.stdout, selectors.EVENT_READ)
        while len(out) < limit:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                p.kill()
                p.stdout.close()
                p.stderr.close()
                abandon(p)
                raise TimeoutError(f"{what} did not finish in {timeout:g} s")
            chunk = os.read(p.stdout.fileno(), 1 << 16)
            if not chunk:
                break
            out += chunk
    p.stdout.close()
    err = p.stderr.read().decode(errors="replace").strip()
    p.stderr.close()
    if p.wait() != 0:
        raise OSError(f"{what}: {err or argv[0] + ' exited ' + str(p.returncode)}")
    return bytes(out)


def read_in_child(path: str, timeout: float, limit: int = 1 << 22) -> str:
    """A kernel file read through a child process (see run_in_child)."""
    return run_in_child(["cat", "--", path], f"reading {path}", timeout, limit).decode(errors="replace")


def read_mm_file(path: str, timeout: float = 0.5) -> str | None:
    """A /proc/PID file whose read takes the process's mmap_lock (maps, smaps), read in a
    helper thread and given up after ``timeout`` seconds (None): a writer holding or queued
    for that lock -- a thread stuck in mmap() on a hung filesystem -- must not hang the
    investigation.  The abandoned thread stays blocked until the lock is free (its wait is
    killable: the process still exits, so no child process is needed as in run_in_child)."""
    import threading
    out: list[str | None] = [None]

    def read() -> None:
        try:
            with open(path) as f:
                out[0] = f.read()
        except OSError:
            pass
    t = threading.Thread(target=read, name="read-mm-file", daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if not t.is_alive() else None


def rt_throttling() -> dict[str, int | None]:
    """RT throttling settings: a SCHED_FIFO hog leaves (period - runtime) to others."""
    def num(n: str) -> int | None:
        v = sysctl(n)
        return int(v) if v is not None and v.lstrip("-").isdigit() else None
    return {"rt_runtime_us": num("kernel.sched_rt_runtime_us"),
            "rt_period_us": num("kernel.sched_rt_period_us")}


def cpu_ticks() -> tuple[int, int] | None:
    """(idle + iowait, all) clock ticks summed over the CPUs since boot, from /proc/stat's
    first line; None where it cannot be read."""
    parts = (_read("/proc/stat") or "").split("\n", 1)[0].split()
    if len(parts) < 6 or parts[0] != "cpu":
        return None
    try:
        vals = [int(x) for x in parts[1:]]
    except ValueError:
        return None
    return vals[3] + vals[4], sum(vals[:8])


def counters(path: str) -> dict[str, int]:
    """A /proc file of "name value" lines (/proc/vmstat) or "Name: value kB" lines
    (/proc/meminfo, values in kB) as name -> number; {} when it cannot be read."""
    out = {}
    for line in (_read(path) or "").splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) >= 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def kthreads(prefix: str, limit: int = 1024) -> list[int]:
    """Kernel threads whose name starts with ``prefix`` (kswapd0, kcompactd0): the children
    of kthreadd (PID 2), at most ``limit`` of them read."""
    out = []
    for tid in (_read("/proc/2/task/2/children") or "").split()[:limit]:
        st = task_stat(tid)
        if st and st["comm"].startswith(prefix):
            out.append(int(tid))
    return out


def block_device_name(dev: str) -> str:
    """A block device's name ("loop0", "nvme0n1p2") from its "MAJ:MIN", as sysfs gives it;
    the number itself when it cannot be read."""
    for line in (_read(f"/sys/dev/block/{dev}/uevent") or "").splitlines():
        if line.startswith("DEVNAME="):
            return line[8:].strip()
    return dev


MAX_THREADS_READ = 256     # threads of one process summed by cpu_seconds


def cpu_seconds(pid: int) -> float | None:
    """CPU time a process has used, with that of its waited-for children; None once it is
    gone.  Its own threads' time is read to the nanosecond from /proc/PID/task/TID/schedstat
    (at most MAX_THREADS_READ threads) -- the clock ticks of /proc/PID/stat (10 ms each)
    would make one tick of a quiet process look like a busy one over a short interval --
    and falls back to utime+stime where schedstat gives nothing (no CONFIG_SCHED_INFO);
    the children's is cutime+cstime."""
    stat = _read(f"/proc/{pid}/stat")
    try:
        fields = (stat or "").rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        own, children = (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick
    except (ValueError, IndexError):
        return None
    try:
        tids = os.listdir(f"/proc/{pid}/task")[:MAX_THREADS_READ]
    except OSError:
        tids = []
    ns = sum(s[0] for s in (schedstat(f"{pid}/task/{t}") for t in tids) if s)
    return (ns / 1e9 if ns > 0 else own) + children


def task_stat(tid: int | str) -> dict[str, Any] | None:
    """The fields of /proc/TID/stat the tool reads: ``comm``, ``state`` (its letter),
    ``utime_s`` and ``stime_s`` (CPU time in user and kernel mode), ``prio`` (the kernel's:
    0-99 real-time, 100-139 normal; None on a kernel that does not give it) and ``policy``;
    None once the task is gone."""
    stat = _read(f"/proc/{tid}/stat")
    if not stat or ")" not in stat:
        return None
    try:
        fields = stat[stat.rindex(")") + 2:].split()
        tick = os.sysconf("SC_CLK_TCK")
        out: dict[str, Any] = {"comm": stat[stat.index("(") + 1: stat.rindex(")")], "state": fields[0],
                               "utime_s": int(fields[11]) / tick, "stime_s": int(fields[12]) / tick,
                               "prio": None, "policy": None}
        if len(fields) > 38:            # priority (field 18) is the kernel's prio - 100; policy field 41
            out["prio"], out["policy"] = int(fields[15]) + 100, int(fields[38])
        return out
    except (ValueError, IndexError):
        return None


def schedstat(tid: int | str) -> tuple[int, int] | None:
    """/proc/TID/schedstat: nanoseconds the task has run on a CPU and waited on a run queue
    (the second is 0 on a kernel without CONFIG_SCHED_INFO); None once it is gone."""
    text = _read(f"/proc/{tid}/schedstat")
    try:
        run, wait = (text or "").split()[:2]
        return int(run), int(wait)
    except ValueError:
        return None


def seconds_since_exec() -> float:
    """How long this process has existed (from /proc/self/stat's start time)."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start
    except (OSError, ValueError, IndexError):
        return float("nan")


PROC_CGROUP_INIT_INO = 0xEFFFFFFB   # the initial cgroup namespace's inode (include/linux/proc_ns.h)


def cgroup2_node(path: str) -> tuple[int, int]:
    """A cgroup v2 folder's id (its inode number, as the kernel's kernfs_node::id) and its
    level (its depth below the cgroup v2 root, as cgroup::level); accepts a path under the
    cgroup2 mount or relative to it.  The level is the path's depth below the mount, which
    is the root only in the initial cgroup namespace, so another namespace is refused."""
    from .mounts import mounted_types
    roots = [m for m, t in mounted_types().items() if t == "cgroup2"]
    if not roots:
        raise ValueError("no cgroup2 filesystem is mounted (cgroup v2 is needed for --cgroup)")
    try:
        if os.stat("/proc/self/ns/cgroup").st_ino != PROC_CGROUP_INIT_INO:
            raise ValueError("--cgroup needs the initial cgroup namespace (run on the host)")
    except OSError:
        pass
    cands = [path] if path.startswith("/") else [os.path.join(r, path) for r in roots]
    for c in cands:
        real = os.path.realpath(c)
        for r in roots:
            r = r.rstrip("/") or "/"
            if (real == r or real.startswith(r + "/")) and os.path.isdir(real):
                rel = os.path.relpath(real, r)
                return os.stat(real).st_ino, 0 if rel == "." else len(rel.split("/"))
    raise ValueError(f"{path}: not a cgroup v2 folder (cgroup2 is mounted at {', '.join(roots)})")


def cgroup2_subtree(cgroup: str, within: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """A cgroup as the kernel names it (/proc/PID/cgroup's "/a/b", below the cgroup v2 root)
    -> its (id, level), as cgroup2_node gives them; ValueError when it is the root, no
    cgroup v2 folder here, or outside the subtree ``within`` (an id and level, (0, 0) for
    none)."""
    from .mounts import mounted_types
    parts = [p for p in cgroup.split("/") if p]
    if not parts:
        raise ValueError("the root cgroup holds every task")
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"{cgroup}: not a cgroup path")
    for root in [m for m, t in mounted_types().items() if t == "cgroup2"]:
        folder = os.path.join(root, *parts)
        if not os.path.isdir(folder) or os.path.islink(folder):
            continue
        cg_id, level = cgroup2_node(folder)
        if within[0]:
            anc = os.path.join(root, *parts[:within[1]])
            if within[1] > len(parts) or os.stat(anc).st_ino != within[0]:
                raise ValueError(f"{cgroup} lies outside the run's --cgroup")
        return cg_id, level
    raise ValueError(f"{cgroup}: no such cgroup v2 folder here")


def pid_ns(pid: int | str) -> int | None:
    """The pid namespace of a process (its inode number), None once it is gone."""
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


class PidNamespaces:
    """TIDs as a process's own pid namespace names them -> TIDs as ours does.  A process in a
    container writes namespaced TIDs into memory (a pthread mutex's owner) and FUSE names a
    containerised daemon's clients the same way.  One scan of /proc per namespace (each
    thread's NSpid line), cached: make one per snapshot, not per lookup."""

    MAX_THREADS = 4096          # threads of one process looked at

    def __init__(self) -> None:
        self.own = pid_ns("self")
        self.maps: dict[int, dict[int, int]] = {}

    def global_tid(self, pid: int, ns_tid: int) -> int:
        """``ns_tid`` as named inside ``pid``'s namespace -> our TID for it; 0 if unknown."""
        ns = pid_ns(pid)
        if ns is None:
            return 0
        if ns == self.own:
            return ns_tid
        if ns not in self.maps:
            self.maps[ns] = self._scan(ns)
        return self.maps[ns].get(ns_tid, 0)

    def _scan(self, ns: int) -> dict[int, int]:
        out: dict[int, int] = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or pid_ns(pid) != ns:
                continue
            try:
                tids = os.listdir(f"/proc/{pid}/task")[: self.MAX_THREADS]
            except OSError:
                continue
            for tid in tids:
                status = _read(f"/proc/{pid}/task/{tid}/status") or ""
                line = next((x for x in status.splitlines() if x.startswith("NSpid:")), "")
                nspids = line.split()[1:]
                if nspids:             # a task of exactly this namespace: the last is its own
                    out[int(nspids[-1])] = int(tid)
        return out


def current_syscall(pid: int | str, tid: int | str) -> tuple[int, list[int]] | None:
    """The system call a task is in and its arguments (/proc/PID/task/TID/syscall); None
    when it is running, in none, or gone.  Reading it never waits on the task."""
    text = _read(f"/proc/{pid}/task/{tid}/syscall")
    parts = text.split() if text else []
    if len(parts) < 2 or not parts[0].isdigit():
        return None
    try:
        return int(parts[0]), [int(a, 16) for a in parts[1:7]]
    except ValueError:
        return None


# statx(): the attributes the kernel has cached, never a request to the filesystem (a FUSE
# daemon, an NFS server); the inode
AT_STATX_DONT_SYNC = 0x4000
STATX_INO = 0x100


class _Statx(ctypes.Structure):
    _fields_ = [("mask", ctypes.c_uint32), ("blksize", ctypes.c_uint32), ("attributes", ctypes.c_uint64),
                ("nlink", ctypes.c_uint32), ("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32),
                ("mode", ctypes.c_uint16), ("_pad", ctypes.c_uint16), ("ino", ctypes.c_uint64),
                ("size", ctypes.c_uint64), ("blocks", ctypes.c_uint64), ("attributes_mask", ctypes.c_uint64),
                ("times", ctypes.c_uint8 * 64), ("rdev_major", ctypes.c_uint32), ("rdev_minor", ctypes.c_uint32),
                ("dev_major", ctypes.c_uint32), ("dev_minor", ctypes.c_uint32), ("_spare", ctypes.c_uint64 * 14)]


def open_file_id(pid: int | str, fd: int | str) -> tuple[str, int] | None:
    """(device as /proc/locks prints it, inode) of a process's open file, from the kernel's
    cached attributes: statx() through the /proc/PID/fd link (which walks no path on the
    file's filesystem) with AT_STATX_DONT_SYNC.  For kernels whose fdinfo has no ``ino:``
    line (before 5.14).  None when the kernel does not say."""
    statx = _libc_statx()
    if statx is None:
        return None
    st = _Statx()
    if statx(-100, f"/proc/{pid}/fd/{fd}".encode(), AT_STATX_DONT_SYNC, STATX_INO, ctypes.byref(st)) != 0:
        return None
    if not st.mask & STATX_INO:
        return None
    return f"{st.dev_major:02x}:{st.dev_minor:02x}", int(st.ino)


@lru_cache(maxsize=1)
def _libc_statx() -> Any:
    """libc's statx(), or None (a libc before glibc 2.28)."""
    return getattr(ctypes.CDLL(None, use_errno=True), "statx", None)
