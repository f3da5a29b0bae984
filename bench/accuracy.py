"""Reproducer x verdict: run every real reproducer of tests/scenarios (started before the
investigation, as in an incident), investigate it with the playbook meant for it at its
default windows, and write the table of docs/accuracy.md: the verdict expected, the verdict
got, whether its entities (TIDs in their roles, the CPU, the lock) are the right ones, and
the time from launch to verdict.  The text report of each run goes to docs/examples/.

    sudo .venv/bin/python bench/accuracy.py [--write docs/accuracy.md] [--only NAME]
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from docsplice import splice  # noqa: E402
sys.path.insert(0, str(REPO / "tests"))
from scenarios.build import c_helper  # noqa: E402
from scenarios.procs import (DIRECT_WRITER, FILE_WRITERS, FLOCK_ABBA, FUSE_RENAMER, NORMAL_HOG, PAGE_TOUCHER,  # noqa: E402
                             PERIODIC, PIPE_RESIZER, PTY_WRITERS, RT_HOG, STAT_REFRESH, UDP_READER, data_file, ext4_loop,
                             frozen_filesystem, fuse_mount, io_limited_cgroup, limited_cgroup, loop_device,
                             memory_cgroup, memory_refaults,
                             processes, rps_to, small_tmpfs, spawn_in_cgroup, start_abba, sysctl, threads_by_comm, wait_alive,
                             wait_file)

@dataclass
class Case:
    name: str
    what: str
    playbook: str
    node: str | None            # None: no verdict expected anywhere
    verdict: str | None
    setup: Callable[[Path], contextlib.AbstractContextManager[dict]]   # yields the expected entities
    forbid: tuple[str, ...] = ()   # verdicts that must not appear (look-alikes)
    sets: tuple[str, ...] = ()     # the playbook's vars for this machine (--set NAME=VALUE)
    via_freeze: bool = True        # also through freeze.yaml when its node is one of freeze's


@contextlib.contextmanager
def rt_hog(tmp: Path) -> Iterator[dict]:
    with processes() as ps:
        hog = ps.spawn(RT_HOG, name="rt-hog", cpu=1, rtprio=10, seconds=40)
        victim = ps.spawn(PERIODIC, name="periodic", cpu=1, period=0.005, work=0.02, seconds=40)
        wait_alive(victim, 2.5)
        yield {"roles": {victim.pid: "victim", hog.pid: "culprit"}, "cpus": [1]}


@contextlib.contextmanager
def rt_starves_rt(tmp: Path) -> Iterator[dict]:
    with processes() as ps:
        hog = ps.spawn(RT_HOG, name="rt-hog", cpu=1, rtprio=10, seconds=40)
        wait_alive(hog, 0.3)
        victim = ps.spawn(RT_HOG, name="rt-victim", cpu=1, rtprio=5, seconds=40)
        wait_alive(victim, 2.0)
        yield {"roles": {victim.pid: "victim", hog.pid: "culprit"}, "cpus": [1]}


@contextlib.contextmanager
def rt_hog_unthrottled(tmp: Path) -> Iterator[dict]:
    with sysctl("kernel.sched_rt_runtime_us", "-1"), processes() as ps:
        hog = ps.spawn(RT_HOG, name="rt-hog", cpu=1, rtprio=50, seconds=40)
        victim = ps.spawn(PERIODIC, name="periodic", cpu=1, period=0.005, work=0.02, seconds=40)
        wait_alive(victim, 2.5)
        yield {"roles": {victim.pid: "victim", hog.pid: "culprit"}, "cpus": [1]}


@contextlib.contextmanager
def wq_starved(tmp: Path) -> Iterator[dict]:
    with processes() as ps:
        hog = ps.spawn(RT_HOG, name="rt-hog", cpu=1, rtprio=10, seconds=40)
        ps.spawn(NORMAL_HOG, name="cfs-hog", cpu=1, seconds=40)
        w = ps.spawn(STAT_REFRESH, name="stat-refresh", cpu=0, period=0.05, seconds=40)
        wait_alive(w, 2.5)
        yield {"roles": {hog.pid: "culprit"}, "cpus": [1]}


@contextlib.contextmanager
def frozen_writer(tmp: Path) -> Iterator[dict]:
    with processes() as ps, frozen_filesystem(str(tmp)) as mnt:
        w = ps.spawn_argv(["sh", "-c", f"echo data > {mnt}/file"])
        wait_alive(w, 11.0)
        yield {"roles": {w.pid: "waiter"}}


def pthread_abba(mode: str = "threads") -> Callable[[Path], contextlib.AbstractContextManager[dict]]:
    """tests/scenarios/abba.c in one of its shapes (scenarios.procs.start_abba)."""
    @contextlib.contextmanager
    def setup(tmp: Path) -> Iterator[dict]:
        with processes() as ps:
            _, waiters = start_abba(ps, str(c_helper("abba", tmp)), mode, seconds=60)
            yield {"roles": {tid: "waiter" for tid, _ in waiters.values()},
                   "kind": "pthread_rwlock" if mode == "rwlock" else "pthread_mutex"}
    return setup


def flock_abba(how: str) -> Callable[[Path], contextlib.AbstractContextManager[dict]]:
    @contextlib.contextmanager
    def setup(tmp: Path) -> Iterator[dict]:
        with processes() as ps:
            parent, (a, b) = ps.spawn_with_pids(FLOCK_ABBA, str(tmp / "pids"), name="flock-abba", dir=str(tmp),
                                                seconds=60, how=how)
            wait_alive(parent, 1.5)
            yield {"roles": {a: "waiter", b: "waiter"}, "kind": how}
    return setup


@contextlib.contextmanager
def pthread_contention(tmp: Path) -> Iterator[dict]:
    exe = c_helper("contend", tmp)
    with processes() as ps:
        p = ps.spawn_argv([str(exe), "8", "40"])
        wait_alive(p, 1.5)
        yield {}


@contextlib.contextmanager
def kernel_mutex_contention(tmp: Path) -> Iterator[dict]:
    with processes() as ps:
        parent, pids = ps.spawn_with_pids(PTY_WRITERS, str(tmp / "pids"), name="ptylock", drain=0.05, chunk=64 * 1024, seconds=60)
        wait_alive(parent, 1.0)
        yield {"any_of": set(pids), "kind": "mutex"}


@contextlib.contextmanager
def lock_crowd(tmp: Path) -> Iterator[dict]:
    with small_tmpfs(str(tmp), "64m") as mnt, processes() as ps:
        parent, pids = ps.spawn_with_pids(FILE_WRITERS, str(tmp / "pids"), name="crowd", path=f"{mnt}/shared",
                                          writers=8, mib=1, shared=True, seconds=60)
        _, alone = ps.spawn_with_pids(FILE_WRITERS, str(tmp / "own"), name="alone", path=f"{mnt}/own",
                                      writers=4, mib=1, shared=False, seconds=60)
        wait_alive(parent, 1.0)
        yield {"roles": {pid: "waiter" for pid in pids}, "kind": "rwsem", "none_of": set(alone)}


@contextlib.contextmanager
def chain_to_reader(tmp: Path) -> Iterator[dict]:
    with processes() as ps:
        parent, (w0, w1) = ps.spawn_with_pids(PTY_WRITERS, str(tmp / "pids"), name="ptychain", drain=0, chunk=256 * 1024, seconds=60)
        wait_alive(parent, 1.0)
        yield {"roles": {w1: "waiter", w0: "holder"}, "kind": "mutex"}


@contextlib.contextmanager
def chain_to_fuse_daemon(tmp: Path) -> Iterator[dict]:
    with processes() as ps, fuse_mount(ps, str(tmp), "silent") as (daemon, mnt):
        r1 = ps.spawn(FUSE_RENAMER, name="fuse-ren1", src=f"{mnt}/a/x", dst=f"{mnt}/b/y")
        wait_alive(r1, 0.5)
        r2 = ps.spawn(FUSE_RENAMER, name="fuse-ren2", src=f"{mnt}/a/z", dst=f"{mnt}/b/w")
        wait_alive(r2, 1.0)
        yield {"roles": {r2.pid: "waiter", r1.pid: "waiter", daemon.pid: "holder"}, "kind": "fuse"}


@contextlib.contextmanager
def fuse_self_deadlock(tmp: Path) -> Iterator[dict]:
    with processes() as ps, fuse_mount(ps, str(tmp), "self") as (daemon, mnt):
        c = ps.spawn(FUSE_RENAMER, name="fuse-client", src=f"{mnt}/a/x", dst=f"{mnt}/b/y")
        wait_alive(c, 1.0)
        worker = threads_by_comm(daemon.pid)["fuse-daemon-wk"]
        yield {"roles": {c.pid: "waiter", worker: "waiter"}, "kind": "fuse"}


@contextlib.contextmanager
def reserved_cpu_intruder(tmp: Path) -> Iterator[dict]:
    with processes() as ps:
        ps.spawn(PERIODIC, name="latency-app", cpu=1, period=0.01, work=0.001, seconds=40)
        hog = ps.spawn(NORMAL_HOG, name="batch-job", cpu=1, seconds=40)
        wait_alive(hog, 0.5)
        yield {"roles": {hog.pid: "intruder"}, "cpus": [1]}


@contextlib.contextmanager
def misplaced_application(tmp: Path) -> Iterator[dict]:
    with processes() as ps:
        app = ps.spawn(NORMAL_HOG, name="latency-app", cpu=0, seconds=40)
        wait_alive(app, 0.5)
        yield {"roles": {app.pid: "misplaced"}, "cpus": [0]}


@contextlib.contextmanager
def softirq_flood(tmp: Path) -> Iterator[dict]:
    exe = c_helper("udp_flood", tmp)
    with rps_to(1), processes() as ps:
        a = ps.spawn_argv([str(exe), "0", "60", "flood-a"])
        ps.spawn_argv([str(exe), "1", "60", "flood-b"])
        wait_alive(a, 1.0)
        yield {}


@contextlib.contextmanager
def softirq_wrong_context(tmp: Path) -> Iterator[dict]:
    exe = c_helper("udp_flood", tmp)
    with rps_to(1), processes() as ps:
        s = ps.spawn_argv([str(exe), "0", "60", "udp-sender"])
        hog = ps.spawn(NORMAL_HOG, name="busy-hog", cpu=1, seconds=60)
        wait_alive(s, 1.0)
        yield {"roles": {hog.pid: "victim"}, "cpus": [1]}


@contextlib.contextmanager
def softirq_whose_packets(tmp: Path) -> Iterator[dict]:
    exe, portfile = c_helper("udp_flood", tmp), str(tmp / "port")
    with rps_to(1), processes() as ps:
        reader = ps.spawn(UDP_READER, name="udp-reader", cpu=0, portfile=portfile, seconds=60)
        s = ps.spawn_argv([str(exe), "0", "60", "udp-sender", wait_file(portfile, reader)])
        hog = ps.spawn(NORMAL_HOG, name="busy-hog", cpu=1, seconds=60)
        wait_alive(s, 1.0)
        yield {"roles": {hog.pid: "victim", s.pid: "culprit", reader.pid: "culprit"}}


@contextlib.contextmanager
def alloc_failures(tmp: Path) -> Iterator[dict]:
    with sysctl("fs.pipe-max-size", str(1 << 31)), processes() as ps:
        p = ps.spawn(PIPE_RESIZER, name="pipe-resizer", period=0.1, seconds=60)
        wait_alive(p, 0.5)
        yield {"roles": {p.pid: "victim"}}


@contextlib.contextmanager
def cpu_quota(tmp: Path) -> Iterator[dict]:
    name = f"inv-acc-thr-{os.getpid()}"
    with limited_cgroup(name, "cpu", {"cpu.max": "30000 100000"},
                        {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "30000"}) as (cg, _), processes() as ps:
        hog = spawn_in_cgroup(ps, cg, NORMAL_HOG.format(name="quota-hog", cpu=0, seconds=60))
        victim = spawn_in_cgroup(ps, cg, PERIODIC.format(name="quota-victim", cpu=1, period=0.01, work=0.001,
                                                         seconds=60))
        wait_alive(hog, 1.0)
        wait_alive(victim, 0)
        yield {"roles": {hog.pid: "culprit", victim.pid: "victim"}}


@contextlib.contextmanager
def memory_limit(tmp: Path) -> Iterator[dict]:
    """A task touching every page of a file mapping three times its cgroup's 32 MiB memory
    limit (on an ext4 of its own), again and again."""
    with ext4_loop(str(tmp), mib=256) as mnt, memory_cgroup(f"inv-acc-mem-{os.getpid()}", 32) as (cg, version), \
            processes() as ps:
        p = spawn_in_cgroup(ps, cg, PAGE_TOUCHER.format(name="mem-toucher", path=data_file(f"{mnt}/big", 96),
                                                        seconds=60))
        while memory_refaults(cg, version) < 20000:
            wait_alive(p, 0.05)
        yield {"roles": {p.pid: "victim"}}


@contextlib.contextmanager
def io_limit(tmp: Path) -> Iterator[dict]:
    """A writer of 256 KiB O_DIRECT writes in a cgroup whose writes to its loop device are
    limited to 1 MiB/s."""
    with loop_device(str(tmp)) as (dev, mm), io_limited_cgroup(f"inv-acc-io-{os.getpid()}", mm, 1 << 20) as (cg, _), \
            processes() as ps:
        p = spawn_in_cgroup(ps, cg, DIRECT_WRITER.format(name="io-writer", dev=dev, seconds=60))
        wait_alive(p, 1.0)
        yield {"roles": {p.pid: "victim"}}


@contextlib.contextmanager
def healthy(tmp: Path) -> Iterator[dict]:
    with processes() as ps:
        for cpu in range(os.cpu_count() or 1):
            ps.spawn(NORMAL_HOG, cpu=cpu, seconds=40)
            ps.spawn(PERIODIC, cpu=cpu, period=0.01, seconds=40)
        time.sleep(1.0)
        yield {}


def _held(mode: str, *extra: str, stop: bool = False) -> Callable[[Path], contextlib.AbstractContextManager[dict]]:
    """tests/scenarios/held.c: a waiter stuck on a process-shared mutex whose holder spins,
    sleeps (stopped with SIGSTOP when ``stop``), writes to a frozen filesystem, or lets go
    between holds (pulse)."""
    @contextlib.contextmanager
    def setup(tmp: Path) -> Iterator[dict]:
        exe = c_helper("held", tmp)
        with processes() as ps, contextlib.ExitStack() as stack:
            args = [a.format(mnt=stack.enter_context(frozen_filesystem(str(tmp)))) if "{mnt}" in a else a
                    for a in extra]
            proc = subprocess.Popen([str(exe), "60", mode, *args], stdout=subprocess.PIPE, text=True,
                                    stdin=subprocess.DEVNULL)
            ps.procs.append(proc)
            printed = dict(x.split("=") for x in proc.stdout.readline().split())  # type: ignore[union-attr]
            holder, waiter = int(printed["holder"]), int(printed["waiter"])
            if stop:
                os.kill(holder, signal.SIGSTOP)
            wait_alive(proc, 1.5)
            try:
                yield {"roles": {waiter: "waiter", holder: "holder"}, "kind": "pthread_mutex",
                       "any_of": {waiter, holder}}
            finally:
                if stop:
                    os.kill(holder, signal.SIGCONT)
                proc.kill()
    return setup


@contextlib.contextmanager
def priority_inversion(tmp: Path) -> Iterator[dict]:
    exe = c_helper("prio_inversion", tmp)
    with processes() as ps:
        proc = subprocess.Popen([str(exe), "60", "1", "20", "10"], stdout=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
        ps.procs.append(proc)
        printed = dict(x.split("=") for x in proc.stdout.readline().split())  # type: ignore[union-attr]
        wait_alive(proc, 2.5)
        yield {"roles": {int(printed["waiter"]): "victim", int(printed["middle"]): "culprit",
                         int(printed["holder"]): "holder"}, "cpus": [1], "kind": "pthread_mutex"}


RESERVED = ("reserved_cpus=[1]", "reserved_for=[latency-app]")
# freeze.yaml's questions: a reproducer of one of these is also run through freeze.yaml
FREEZE_NODES = {"cpu-starvation", "cpu-throttled", "workqueue-stall", "blocked-tasks", "user-deadlock", "holder-state",
                "irq-overload", "softirq-wrong-context", "memory-pressure", "io-stall", "kernel-locks",
                "softirq-whose-work"}
WINDOW_S = 5.0      # the default window of every playbook's nodes
CASES = [
    Case("rt-hog", "an RT busy loop starves a normal task on its CPU", "starvation.yaml", "cpu-starvation",
         "starvation", rt_hog),
    Case("rt-starves-rt", "a SCHED_FIFO 5 busy loop never runs behind a SCHED_FIFO 10 one on its CPU",
         "starvation.yaml", "cpu-starvation", "starvation", rt_starves_rt),
    Case("rt-hog-unthrottled", "rt-hog with RT throttling off (sched_rt_runtime_us = -1)", "freeze.yaml",
         "cpu-starvation", "starvation", rt_hog_unthrottled),
    Case("cpu-quota", "a busy loop and a periodic task in a cgroup with a CPU quota of 0.3 CPUs (30 ms per 100 ms)",
         "starvation.yaml", "cpu-throttled", "throttled", cpu_quota, forbid=("starvation",)),
    Case("wq-starved", "per-CPU kernel work waits behind an RT hog on its CPU", "starvation.yaml",
         "workqueue-stall", "starvation", wq_starved),
    Case("frozen-fs", "a writer on a frozen ext4, in D state for 11 s", "freeze.yaml", "blocked-tasks",
         "hung-task", frozen_writer, forbid=("deadlock",)),
    Case("pthread-abba", "two threads, two pthread mutexes, opposite orders", "deadlock.yaml", "user-deadlock",
         "deadlock", pthread_abba()),
    Case("pshared-abba", "two processes, two PTHREAD_PROCESS_SHARED mutexes in shared memory, opposite orders",
         "deadlock.yaml", "user-deadlock", "deadlock", pthread_abba("shared")),
    Case("container-abba", "pthread-abba in a pid namespace of its own (owner TIDs are the namespace's)",
         "deadlock.yaml", "user-deadlock", "deadlock", pthread_abba("pidns")),
    Case("rwlock-abba", "two threads, two pthread rwlocks write-locked, then wanted for writing and reading",
         "deadlock.yaml", "user-deadlock", "deadlock", pthread_abba("rwlock")),
    Case("flock-abba", "two processes, two flock()s, opposite orders", "deadlock.yaml", "user-deadlock",
         "deadlock", flock_abba("flock")),
    Case("ofd-abba", "two processes, two OFD locks (fcntl F_OFD_SETLKW), opposite orders", "deadlock.yaml",
         "user-deadlock", "deadlock", flock_abba("ofd")),
    Case("pthread-contention", "8 threads fight over two mutexes in the same order", "deadlock.yaml", None,
         None, pthread_contention, forbid=("deadlock",)),
    # one waiter at a time: no crowd for freeze.yaml's first look to route on (docs/limits.md)
    Case("kernel-mutex-contention", "two pty writers take turns on tty->atomic_write_lock", "deadlock.yaml",
         "kernel-locks", "contention", kernel_mutex_contention, forbid=("deadlock",), via_freeze=False),
    Case("lock-crowd", "eight processes rewrite the first MiB of one file (its i_rwsem); four more, a file each",
         "deadlock.yaml", "kernel-locks", "contention", lock_crowd, forbid=("deadlock",)),
    Case("chain-to-reader", "a writer waits for the tty mutex held by a writer waiting for a reader that never reads",
         "deadlock.yaml", "user-deadlock", "hung-task", chain_to_reader, forbid=("deadlock",)),
    Case("chain-to-fuse-daemon", "a rename waits for the rename mutex held by a rename waiting for a FUSE daemon "
         "that never answers", "deadlock.yaml", "user-deadlock", "hung-task", chain_to_fuse_daemon,
         forbid=("deadlock",)),
    Case("fuse-self-deadlock", "a FUSE daemon's worker waits for the rename mutex its own client holds",
         "deadlock.yaml", "user-deadlock", "deadlock", fuse_self_deadlock),
    Case("softirq-flood", "loopback UDP floods, NET_RX steered to CPU 1 (RPS)", "interrupts.yaml", "irq-overload",
         "overload", softirq_flood),
    Case("softirq-wrong-context", "NET_RX for another CPU's sender runs in a CPU hog", "interrupts.yaml",
         "softirq-wrong-context", "wrong-context", softirq_wrong_context),
    Case("softirq-whose-packets", "softirq-wrong-context, the sender flooding a reader's socket: whose packets were they",
         "interrupts.yaml", "softirq-whose-work", "wrong-context", softirq_whose_packets),
    Case("reserved-cpu-intruder", "a batch job busy on the CPU reserved for latency-app", "placement.yaml",
         "reserved-cpus", "wrong-context", reserved_cpu_intruder, sets=RESERVED),
    Case("misplaced-application", "latency-app busy on CPU 0, outside its reserved CPU 1", "placement.yaml",
         "reserved-cpus", "wrong-context", misplaced_application, sets=RESERVED),
    Case("alloc-failure", "kcalloc() beyond kmalloc's largest size, every 100 ms", "memory.yaml",
         "alloc-failures", "alloc-failure", alloc_failures),
    Case("memory-limit", "a task touching a file mapping three times its cgroup's 32 MiB memory limit",
         "memory.yaml", "memory-pressure", "memory-pressure", memory_limit),
    Case("io-limit", "a writer of O_DIRECT writes in a cgroup whose writes to its loop device are limited to 1 MiB/s",
         "io.yaml", "io-stall", "io-stall", io_limit),
    Case("holder-busy", "a waiter stuck on a mutex whose holder spins with it held", "freeze.yaml", "holder-state",
         "contention", _held("busy"), forbid=("deadlock",)),
    Case("holder-stopped", "a waiter stuck on a mutex whose holder was stopped with SIGSTOP", "freeze.yaml",
         "holder-state", "hung-task", _held("sleep", stop=True), forbid=("deadlock",)),
    Case("holder-on-frozen-fs", "a waiter stuck on a mutex whose holder writes to a frozen ext4", "freeze.yaml",
         "holder-state", "hung-task", _held("write", "{mnt}/file"), forbid=("deadlock",)),
    Case("priority-inversion", "a SCHED_FIFO 20 waiter, a normal holder of its mutex, a SCHED_FIFO 10 spinner, "
         "all on CPU 1", "freeze.yaml", "holder-state", "priority-inversion", priority_inversion,
         forbid=("deadlock",)),
    Case("holder-lets-go", "a holder that takes the mutex 50 ms at a time and lets go in between", "freeze.yaml",
         None, None, _held("pulse"), forbid=("deadlock", "hung-task", "contention")),
    Case("healthy", "every CPU busy with normal hogs and periodic tasks", "freeze.yaml", None, None, healthy,
         forbid=("deadlock", "starvation", "hung-task", "wrong-context", "overload", "alloc-failure", "contention",
                 "memory-pressure", "io-stall", "throttled")),
]


def entities_ok(v: dict, want: dict) -> tuple[bool, str]:
    got = {t["tid"]: t["role"] for t in v.get("tasks", [])}
    for tid, role in want.get("roles", {}).items():
        if got.get(tid) != role:
            return False, f"tid {tid} should be {role}, got {got.get(tid)}"
    if "cpus" in want and v.get("cpus") != want["cpus"]:
        return False, f"cpus {v.get('cpus')} != {want['cpus']}"
    if "any_of" in want and not (set(got) & want["any_of"]):
        return False, f"none of {sorted(want['any_of'])} in {sorted(got)}"
    if want.get("none_of", set()) & set(got):
        return False, f"look-alike(s) {sorted(want['none_of'] & set(got))} named"
    if "kind" in want and not any(lk.get("kind") == want["kind"] for lk in v.get("locks", [])):
        return False, f"no {want['kind']} among the locks"
    return True, ""


def run_case(c: Case, out: Path, suffix: str = "") -> dict:
    with tempfile.TemporaryDirectory(prefix=f"acc-{c.name}-") as d:
        tmp = Path(d)
        with c.setup(tmp) as want:
            t0, launched = time.monotonic(), time.time()
            p = subprocess.run([sys.executable, "-m", "investigator", f"playbooks/{c.playbook}", "--json",
                                "--out", str(tmp / "b"), *[a for s in c.sets for a in ("--set", s)]],
                               cwd=REPO, capture_output=True, text=True, timeout=300)
            took = time.monotonic() - t0
        rep = json.loads(p.stdout or "{}")
        concluded = _concluded_at(tmp / "b" / "events.jsonl", c.node, launched)
        text = subprocess.run([sys.executable, "-m", "investigator", "replay", str(tmp / "b")], cwd=REPO,
                              capture_output=True, text=True).stdout
    (out / f"{c.name}{suffix}.txt").write_text(text)
    verdicts = rep.get("verdicts", [])
    row = {"case": c.name, "what": c.what, "playbook": c.playbook, "node": c.node or "-",
           "expected": c.verdict or "none", "seconds": round(took, 2)}
    bad = [v["verdict"] + "@" + v["node"] for v in verdicts if v["verdict"] in c.forbid]
    if c.verdict is None:
        row["got"] = ", ".join(sorted({v["verdict"] for v in verdicts})) or "none"
        row["ok"] = not bad
        row["entities"] = "-"
        row["note"] = f"look-alike verdicts: {bad}" if bad else ""
        return row
    mine = [v for v in verdicts if v["node"] == c.node]
    row["got"] = mine[0]["verdict"] if mine else "none"
    # how the run got there: the nodes walked from a start node to this one, and when this
    # one concluded (the tool's own progress line)
    nodes = {n["id"]: n for n in rep.get("nodes", [])}
    hops, cur = 1, nodes.get(c.node or "")
    while cur and cur.get("reached_from") and hops < 10:
        cur, hops = nodes.get(cur["reached_from"][0]), hops + 1
    row["hops"] = hops
    row["root_at"] = concluded
    row["root"] = bool(mine) and mine[0].get("symptom_of") is None
    ok_e, why = entities_ok(mine[0], want) if mine else (False, "no verdict")
    row["ok"] = bool(mine) and mine[0]["verdict"] == c.verdict and not bad
    row["entities"] = "right" if ok_e else "WRONG"
    row["note"] = why or (f"look-alike verdicts: {bad}" if bad else mine[0]["summary"][:140])
    return row


def _concluded_at(events: Path, node: str | None, launched: float) -> float | None:
    """Seconds from launch to the node's conclusion, from the run's event log (its UTC
    timestamps against the launch's wall clock)."""
    if node is None or not events.exists():
        return None
    for line in events.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("event") == "node_concluded" and ev.get("node") == node and ev.get("status") == "confirmed":
            ts = datetime.datetime.fromisoformat(ev["ts"].replace("Z", "+00:00")).timestamp()
            return round(ts - launched, 2)
    return None


def render(rows: list[dict]) -> str:
    lines = ["| reproducer | playbook -> node | expected | got | entities | hops | root cause at | launch -> exit |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mark = "" if r["ok"] else " **(miss)**"
        root = "-" if r.get("root_at") is None else f"{r['root_at']} s" + ("" if r.get("root") else " (a symptom)")
        lines.append(f"| `{r['case']}`: {r['what']} | {r['playbook']} -> {r['node']} | {r['expected']} | "
                     f"{r['got']}{mark} | {r['entities']} | {r.get('hops', '-')} | {root} | {r['seconds']} s |")
    ok = sum(r["ok"] and r["entities"] != "WRONG" for r in rows)
    lines.append("")
    lines.append(f"{ok} of {len(rows)} right (verdict and entities); kernel {os.uname().release}, "
                 f"{os.cpu_count()} CPUs, playbooks at their default windows.")
    flagship = [r for r in rows if r["playbook"] == "freeze.yaml" and r.get("root_at") is not None]
    if flagship:
        budget = 2 * WINDOW_S + 1.0
        within = [r for r in flagship if r["root_at"] <= budget]
        lines.append(f"Through freeze.yaml, {len(within)} of {len(flagship)} verdicts came within two windows "
                     f"plus one second of launch ({budget:g} s); the latest at "
                     f"{max(r['root_at'] for r in flagship)} s ({max(flagship, key=lambda r: r['root_at'])['case']}).")
    lines.append("")
    lines += [f"- `{r['case']}`: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(lines) + "\n"


def through_freeze(c: Case) -> Case | None:
    """The same reproducer through the flagship, when its question is one of freeze.yaml's
    (the focused playbooks take their nodes from it): the same node, verdict and entities."""
    if c.playbook == "freeze.yaml" or not c.via_freeze or (c.node is not None and c.node not in FREEZE_NODES):
        return None
    return dataclasses.replace(c, playbook="freeze.yaml", sets=())


def main() -> int:
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    out = REPO / "docs" / "examples"
    out.mkdir(exist_ok=True)
    rows = []
    for case in CASES:
        if only and case.name != only:
            continue
        for c in (case, through_freeze(case)):
            if c is None:
                continue
            r = run_case(c, out, suffix="" if c is case else "-freeze")
            print(f"{r['case']:<26} {c.playbook:<16} expected {r['expected']:<14} got {r['got']:<14} "
                  f"entities {r['entities']:<6} {r['seconds']:>6} s", flush=True)
            rows.append(r)
            time.sleep(1.0)       # let the previous scenario's load drain
    table = render(rows)
    if "--write" in sys.argv:
        splice(Path(sys.argv[sys.argv.index("--write") + 1]), "accuracy", table)
    print(table)
    return 0 if all(r["ok"] and r["entities"] != "WRONG" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
