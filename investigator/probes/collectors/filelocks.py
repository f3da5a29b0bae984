"""Evidence of ``file.locks``: flock/POSIX/OFD lock holders and blocked waiters as the kernel
lists them in /proc/locks (read at the start and the end of the window), the files they are
on, and "waiter waits for holder" edges.  The kernel does no deadlock detection for flock()
(POSIX locks return EDEADLK instead), so a flock cycle stays forever."""

from __future__ import annotations

import os
from typing import Any

from ._common import task_entity

TOP = 20
PROC_LOCKS = "/proc/locks"


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


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _switches(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            vals = [int(line.split()[1]) for line in f if line.endswith("ctxt_switches\n")
                    or "ctxt_switches:" in line]
        return sum(vals)
    except (OSError, ValueError, IndexError):
        return None


def _path(pid: int, dev: str, inode: int) -> str:
    """The file a lock is on, from the holder's open files (dev major:minor in hex)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return ""
    major, minor = (int(x, 16) for x in dev.split(":"))
    for fd in fds[:4096]:
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
            if st.st_ino == inode and os.major(st.st_dev) == major and os.minor(st.st_dev) == minor:
                return os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
    return ""


def snapshot() -> dict[str, Any]:
    with open(PROC_LOCKS) as f:
        entries = parse(f.read(1 << 22))
    holders = {e["id"]: e for e in entries if not e["waiting"]}
    edges = []
    for e in entries:
        h = holders.get(e["id"])
        if e["waiting"] and h and e["pid"] > 0 and h["pid"] > 0:
            edges.append((e["pid"], h["pid"], e["id"], e, h))
    return {"entries": entries, "holders": holders, "edges": edges,
            "switches": {w: _switches(w) for w, *_ in edges}}


class Collector:
    def start(self, inst: Any) -> None:
        self.first = snapshot()

    def finish(self, inst: Any) -> dict[str, Any]:
        last = snapshot()
        window_s = round(max(0.0, __import__("time").monotonic() - inst.attached_at), 3)
        before = {(w, h, e["dev"], e["inode"]) for w, h, _, e, _ in self.first["edges"]}
        waiters, edges = [], []
        for w, h, lid, e, he in last["edges"]:
            sw0, sw1 = self.first["switches"].get(w), last["switches"].get(w)
            stuck = (w, h, e["dev"], e["inode"]) in before and sw0 is not None and sw0 == sw1
            path = _path(h, he["dev"], he["inode"])
            lock = f"{e['type'].lower()} {path or e['dev'] + ':' + str(e['inode'])}"
            waiters.append({**task_entity(w, w, _comm(w)), "lock": lock, "type": e["type"], "access": e["access"],
                            "path": path, "inode": e["inode"], "holder": task_entity(h, h, _comm(h)),
                            "stuck": stuck, "waited_s": window_s if stuck else 0.0})
            edges.append({"waiter": w, "holder": h, "lock": lock, "kind": e["type"].lower(),
                          "stuck": stuck, "waited_s": window_s if stuck else 0.0})
        held = [e for e in last["entries"] if not e["waiting"]]
        return {
            "held_count": len(held),
            "flock_count": sum(1 for e in held if e["type"] == "FLOCK"),
            "posix_count": sum(1 for e in held if e["type"] == "POSIX"),
            "waiters_count": len(waiters),
            "stuck_waiters_count": sum(1 for w in waiters if w["stuck"]),
            "waiters": waiters[:TOP],
            "edges": edges[:TOP * 4],
        }
