"""Evidence of ``file.locks``: flock/POSIX/OFD lock holders and blocked waiters as the kernel
lists them in /proc/locks (read at the start and the end of the window), the files they are
on, and "waiter waits for holder" edges.  The kernel does no deadlock detection for flock()
or OFD locks (POSIX locks return EDEADLK instead), so such a cycle stays forever.

/proc/locks gives no process for an OFD lock (its owner is an open file, listed as pid -1).
When OFD locks have waiters, the holders are found from the "lock:" lines of their open
files' /proc/PID/fdinfo, and the waiters are the tasks blocked in
fcntl(F_OFD_SETLKW) on a file with that inode (/proc/PID/task/TID/syscall)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from ...analyze.waitfor import Edge, wait_tasks
from ... import syscalls
from ...system.procfs import comm, current_syscall, open_file_id, read_in_child
from ._common import ProbeCollector, holder_tasks, task_entity

TOP = 20
PROC_LOCKS = "/proc/locks"
LOCKS_TIMEOUT_S = 2.0
KINDS = {"FLOCK": "flock", "POSIX": "posix", "OFDLCK": "ofd"}
FCNTL_NR, FLOCK_NR = syscalls.nr("fcntl"), syscalls.nr("flock")
F_SETLKW, F_OFD_SETLKW = 7, 38
MAX_FDS = 200_000               # open files looked at for OFD holders, per snapshot
MAX_TASKS = 100_000             # tasks looked at for OFD waiters, per snapshot
SCAN_S = 2.0                    # the /proc walks of one snapshot stop after this long


class Scan:
    """How far the /proc walks of one snapshot got: open files and tasks looked at, within
    their counts (MAX_FDS, MAX_TASKS) and one deadline; ``stopped`` says which bound ended
    a walk early (the snapshot is then partial)."""

    def __init__(self, seconds: float = SCAN_S) -> None:
        self.seconds = seconds
        self.t0 = time.monotonic()
        self.files = self.tasks = 0
        self.stopped: list[str] = []

    def _stop(self, why: str) -> bool:
        if why not in self.stopped:
            self.stopped.append(why)
        return False

    def in_time(self) -> bool:
        if time.monotonic() - self.t0 >= self.seconds:
            return self._stop(f"the {self.seconds:g} s deadline")
        return True

    def more_files(self) -> bool:
        return self._stop(f"{MAX_FDS} open files") if self.files >= MAX_FDS else self.in_time()

    def more_tasks(self) -> bool:
        return self._stop(f"{MAX_TASKS} tasks") if self.tasks >= MAX_TASKS else self.in_time()

    def evidence(self) -> dict[str, Any]:
        return {"files": self.files, "tasks": self.tasks, "s": round(time.monotonic() - self.t0, 3)}


def parse(text: str) -> list[dict[str, Any]]:
    """/proc/locks lines: ``1: FLOCK  ADVISORY  WRITE 1234 00:2f:5678 0 EOF`` and, for a
    blocked waiter of lock 1, ``1: -> FLOCK  ADVISORY  WRITE 1235 00:2f:5678 0 EOF``."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8 or not parts[0].endswith(":"):
            continue
        waiting = parts[1] == "->"
        f = parts[2:] if waiting else parts[1:]
        if len(f) < 7:
            continue
        try:
            lid, pid = int(parts[0][:-1]), int(f[3])
            major, minor, ino = f[4].split(":")
        except ValueError:
            continue
        out.append({"id": lid, "waiting": waiting, "type": f[0], "mode": f[1], "access": f[2],
                    "pid": pid, "dev": f"{major}:{minor}", "inode": int(ino), "start": f[5], "end": f[6]})
    return out


def _switches(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            vals = [int(line.split()[1]) for line in f if line.endswith("ctxt_switches\n")
                    or "ctxt_switches:" in line]
        return sum(vals)
    except (OSError, ValueError, IndexError):
        return None


def mount_devs() -> dict[int, str]:
    """Mount id -> its device as /proc/locks prints it (major:minor in hex), for our mount
    namespace (/proc/self/mountinfo)."""
    out = {}
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                major, minor = parts[2].split(":")
                out[int(parts[0])] = f"{int(major):02x}:{int(minor):02x}"
    except (OSError, ValueError, IndexError):
        pass
    return out


class OpenFile:
    """A process's open file, read without touching its filesystem: the link (d_path) and
    /proc/PID/fdinfo (mount id, inode, the locks it owns).  Never a plain stat(): that asks
    the filesystem, and a FUSE daemon that never answers would hang the investigation
    (where fdinfo has no inode, before 5.14, the kernel's cached attributes give it).  Only
    files with a path are read: the fdinfo of an epoll descriptor takes the epoll's mutex,
    which a task stuck in a poll can hold."""

    def __init__(self, pid: int, fd: str, mounts: dict[int, str]) -> None:
        self.path = os.readlink(f"/proc/{pid}/fd/{fd}")
        self.info = ""
        if self.path.startswith("/") and not self.path.startswith("/dev/"):
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                self.info = f.read()
        fields = dict(ln.split(":", 1) for ln in self.info.splitlines() if ":" in ln and not ln.startswith("lock:"))
        self.inode = int(fields.get("ino", "0").strip() or 0)
        self.dev = mounts.get(int(fields.get("mnt_id", "-1").strip() or -1), "")
        if self.info and "ino" not in fields:       # fdinfo before 5.14
            got = open_file_id(pid, fd)
            if got is not None:
                self.dev, self.inode = got

    def is_(self, dev: str, inode: int) -> bool:
        """The file on (dev, inode); a mount of another namespace has no device known to us:
        then the inode alone decides."""
        return bool(self.info) and self.inode == inode and (not self.dev or self.dev == dev)

    def locks(self) -> list[dict[str, Any]]:
        """The locks it owns (fdinfo "lock:" lines, in /proc/locks' format)."""
        return parse("\n".join(ln.split(":", 1)[1] for ln in self.info.splitlines() if ln.startswith("lock:")))


def _open_files(pid: int | str, mounts: dict[int, str], scan: Scan, limit: int = 4096) -> Iterator[OpenFile]:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return
    for fd in fds[:limit]:
        if not scan.more_files():
            return
        scan.files += 1
        try:
            yield OpenFile(int(pid), fd, mounts)
        except (OSError, ValueError):
            continue


def open_file_path(pid: int, dev: str, inode: int, mounts: dict[int, str], scan: Scan) -> str:
    """The file a lock is on, from the holder's open files."""
    return next((f.path for f in _open_files(pid, mounts, scan) if f.is_(dev, inode)), "")


def _ofd_holders(files: set[tuple[str, int]], mounts: dict[int, str], scan: Scan) -> dict[tuple[str, int], list[int]]:
    """(dev, inode) -> the processes with an open file that holds an OFD lock on it."""
    out: dict[tuple[str, int], list[int]] = {}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        if not scan.more_files():
            break
        for f in _open_files(pid, mounts, scan):
            if "OFDLCK" not in f.info:
                continue
            for e in f.locks():
                key = (e["dev"], e["inode"])
                if e["type"] == "OFDLCK" and key in files and pid not in out.get(key, []):
                    out.setdefault(key, []).append(pid)
    return out


def _ofd_waiters(files: set[tuple[str, int]], mounts: dict[int, str],
                 scan: Scan) -> list[tuple[int, int, tuple[str, int]]]:
    """(tid, pid, (dev, inode)) of the tasks blocked in fcntl(F_OFD_SETLKW) on those files."""
    out = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        if not scan.more_tasks():
            break
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            if not scan.more_tasks():
                break
            scan.tasks += 1
            call = current_syscall(pid, tid)
            if call is None or call[0] != FCNTL_NR or call[1][1:2] != [F_OFD_SETLKW]:
                continue
            try:
                f = OpenFile(int(pid), str(call[1][0]), mounts)
            except (OSError, ValueError):
                continue
            key = next((k for k in files if f.is_(*k)), None)
            if key:
                out.append((int(tid), int(pid), key))
    return out


def _blocked_thread(pid: int, dev: str, inode: int, mounts: dict[int, str], scan: Scan) -> int:
    """The thread of a process that waits for a file lock on (dev, inode): /proc/locks names
    the waiting process, and in a multi-threaded one that is seldom the thread that waits.
    The process's own id when no thread is found waiting in flock() or fcntl(F_SETLKW)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return pid
    if len(tids) < 2:
        return pid
    for tid in tids[:4096]:
        if not scan.more_tasks():
            break
        scan.tasks += 1
        call = current_syscall(pid, tid)
        if call is None:
            continue
        nr, args = call
        if nr == FLOCK_NR or (nr == FCNTL_NR and args[1:2] in ([F_SETLKW], [F_OFD_SETLKW])):
            try:
                if OpenFile(pid, str(args[0]), mounts).is_(dev, inode):
                    return int(tid)
            except (OSError, ValueError):
                continue
    return pid


def snapshot(seconds: float = SCAN_S) -> dict[str, Any]:
    """/proc/locks and its edges: (waiter tid, waiter pid, holder pid, lock id, waiting entry,
    held entry) -- the waiter being the thread that waits, found among its process's -- and
    the ``scan`` of /proc that found them (bounded by counts and ``seconds``)."""
    try:
        text = read_in_child(PROC_LOCKS, LOCKS_TIMEOUT_S, limit=1 << 22)
    except TimeoutError as e:
        raise TimeoutError(f"{e}: reading it takes the kernel's file-lock rwsem for writing, which "
                           "waits for an RCU grace period and for the file-lock calls in progress "
                           "(are RCU grace periods stalled?)") from None
    scan = Scan(seconds)
    entries = parse(text)
    holders = {e["id"]: e for e in entries if not e["waiting"]}
    edges = []
    ofd: dict[tuple[str, int], tuple[dict[str, Any], dict[str, Any]]] = {}
    mounts = mount_devs() if any(e["waiting"] for e in entries) else {}
    for e in entries:
        h = holders.get(e["id"])
        if e["waiting"] and h and e["pid"] > 0 and h["pid"] > 0:
            edges.append((_blocked_thread(e["pid"], e["dev"], e["inode"], mounts, scan), e["pid"], h["pid"], e["id"], e, h))
        elif e["waiting"] and h and e["type"] == "OFDLCK":
            ofd.setdefault((e["dev"], e["inode"]), (e, h))
    dropped = 0
    if ofd:
        owners = _ofd_holders(set(ofd), mounts, scan)
        found = _ofd_waiters(set(ofd), mounts, scan)
        for tid, pid, key in found:
            e, h = ofd[key]
            edges += [(tid, pid, holder, h["id"], e, h) for holder in owners.get(key, []) if holder != pid]
        if scan.stopped:        # OFD waits /proc/locks lists whose waiter the walk did not reach
            dropped = max(0, sum(1 for e in entries if e["waiting"] and e["type"] == "OFDLCK") - len(found))
    return {"entries": entries, "holders": holders, "edges": edges, "mounts": mounts, "scan": scan,
            "switches": {w: _switches(w) for w, *_ in edges}, "dropped": dropped}


class Collector(ProbeCollector):
    def start(self, inst: Any) -> None:
        self.seconds = min(SCAN_S, inst.values.get("scan_time", SCAN_S * 1e9) / 1e9)
        self.first = snapshot(self.seconds)

    def finish(self, inst: Any) -> dict[str, Any]:
        last = snapshot(self.seconds)
        window_s = round(max(0.0, time.monotonic() - inst.attached_at), 3)
        before = {(w, h, e["dev"], e["inode"]) for w, _, h, _, e, _ in self.first["edges"]}
        waiters, edges = [], []
        mounts = last["mounts"]          # read when it had waiters, as every edge has one
        # a lock is held by a process; when one of its threads itself waits for a file lock,
        # that thread is the holder in the wait-for graph (else the process's main thread)
        waiting_thread = {wpid: w for w, wpid, *_ in last["edges"]}
        for w, wpid, h, lid, e, he in last["edges"]:
            ht = waiting_thread.get(h, h)
            sw0, sw1 = self.first["switches"].get(w), last["switches"].get(w)
            stuck = (w, h, e["dev"], e["inode"]) in before and sw0 is not None and sw0 == sw1
            path = open_file_path(h, he["dev"], he["inode"], mounts, last["scan"])
            kind = KINDS.get(e["type"], e["type"].lower())
            lock = f"{kind} {path or e['dev'] + ':' + str(e['inode'])}"
            waiters.append({**task_entity(w, wpid, comm(w)), "lock": lock, "type": e["type"], "access": e["access"],
                            "path": path, "inode": e["inode"], "holder": task_entity(ht, h, comm(ht)),
                            "stuck": stuck, "waited_s": window_s if stuck else 0.0})
            edges.append(Edge(w, ht, lock, kind, path or f"{e['dev']}:{e['inode']}", window_s if stuck else 0.0,
                              stuck))
        held = [e for e in last["entries"] if not e["waiting"]]
        # what the holders do (the end of a chain): state, wchan and stack from /proc
        holders = holder_tasks((e.holder for e in edges), {w["tid"] for w in waiters}, TOP)
        return {
            "held_count": len(held),
            "flock_count": sum(1 for e in held if e["type"] == "FLOCK"),
            "posix_count": sum(1 for e in held if e["type"] == "POSIX"),
            "ofd_count": sum(1 for e in held if e["type"] == "OFDLCK"),
            "waiters_count": len(waiters),
            "stuck_waiters_count": sum(1 for w in waiters if w["stuck"]),
            "waiters": waiters[:TOP],
            "holders": holders,
            "edges": [e.evidence() for e in edges],
            "edges_dropped": last["dropped"],
            "wait_tasks": wait_tasks(waiters + holders, edges),
            **_partial(self.first["scan"], last["scan"]),
        }


def _partial(first: Scan, last: Scan) -> dict[str, Any]:
    """Whether a snapshot's /proc walks stopped early, why, and how far the closing one got."""
    why = [f"{name} snapshot stopped at {', '.join(s.stopped)} ({s.files} open files, {s.tasks} tasks looked at)"
           for name, s in (("the opening", first), ("the closing", last)) if s.stopped]
    return {"partial": bool(why), "partial_reason": "; ".join(why), "scanned": last.evidence()}
