"""Evidence of ``fuse.requests`` (probes/fuse.bpf.c): FUSE requests that have no answer yet,
who made them and which daemon owes the answer, snapshotted by a task_file iterator when the
window opens and when it closes.

A request present in both snapshots (same connection, same ``unique``) was not answered
during the window: its client's wait is *stuck*.  The client waits for the daemon -- the
process holding the connection's /dev/fuse open -- and, more precisely, for those of its
threads that are busy (not idle waiting for the next request in fuse_dev_do_read, poll or a
futex): a thread that read the request and is now blocked is what the answer waits for.
When every daemon thread is idle the request was lost or ignored: the wait ends at the
daemon's main thread ("a daemon that never answers").

Nothing here touches a FUSE mount (a stat of a stuck mount would hang the investigation):
the connection's mount point comes from /proc/self/mountinfo, the tasks from /proc."""

from __future__ import annotations

import ctypes as C
import os
from typing import Any

from ...analyze.waitfor import Edge, wait_tasks
from ...finding import Finding, Lock, Task
from ...system.procfs import PidNamespaces
from ._common import ProbeCollector, iter_records, proc_task, snapshot_bounds, task_entity

u32, u64 = C.c_uint32, C.c_uint64
TOP = 50
MAX_THREADS = 256             # threads of one daemon looked at
MAX_TARGETS = 16              # busy daemon threads a client's wait points to
REC_DEVICE, REC_REQUEST = 1, 2
HZ_VALUES = (100, 250, 300, 1000)
WHERE = {0: "pending", 1: "processing", 2: "io"}
# where a daemon thread sleeps while it has no request to work on
IDLE_WCHANS = ("fuse_dev_do_read", "do_epoll_wait", "ep_poll", "do_sys_poll", "do_select", "core_sys_select",
               "futex_wait_queue", "futex_do_wait", "futex_wait", "io_uring_cqring_wait", "io_cqring_wait")
# include/uapi/linux/fuse.h
OPCODES = {1: "LOOKUP", 2: "FORGET", 3: "GETATTR", 4: "SETATTR", 5: "READLINK", 6: "SYMLINK", 8: "MKNOD",
           9: "MKDIR", 10: "UNLINK", 11: "RMDIR", 12: "RENAME", 13: "LINK", 14: "OPEN", 15: "READ",
           16: "WRITE", 17: "STATFS", 18: "RELEASE", 20: "FSYNC", 21: "SETXATTR", 22: "GETXATTR",
           23: "LISTXATTR", 24: "REMOVEXATTR", 25: "FLUSH", 26: "INIT", 27: "OPENDIR", 28: "READDIR",
           29: "RELEASEDIR", 30: "FSYNCDIR", 31: "GETLK", 32: "SETLK", 33: "SETLKW", 34: "ACCESS",
           35: "CREATE", 36: "INTERRUPT", 37: "BMAP", 38: "DESTROY", 39: "IOCTL", 40: "POLL",
           41: "NOTIFY_REPLY", 42: "BATCH_FORGET", 43: "FALLOCATE", 44: "READDIRPLUS", 45: "RENAME2",
           46: "LSEEK", 47: "COPY_FILE_RANGE", 48: "SETUPMAPPING", 49: "REMOVEMAPPING", 50: "SYNCFS",
           51: "TMPFILE", 52: "STATX"}


class FuseRec(C.Structure):
    _fields_ = [("kind", u32), ("where", u32), ("tgid", u32), ("fd", u32), ("conn", u32), ("ns_level", u32),
                ("opcode", u32), ("client", u32), ("unique", u64), ("nodeid", u64), ("age_jiffies", u64),
                ("jiffies", u64), ("now_ns", u64), ("comm", C.c_char * 16)]


LAYOUTS = {"fuse_rec": FuseRec}


def conn_name(conn: int) -> str:
    """A connection as /sys/fs/fuse/connections and mountinfo name it (major:minor)."""
    return f"{conn >> 20}:{conn & 0xfffff}"


def mounts() -> dict[str, dict[str, str]]:
    """major:minor -> {mountpoint, fstype, source} of this mount namespace's FUSE mounts."""
    out: dict[str, dict[str, str]] = {}
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                a, b = left.split(), right.split()
                if len(a) >= 5 and b and b[0].startswith("fuse"):
                    out.setdefault(a[2], {"mountpoint": a[4], "fstype": b[0], "source": b[1] if len(b) > 1 else ""})
    except OSError:
        pass
    return out


def snapshot(inst: Any) -> dict[str, Any]:
    """One pass of the iterator: the daemons' /dev/fuse files and the unanswered requests
    (by (conn, unique); a request seen through several files is kept once)."""
    devices: dict[int, dict[int, dict[str, Any]]] = {}     # conn -> tgid -> {comm, fds}
    reqs: dict[tuple[int, int], dict[str, Any]] = {}
    now_ns, jiffies = 0, 0
    snap = iter_records(inst, FuseRec)
    for r in snap.records:
        if r.kind == REC_DEVICE and not now_ns:
            now_ns, jiffies = r.now_ns, r.jiffies
        if r.kind == REC_DEVICE:
            d = devices.setdefault(r.conn, {}).setdefault(
                r.tgid, {"comm": bytes(r.comm).split(b"\0", 1)[0].decode(errors="replace"), "fds": [],
                         "ns_level": r.ns_level})
            d["fds"].append(r.fd)
        elif r.kind == REC_REQUEST:
            key = (r.conn, r.unique)
            q = reqs.get(key)
            if q is None:
                q = reqs[key] = {"conn": r.conn, "unique": r.unique, "opcode": r.opcode, "client_ns_pid": r.client,
                                 "nodeid": r.nodeid, "where": WHERE.get(r.where, str(r.where)),
                                 "age_jiffies": r.age_jiffies, "ns_level": r.ns_level, "daemons": []}
            if r.where and r.tgid not in q["daemons"]:      # read by this daemon
                q["daemons"].append(r.tgid)
    return {"devices": devices, "requests": reqs, "now_ns": now_ns, "jiffies": jiffies, "snapshot": snap}


def hz(first: dict[str, Any], last: dict[str, Any]) -> int:
    """The kernel's HZ from two snapshots' (ktime, jiffies), snapped to the usual values;
    0 when the window gave no two readings."""
    dt = (last["now_ns"] - first["now_ns"]) / 1e9
    if not first["now_ns"] or not last["now_ns"] or dt < 0.2:
        return 0
    rate = (last["jiffies"] - first["jiffies"]) / dt
    return min(HZ_VALUES, key=lambda h: abs(h - rate))


def _threads(tgid: int) -> list[dict[str, Any]]:
    try:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{tgid}/task"))[:MAX_THREADS]
    except OSError:
        return []
    return [t for t in (proc_task(tid, with_stack=False) for tid in tids) if t]


def busy(t: dict[str, Any]) -> bool:
    """A daemon thread that is working on something (running, or sleeping anywhere but in a
    wait for the next request)."""
    return t["state"] in ("R", "D") or not any(t["wchan"].startswith(w) for w in IDLE_WCHANS)


class Collector(ProbeCollector):
    def start(self, inst: Any) -> None:
        self.first = snapshot(inst)

    def finish(self, inst: Any) -> dict[str, Any]:
        last = snapshot(inst)
        window_s = max(0.0, (last["now_ns"] - self.first["now_ns"]) / 1e9) if self.first["now_ns"] else 0.0
        per_s = hz(self.first, last)
        mnt = mounts()
        threads: dict[int, list[dict[str, Any]]] = {}
        for per in last["devices"].values():
            for tgid in per:
                threads.setdefault(tgid, _threads(tgid))
        thread_by_tid = {t["tid"]: t for ts in threads.values() for t in ts}
        namespaces = PidNamespaces()
        requests, edges, clients = [], [], []
        for key, q in sorted(last["requests"].items()):
            stuck = key in self.first["requests"]
            age_s = round(q["age_jiffies"] / per_s, 3) if per_s and q["age_jiffies"] else None
            waited = age_s if age_s is not None else (round(window_s, 3) if stuck else 0.0)
            owners = q["daemons"] or sorted(last["devices"].get(q["conn"], {}))
            client_tid = q["client_ns_pid"]
            if q["ns_level"] and client_tid and owners:
                client_tid = namespaces.global_tid(owners[0], client_tid)
            client = proc_task(client_tid) if client_tid else None
            targets: list[dict[str, Any]] = []
            for d in owners:
                ts = threads.get(d) or []
                targets += [t for t in ts if busy(t)][:MAX_TARGETS]
            if not targets:
                targets = [t for d in owners for t in threads.get(d, [])[:1]]    # main thread
            m_ = mnt.get(conn_name(q["conn"]), {})
            req = {"conn": conn_name(q["conn"]), "mountpoint": m_.get("mountpoint", ""), "fstype": m_.get("fstype", ""),
                   "op": OPCODES.get(q["opcode"], str(q["opcode"])), "opcode": q["opcode"], "unique": q["unique"],
                   "nodeid": q["nodeid"], "where": q["where"], "age_s": age_s, "waited_s": waited, "stuck": stuck,
                   "client": client or task_entity(client_tid, client_tid, ""), "daemon_pids": owners,
                   "waits_for": [t["tid"] for t in targets]}
            requests.append(req)
            if client and client["tid"] not in {t["tid"] for t in targets}:
                clients.append(client)
                where = req["mountpoint"] or req["conn"]
                edges += [Edge(client["tid"], t["tid"], f"fuse {req['op']} #{q['unique']} {where}", "fuse", where,
                               waited or 0.0, stuck) for t in targets]
        requests.sort(key=lambda r: (not r["stuck"], -(r["waited_s"] or 0.0)))
        daemons = []
        for conn, per in sorted(last["devices"].items()):
            m_ = mnt.get(conn_name(conn), {})
            for tgid, d in sorted(per.items()):
                ts = threads.get(tgid, [])
                daemons.append({"conn": conn_name(conn), "mountpoint": m_.get("mountpoint", ""),
                                "fstype": m_.get("fstype", ""), **task_entity(tgid, tgid, d["comm"]), "fds": d["fds"],
                                "threads": [{k: t[k] for k in ("tid", "pid", "comm", "state", "wchan")} | {"busy": busy(t)}
                                            for t in ts[:TOP]],
                                "unanswered": sum(1 for r in requests if r["conn"] == conn_name(conn))})
        stuck_reqs = [r for r in requests if r["stuck"]]
        worst = Finding.empty(request=None)
        if requests:
            w = requests[0]
            holders = [Task.of(thread_by_tid[x], "holder") for x in w["waits_for"]]
            worst = Finding(
                tasks=[Task.of(w["client"], "waiter"), *holders],
                locks=[Lock("fuse", f"{w['conn']}#{w['unique']}", holder_tid=holders[0].tid if holders else 0,
                            waiter_tid=w["client"]["tid"],
                            extra={"lock": f"fuse {w['op']} #{w['unique']}", "conn": w["conn"]})],
                files=[w["mountpoint"]] if w["mountpoint"] else [],
                details={"request": {k: w[k] for k in ("conn", "mountpoint", "op", "unique", "where", "waited_s",
                                                       "stuck")}})
        return {
            "count": len(requests),
            "stuck_count": len(stuck_reqs),
            "max_waited_s": max((r["waited_s"] or 0.0 for r in stuck_reqs), default=0.0),
            "requests": requests[:TOP],
            "daemons": daemons[:TOP],
            "edges": [e.evidence() for e in edges],
            # requests beyond a snapshot's record limit: their clients' waits are unknown
            "edges_dropped": last["snapshot"].dropped,
            "wait_tasks": wait_tasks(clients + list(thread_by_tid.values()), edges),
            "worst": worst.to_dict(),
            **snapshot_bounds(self.first["snapshot"], last["snapshot"]),
        }
