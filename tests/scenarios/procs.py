"""Scenario processes: started with a hard deadline of their own (they exit by
themselves), and killed by PID on teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import contextlib
from contextlib import contextmanager
from collections.abc import Iterator

# How long a scenario process lives at the most: it is killed when its test ends (processes()),
# so this is only a bound for a test that dies hard -- never what a test waits out.  A
# scenario must outlive the investigation on any machine, however slow.
SCENARIO_S = 300
# naps 0.1 s at a time, SCENARIO_S in all: off the CPU again and again within any window
NAPPER = [sys.executable, "-c", f"import time\nfor _ in range({SCENARIO_S * 10}): time.sleep(0.1)"]

RT_HOG = """
import os, time
open("/proc/self/comm", "w").write("{name}")
os.sched_setaffinity(0, {{{cpu}}})
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param({rtprio}))
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    pass
"""

PERIODIC = """
import os, time
open("/proc/self/comm", "w").write("{name}")
os.sched_setaffinity(0, {{{cpu}}})
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    time.sleep({period})
    busy = time.monotonic() + {work}     # CPU it needs per wakeup
    while time.monotonic() < busy:
        pass
"""

STAT_REFRESH = """
import os, time
open("/proc/self/comm", "w").write("{name}")
os.sched_setaffinity(0, {{{cpu}}})
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    # vmstat_refresh(): schedule_on_each_cpu(refresh_vm_stats) -- per-CPU kernel work on
    # every CPU, and this writer waits in D state until all of it has run
    with open("/proc/sys/vm/stat_refresh", "w") as f:
        f.write("1")
    time.sleep({period})
"""

PTY_WRITERS = """
import os, time
# Two writers share one pty; the kernel serializes writers with tty->atomic_write_lock (a
# mutex held for the whole write()).  The reader drains the master every {drain} s -- or
# never (drain=0): then the first writer blocks holding the mutex, waiting for room, and the
# second waits for the mutex: a lock chain ending in a reader that never reads.
end = time.monotonic() + {seconds}
master, slave = os.openpty()
name = os.ttyname(slave)
pids = []
for i in range(2):
    pid = os.fork()
    if pid == 0:
        open("/proc/self/comm", "w").write("{name}-w%d" % i)
        fd = os.open(name, os.O_WRONLY | os.O_NOCTTY)
        buf = b"x" * {chunk}
        while time.monotonic() < end:
            os.write(fd, buf)
        os._exit(0)
    pids.append(pid)
    time.sleep(0.3)      # writer 0 takes the mutex first
open("/proc/self/comm", "w").write("{name}-rd")
with open("{pidfile}.tmp", "w") as f:
    f.write(" ".join(map(str, pids)))
os.rename("{pidfile}.tmp", "{pidfile}")
os.set_blocking(master, False)
while time.monotonic() < end:
    time.sleep({drain} or 0.5)
    while {drain}:
        try:
            if not os.read(master, 1 << 16):
                break
        except BlockingIOError:
            break
for p in pids:
    os.kill(p, 9)
"""

FLOCK_ABBA = """
import fcntl, os, struct, threading, time
# Two processes take two file locks in opposite orders: each holds one and waits for the
# other forever (the kernel does no deadlock detection for flock() nor for OFD locks).
# how: flock, or ofd (fcntl F_OFD_SETLKW: a lock owned by the open file, not the process),
# or flock-thread: each process asks for its second lock from a second thread
# ("{name}-N-t"; /proc/locks names the process, not that thread).
end = time.monotonic() + {seconds}
def take(fd):
    if "{how}" == "flock-thread" and threading.current_thread() is threading.main_thread():
        t = threading.Thread(target=lambda: (open("/proc/thread-self/comm", "w").write(
            open("/proc/self/comm").read().strip() + "-t"), take(fd)))
        t.start()
        t.join()
        return
    if "{how}" == "ofd":
        fcntl.fcntl(fd, 38, struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
    else:
        fcntl.flock(fd, fcntl.LOCK_EX)
a, b = "{dir}/first.lock", "{dir}/second.lock"
pids = []
for i, (mine, theirs) in enumerate(((a, b), (b, a))):
    pid = os.fork()
    if pid == 0:
        open("/proc/self/comm", "w").write("{name}-%d" % i)
        f1 = os.open(mine, os.O_RDWR | os.O_CREAT)
        take(f1)
        time.sleep(0.5)
        f2 = os.open(theirs, os.O_RDWR | os.O_CREAT)
        take(f2)                          # never returns
        os._exit(0)
    pids.append(pid)
with open("{pidfile}.tmp", "w") as f:
    f.write(" ".join(map(str, pids)))
os.rename("{pidfile}.tmp", "{pidfile}")
while time.monotonic() < end:
    time.sleep(0.2)
for p in pids:
    os.kill(p, 9)
"""

PIPE_RESIZER = """
import fcntl, os, time
open("/proc/self/comm", "w").write("{name}")
r, w = os.pipe()
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    try:
        # F_SETPIPE_SZ of 1 GiB: the pipe ring's kcalloc() asks for 10 MiB, beyond kmalloc's
        # largest size: kmalloc returns NULL and fcntl fails with ENOMEM (when
        # fs.pipe-max-size allows the size at all)
        fcntl.fcntl(w, 1031, 1 << 30)
    except OSError:
        pass
    time.sleep({period})
"""

NORMAL_HOG = """
import os, time
open("/proc/self/comm", "w").write("{name}")
os.sched_setaffinity(0, {{{cpu}}})
end = time.monotonic() + {seconds}
x = 0
while time.monotonic() < end:
    x += 1
"""

# A UDP server on loopback pinned to a CPU: writes its port to PORTFILE, then reads
# datagrams until it is killed (or SECONDS pass); it sleeps in recv whenever its socket
# is empty, so the NET_RX work that delivers to it wakes it.
UDP_READER = """
import os, socket, time
open("/proc/self/comm", "w").write("{name}")
os.sched_setaffinity(0, {{{cpu}}})
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(1.0)
with open("{portfile}.tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename("{portfile}.tmp", "{portfile}")
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    try:
        s.recv(2048)
    except socket.timeout:
        pass
"""


def wait_file(path: str, p: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
    """The text a scenario writes to ``path`` once it is ready (it renames it into place)."""
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        assert p.poll() is None, f"the scenario exited ({p.returncode}) before writing {path}"
        assert time.monotonic() < end, f"{path} was not written within {timeout} s"
        time.sleep(0.02)
    with open(path) as f:
        return f.read()


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, code: str, name: str = "scenario", **fmt: object) -> subprocess.Popen[bytes]:
        fmt["name"] = name[:15]
        fmt.setdefault("work", 0)
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code.format(**fmt))],
                             stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def spawn_with_pids(self, code: str, pidfile: str, name: str = "scenario",
                        **fmt: object) -> tuple[subprocess.Popen[bytes], list[int]]:
        """Spawn a scenario that forks workers and writes their PIDs to ``pidfile``; wait
        for the file (10 s at most) and return the parent and the workers' PIDs."""
        parent = self.spawn(code, name=name, pidfile=pidfile, **fmt)
        return parent, [int(x) for x in wait_file(pidfile, parent, 10).split()]

    def spawn_argv(self, argv: list[str]) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def kill_all(self) -> None:
        for p in self.procs:          # grandchildren first (a vfork child, a forked worker)
            for kid in children_of(p.pid):
                try:
                    os.kill(kid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def threads_by_comm(pid: int) -> dict[str, int]:
    """A process's threads: name -> TID (scenario threads name themselves)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            out[f.read().strip()] = int(tid)
    return out


def children_of(pid: int) -> list[int]:
    """Direct children of a process, by PID, from /proc (all its threads)."""
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def start_abba(ps: Procs, exe: str, mode: str = "threads", seconds: int = 40,
               settle: float = 3.0) -> tuple[dict[str, str], dict[str, tuple[int, int]]]:
    """tests/scenarios/abba.c in one of its shapes -- two threads ("threads"), two
    processes sharing the mutexes ("shared"), two threads in a pid namespace of their own
    ("pidns"), two rwlocks ("rwlock") -- left `settle` seconds to deadlock.  What it printed
    (the locks' addresses) and its two waiters, "ab" and "ba", as (tid, pid)."""
    argv = [exe, str(seconds)] + ([mode] if mode in ("shared", "rwlock") else [])
    if mode == "pidns":
        argv = ["unshare", "--pid", "--fork", "--kill-child"] + argv
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    ps.procs.append(proc)  # type: ignore[arg-type]
    printed = dict(part.split("=") for part in proc.stdout.readline().split())  # type: ignore[union-attr]
    wait_alive(proc, settle)  # type: ignore[arg-type]
    if mode == "shared":            # each a process of its own
        return printed, {"ab": (int(printed["ab"]),) * 2, "ba": (int(printed["ba"]),) * 2}  # type: ignore[dict-item]
    pid = children_of(proc.pid)[0] if mode == "pidns" else proc.pid
    threads = threads_by_comm(pid)
    return printed, {"ab": (threads["lock-a-then-b"], pid), "ba": (threads["lock-b-then-a"], pid)}


@contextmanager
def processes() -> Iterator[Procs]:
    ps = Procs()
    try:
        yield ps
    finally:
        ps.kill_all()


def wait_alive(p: subprocess.Popen[bytes], seconds: float) -> None:
    """Sleep, failing early if the process died (a scenario that did not start)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if p.poll() is not None:
            raise RuntimeError(f"scenario process {p.args!r} exited early with {p.returncode}")
        time.sleep(0.05)


@contextmanager
def written(path: str, value: str) -> Iterator[None]:
    """Write a kernel setting file for the duration of a scenario; the old value is always
    restored."""
    with open(path) as f:
        old = f.read().strip()
    with open(path, "w") as f:
        f.write(value)
    try:
        yield
    finally:
        with open(path, "w") as f:
            f.write(old)


def sysctl(name: str, value: str) -> contextlib.AbstractContextManager[None]:
    """A sysctl set for the duration of a scenario (restored after)."""
    return written("/proc/sys/" + name.replace(".", "/"), value)


def remove_cgroup(cg: str | os.PathLike[str]) -> None:
    """Remove a test's cgroup folder and its children, deepest first; a killed task leaves
    its cgroup a moment after it is reaped, so each removal is retried for up to 10 s."""
    from pathlib import Path
    top = Path(cg)
    for d in sorted((p for p in [top, *top.rglob("*")] if p.is_dir()), key=lambda p: -len(p.parts)):
        for _ in range(100):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


@contextmanager
def limited_cgroup(name: str, controller: str, v2_knobs: dict[str, str],
                   v1_knobs: dict[str, str], v1_controller: str = "") -> Iterator[tuple[object, int]]:
    """A cgroup of the test's own with a controller's limits: on cgroup v2 (the root's
    ``controller`` switched on for its children if needed, and back off after) its
    ``v2_knobs``, else under the v1 controller's mount (``v1_controller`` where v1 names it
    otherwise: blkio for io) its ``v1_knobs``; yields (folder, cgroup version) and removes
    it after.  A knob the kernel lacks is left out."""
    import pytest
    from pathlib import Path
    v2 = Path("/sys/fs/cgroup")
    enabled_here = False
    if (v2 / "cgroup.controllers").exists() and controller in (v2 / "cgroup.controllers").read_text().split():
        if controller not in (v2 / "cgroup.subtree_control").read_text().split():
            (v2 / "cgroup.subtree_control").write_text(f"+{controller}")
            enabled_here = True
        cg, knobs, version = v2 / name, v2_knobs, 2
    elif (Path("/sys/fs/cgroup") / (v1_controller or controller) / "cgroup.procs").exists():
        cg, knobs, version = Path("/sys/fs/cgroup") / (v1_controller or controller) / name, v1_knobs, 1
    else:
        pytest.skip(f"no {controller} cgroup controller (v2 or v1)")
    try:
        cg.mkdir()
        for knob, value in knobs.items():
            if (cg / knob).exists():
                (cg / knob).write_text(value)
        yield cg, version
    finally:
        remove_cgroup(cg)
        if enabled_here:
            with contextlib.suppress(OSError):
                (v2 / "cgroup.subtree_control").write_text(f"-{controller}")


def memory_cgroup(name: str, mib: int) -> Iterator[tuple[object, int]]:
    """limited_cgroup with a memory limit of ``mib`` MiB and no swap to escape to."""
    limit = str(mib << 20)
    return limited_cgroup(name, "memory", {"memory.max": limit, "memory.swap.max": "0"},
                          {"memory.limit_in_bytes": limit, "memory.memsw.limit_in_bytes": limit})


def memory_refaults(cg: object, version: int) -> int:
    """Refaults in a memory cgroup: pages read back soon after they were evicted."""
    from pathlib import Path
    st = dict(line.split() for line in (Path(str(cg)) / "memory.stat").read_text().splitlines())
    pre = "" if version == 2 else "total_"
    return int(st.get(f"{pre}workingset_refault_file", 0)) + int(st.get(f"{pre}workingset_refault_anon", 0))


def memory_limit_hits(cg: object, version: int) -> int:
    """How often a memory cgroup's usage reached its limit: memory.events max (v2),
    memory.failcnt and memory.memsw.failcnt (v1: a charge that fails against memory and
    swap together counts only there)."""
    from pathlib import Path
    d = Path(str(cg))
    if version == 2:
        ev = dict(line.split() for line in (d / "memory.events").read_text().splitlines())
        return int(ev.get("max", 0))
    return sum(int((d / f).read_text()) for f in ("memory.failcnt", "memory.memsw.failcnt") if (d / f).exists())


def data_file(path: str, mib: int) -> str:
    """A file of ``mib`` MiB of random bytes (nothing for a filesystem to compress or share),
    written out and dropped from the page cache: its pages, cached while written, would stay
    charged to the writer's cgroup, and a reader in another cgroup would never charge its own."""
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return path


# reads a file from its start to its end, again and again, 1 MiB at a time: a busy reader of
# memory that, at nice 19, takes no CPU the others want (on a slow 2-CPU guest two of them
# would otherwise halve the CPU of the task under test, and its share stalled with it)
PAGE_READER = """
import os, time
open("/proc/self/comm", "w").write("{name}")
os.nice(19)
fd = os.open("{path}", os.O_RDONLY)
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    os.lseek(fd, 0, 0)
    while os.read(fd, 1 << 20):
        pass
"""

# touches one byte of every page of a file mapping, again and again: a working set
PAGE_TOUCHER = """
import mmap, time
open("/proc/self/comm", "w").write("{name}")
f = open("{path}", "rb")
m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    for off in range(0, len(m), 4096):
        m[off]
"""


@contextmanager
def loop_device(workdir: str, mib: int = 64) -> Iterator[tuple[str, str]]:
    """A loop device over a sparse file of ``mib`` MiB in ``workdir``: yields its path and
    its "MAJ:MIN"; detached and removed afterwards."""
    img = os.path.join(workdir, "disk.img")
    with open(img, "wb") as f:
        f.truncate(mib << 20)
    dev = subprocess.run(["losetup", "--find", "--show", img], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        rdev = os.stat(dev).st_rdev
        yield dev, f"{os.major(rdev)}:{os.minor(rdev)}"
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            os.remove(img)


def io_limited_cgroup(name: str, dev: str, wbps: int) -> Iterator[tuple[object, int]]:
    """limited_cgroup whose writes to the block device ``dev`` ("MAJ:MIN") are limited to
    ``wbps`` bytes per second (v2 io.max, v1 blkio.throttle.write_bps_device)."""
    return limited_cgroup(name, "io", {"io.max": f"{dev} wbps={wbps}"},
                          {"blkio.throttle.write_bps_device": f"{dev} {wbps}"}, v1_controller="blkio")


# writes 256 KiB at a time to a block device with O_DIRECT (no page cache between the task
# and the device: each write waits for its own I/O), over its first 32 MiB again and again
DIRECT_WRITER = """
import mmap, os, time
open("/proc/self/comm", "w").write("{name}")
fd = os.open("{dev}", os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 256 << 10)          # page-aligned, as O_DIRECT needs
buf.write(os.urandom(256 << 10))
end = time.monotonic() + {seconds}
off = 0
while time.monotonic() < end:
    os.pwrite(fd, buf, off)
    off = (off + (256 << 10)) % (32 << 20)
"""


# {writers} processes rewriting {mib} MiB at the start of a file again and again: one file
# for all of them (shared: each write holds the file's i_rwsem for writing, so the others
# wait for it in turn) or a file each (path.N: no lock in common)
FILE_WRITERS = """
import os, time
buf = b"w" * ({mib} << 20)
pids = []
for i in range({writers}):
    pid = os.fork()
    if pid == 0:
        open("/proc/self/comm", "w").write("{name}"[:12] + "-" + str(i))
        fd = os.open("{path}" if {shared} else "{path}." + str(i), os.O_WRONLY | os.O_CREAT, 0o600)
        end = time.monotonic() + {seconds}
        while time.monotonic() < end:
            os.pwrite(fd, buf, 0)
        os._exit(0)
    pids.append(pid)
with open("{pidfile}.tmp", "w") as f:
    f.write(" ".join(map(str, pids)))
os.rename("{pidfile}.tmp", "{pidfile}")
for pid in pids:
    os.waitpid(pid, 0)
"""


def spawn_in_cgroup(ps: Procs, cg: object, code: str) -> subprocess.Popen[bytes]:
    """A scenario started inside cgroup ``cg`` (it joins before it runs any of its code)."""
    p = subprocess.Popen(["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$0" -c "$1"',
                          os.path.realpath(sys.executable), textwrap.dedent(code)], stdin=subprocess.DEVNULL)
    ps.procs.append(p)
    return p


@contextmanager
def rps_to(cpu: int, dev: str = "lo") -> Iterator[None]:
    """Receive packet steering: packets received on ``dev`` (loopback: every local send) are
    processed in the NET_RX softirq of ``cpu``, raised there by an IPI.  Restored after."""
    with written(f"/sys/class/net/{dev}/queues/rx-0/rps_cpus", format(1 << cpu, "x")):
        yield


@contextmanager
def ext4_loop(workdir: str, mib: int = 32) -> Iterator[str]:
    """An ext4 filesystem of ``mib`` MiB on a loop device (its image a sparse file in
    ``workdir``); yields its mount point.  Always thawed (a test may freeze it with ``fsfreeze
    -f``), unmounted and removed afterwards."""
    img, mnt = os.path.join(workdir, "frozen.img"), os.path.join(workdir, "frozen")
    os.makedirs(mnt, exist_ok=True)
    with open(img, "wb") as f:
        f.truncate(mib << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True)
    subprocess.run(["mount", "-o", "loop", img, mnt], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["fsfreeze", "-u", mnt], capture_output=True, check=False)
        for _ in range(50):
            if subprocess.run(["umount", mnt], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        try:
            os.remove(img)
        except OSError:
            pass


@contextmanager
def frozen_filesystem(workdir: str) -> Iterator[str]:
    """ext4_loop, frozen (fsfreeze -f) before it is yielded.  Writers to it block in D state
    (sb_start_write / percpu_rwsem_wait) until it is thawed."""
    with ext4_loop(workdir) as mnt:
        subprocess.run(["fsfreeze", "-f", mnt], check=True)
        yield mnt


@contextmanager
def small_tmpfs(workdir: str, size: str, read_only: bool = False) -> Iterator[str]:
    """A tmpfs of ``size`` bytes (a full disk, filled by the test) or mounted read-only;
    yields its mount point, unmounted afterwards."""
    mnt = os.path.join(workdir, "small-tmpfs")
    os.makedirs(mnt, exist_ok=True)
    opts = f"size={size},mode=0755" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "investigator-test", mnt], check=True)
    try:
        yield mnt
    finally:
        for _ in range(50):
            if subprocess.run(["umount", mnt], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)


FUSE_DAEMON = """
import os, struct, subprocess, threading, time
# A FUSE filesystem served by this process through /dev/fuse directly (no libfuse): the
# directories a and b and files in a.  It answers everything but RENAME.  A rename across
# the two directories takes the superblock's s_vfs_rename_mutex and then waits for the
# daemon's answer, holding the mutex; a second such rename waits for the mutex in D state.
# mode "silent": a RENAME or a SETATTR (truncate) is never answered (a daemon that never
# answers); a truncate holds the file's i_rwsem while it waits.
# mode "self": the daemon hands the RENAME to a worker thread that first renames across
# the same directories itself -- and blocks on the mutex its own client holds: a FUSE
# self-deadlock across layers.
# mode "nogetattr": attributes are never cached and a GETATTR is never answered: whoever
# stat()s a file of the mount hangs (the investigation must never).  The mount is detached
# when this process exits.
open("/proc/self/comm", "w").write("{name}")
end = time.monotonic() + {seconds}
mnt, mode = "{mnt}", "{mode}"
fd = os.open("/dev/fuse", os.O_RDWR)
subprocess.run(["mount", "-t", "fuse", "-o", f"fd={{fd}},rootmode=40000,user_id=0,group_id=0",
                "investigator-fuse", mnt], check=True, pass_fds=[fd])
S_IFDIR, S_IFREG = 0o040000, 0o100000
TREE = {{(1, b"a"): (2, S_IFDIR | 0o755), (1, b"b"): (3, S_IFDIR | 0o755)}}
for i, n in enumerate((b"x", b"z", b"x2")):
    TREE[(2, n)] = (10 + i, S_IFREG | 0o644)
MODES = {{ino: m for ino, m in TREE.values()}}
MODES[1] = S_IFDIR | 0o755

def attr(ino):
    return struct.pack("<6Q10I", ino, 0, 0, 0, 0, 0, 0, 0, 0, MODES[ino], 1, 0, 0, 0, 4096, 0)

def reply(unique, payload=b"", error=0):
    os.write(fd, struct.pack("<IiQ", 16 + len(payload), error, unique) + payload)

def worker():
    open("/proc/thread-self/comm", "w").write("{name}-wk")
    os.rename(mnt + "/a/x2", mnt + "/b/y2")      # blocks on s_vfs_rename_mutex

while time.monotonic() < end:
    try:
        req = os.read(fd, 1 << 20)
    except OSError:
        break
    length, opcode, unique, nodeid = struct.unpack_from("<IIQQ", req)
    if opcode == 26:                                   # INIT
        reply(unique, struct.pack("<IIIIHHIIHHII6I", 7, 31, 0, 0, 16, 12, 4096, 1, 1, 0, 0, 0, *[0] * 6))
        # ready once INIT is answered: before it, every request waits for the connection to
        # come up (fuse_get_req), not in the daemon's queues
        open("{ready}", "w").close()
    elif opcode == 1:                                  # LOOKUP
        ent = TREE.get((nodeid, req[40:].split(b"\\0")[0]))
        if ent:
            attr_valid = 0 if mode == "nogetattr" else 600
            reply(unique, struct.pack("<QQQQII", ent[0], 0, 600, attr_valid, 0, 0) + attr(ent[0]))
        else:
            reply(unique, error=-2)
    elif opcode == 3 and mode == "nogetattr":          # GETATTR: never answered
        continue
    elif opcode == 3:                                  # GETATTR
        reply(unique, struct.pack("<QII", 600, 0, 0) + attr(nodeid if nodeid in MODES else 1))
    elif opcode in (14, 27):                           # OPEN, OPENDIR
        reply(unique, struct.pack("<QII", 1, 0, 0))
    elif opcode == 4 and mode == "silent":             # SETATTR: never answered
        continue
    elif opcode in (12, 45):                           # RENAME, RENAME2: never answered
        if mode == "self":
            threading.Thread(target=worker, daemon=True).start()
    elif opcode == 38:                                 # DESTROY
        break
    else:
        reply(unique, error=-38)                       # ENOSYS
"""

FUSE_TRUNCATER = """
import os
open("/proc/self/comm", "w").write("{name}")
os.truncate("{path}", 0)      # takes the file's i_rwsem, then waits for the daemon's SETATTR answer
"""

FUSE_RENAMER = """
import os
open("/proc/self/comm", "w").write("{name}")
os.rename("{src}", "{dst}")       # across directories of the FUSE mount: waits for the daemon
"""


def _mount_dev(mnt: str) -> str:
    """major:minor of what is mounted on mnt, from mountinfo (a stat could hang on FUSE)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            a = line.split()
            if a[4] == mnt:
                return a[2]
    return ""


def abort_fuse(mnt: str) -> None:
    """Abort the FUSE connection mounted on mnt through fusectl (mounted for the moment if
    it is not): every request fails at once -- a client killed while its request is with
    the daemon would otherwise wait for the answer forever, and a self-deadlocked daemon
    never exits."""
    conn = _mount_dev(mnt).split(":")[-1]
    if not conn:
        return
    ctl = "/sys/fs/fuse/connections"
    mounted = False
    if not os.path.exists(f"{ctl}/{conn}"):
        mounted = subprocess.run(["mount", "-t", "fusectl", "fusectl", ctl], capture_output=True).returncode == 0
    try:
        with open(f"{ctl}/{conn}/abort", "w") as f:
            f.write("1")
    except OSError:
        pass
    if mounted:
        subprocess.run(["umount", ctl], capture_output=True)


@contextmanager
def fuse_mount(ps: Procs, workdir: str, mode: str, name: str = "fuse-daemon") -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A FUSE_DAEMON mounted on workdir/mnt.  On exit the connection is aborted, the daemon
    killed and the mount detached."""
    mnt, ready = os.path.join(workdir, "mnt"), os.path.join(workdir, "fuse-ready")
    os.makedirs(mnt, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(ready)
    daemon = ps.spawn(FUSE_DAEMON, name=name, mnt=mnt, ready=ready, mode=mode, seconds=SCENARIO_S)
    try:
        # an emulated guest takes seconds to start the daemon's Python: wait for the mount
        end = time.monotonic() + 120
        while not os.path.exists(ready):
            assert time.monotonic() < end, f"the FUSE daemon did not mount {mnt} in 120 s"
            wait_alive(daemon, 0.05)
        yield daemon, mnt
    finally:
        abort_fuse(mnt)
        daemon.kill()
        subprocess.run(["umount", "-l", mnt], capture_output=True)
