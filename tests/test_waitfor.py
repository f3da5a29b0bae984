"""The merged wait-for graph (waitfor.*) on real reproducers started before the
investigation: a flock ABBA deadlock between two processes, and a kernel-mutex chain that
ends in a task waiting for a reader that never reads -- hung-task, not deadlock; a kernel
lock chain that ends in a FUSE daemon that never answers (hung-task), and a FUSE daemon
blocked on a kernel lock its own client holds (a deadlock across layers).  All are concluded
by playbooks/freeze.yaml's user-deadlock node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, investigate
from scenarios.procs import (FLOCK_ABBA, FUSE_RENAMER, FUSE_TRUNCATER, PTY_WRITERS, SCENARIO_S, fuse_mount,
                             processes, threads_by_comm, wait_alive)


pytestmark = [pytest.mark.bpf]


def freeze(tmp: Path) -> tuple[dict, dict]:
    p = investigate("playbooks/freeze.yaml", "--window", "2", "--json", "--out", str(tmp / "b"))
    assert p.returncode == 1, p.stderr
    rep = json.loads(p.stdout)
    return rep, next(v for v in rep["verdicts"] if v["node"] == "user-deadlock")


@pytest.mark.kernel_510
@pytest.mark.parametrize("how", ["flock", "ofd", "flock-thread"])
def test_flock_abba_deadlock_names_both_processes_and_files(tmp_path: Path, how: str) -> None:
    """flock(); OFD locks, whose owner /proc/locks does not list (pid -1): it is found from
    the holders' fdinfo and the waiters' fcntl() calls; and flock() asked for by a second
    thread of each process, while /proc/locks names the process: the waiting thread is
    found by its flock() call, and it stands for its process as the holder."""
    with processes() as ps:
        parent, (p0, p1) = ps.spawn_with_pids(FLOCK_ABBA, str(tmp_path / "pids"), name="flock-abba",
                                              dir=str(tmp_path), seconds=SCENARIO_S, how=how)
        wait_alive(parent, 1.5)           # both hold one lock and wait for the other
        t0, t1, suffix = p0, p1, ""
        if how == "flock-thread":
            t0, t1, suffix = threads_by_comm(p0)["flock-abba-0-t"], threads_by_comm(p1)["flock-abba-1-t"], "-t"
        rep, v = freeze(tmp_path)
    assert v["verdict"] == "deadlock", v
    assert {(t["tid"], t["pid"]) for t in v["tasks"]} == {(t0, p0), (t1, p1)}
    assert {t["comm"] for t in v["tasks"]} == {"flock-abba-0" + suffix, "flock-abba-1" + suffix}
    locks = {(lk["holder_tid"], lk["waiter_tid"]): lk for lk in v["locks"]}
    kind = how.split("-")[0]
    # p0 holds first.lock and waits for second.lock, which p1 holds; and the reverse
    assert locks[(t0, t1)]["lock"] == f"{kind} {tmp_path}/first.lock"
    assert locks[(t1, t0)]["lock"] == f"{kind} {tmp_path}/second.lock"
    assert all(lk["source"] == "filelocks" for lk in v["locks"])
    assert "2 tasks wait for each other's locks" in v["summary"]
    # replay gives the same verdict from the bundle alone
    r = investigate("replay", str(tmp_path / "b"), "--json")
    again = next(x for x in json.loads(r.stdout)["verdicts"] if x["node"] == "user-deadlock")
    assert again["summary"] == v["summary"]


@pytest.mark.second_kernel
def test_mutex_chain_ending_in_a_reader_that_never_reads_is_hung_task(tmp_path: Path) -> None:
    with processes() as ps:
        parent, (w0, w1) = ps.spawn_with_pids(PTY_WRITERS, str(tmp_path / "pids"), name="ptychain", drain=0,
                                              chunk=256 * 1024, seconds=SCENARIO_S)
        wait_alive(parent, 1.0)           # w0 blocks holding the tty write mutex; w1 waits for it
        rep, v = freeze(tmp_path)
    assert v["verdict"] == "hung-task", v
    roles = {(t["tid"], t["role"]) for t in v["tasks"]}
    assert roles == {(w1, "waiter"), (w0, "holder")}, roles
    (lk,) = v["locks"]
    assert lk["kind"] == "mutex" and lk["waiter_tid"] == w1 and lk["holder_tid"] == w0
    assert f"ptychain-w0 (tid {w0}), sleeping in wait_woken" in v["summary"], v["summary"]
    # not a deadlock, and the other nodes stay quiet
    assert all(x["verdict"] != "deadlock" for x in rep["verdicts"])


# Lock owners come from task->blocker (6.16+) or, on any kernel, from the waiter on the
# blocked task's stack: these run on this kernel and in the second-kernel guests.
NEEDS_FUSE = [pytest.mark.second_kernel,
              pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")]


def _needs_fuse(f):  # type: ignore[no-untyped-def]
    for m in NEEDS_FUSE:
        f = m(f)
    return f


@_needs_fuse
def test_lock_chain_ending_in_a_fuse_daemon_that_never_answers_is_hung_task(tmp_path: Path) -> None:
    """Two renames across the directories of one FUSE mount: the first holds the
    superblock's rename mutex and waits for the daemon's answer, which never comes; the
    second waits for the mutex in D state.  The chain: renamer2 -> renamer1 (mutex) ->
    daemon (fuse request), ending in a daemon idle in fuse_dev_do_read."""
    with processes() as ps, fuse_mount(ps, str(tmp_path), "silent") as (daemon, mnt):
        r1 = ps.spawn(FUSE_RENAMER, name="fuse-ren1", src=f"{mnt}/a/x", dst=f"{mnt}/b/y")
        wait_alive(r1, 0.5)
        r2 = ps.spawn(FUSE_RENAMER, name="fuse-ren2", src=f"{mnt}/a/z", dst=f"{mnt}/b/w")
        wait_alive(r2, 1.0)
        rep, v = freeze(tmp_path)
    assert v["verdict"] == "hung-task", v
    roles = [(t["tid"], t["role"]) for t in v["tasks"]]
    assert roles == [(r2.pid, "waiter"), (r1.pid, "waiter"), (daemon.pid, "holder")], roles
    assert [(lk["kind"], lk["waiter_tid"], lk["holder_tid"]) for lk in v["locks"]] == \
        [("mutex", r2.pid, r1.pid), ("fuse", r1.pid, daemon.pid)], v["locks"]
    assert v["locks"][1]["lock"].startswith("fuse RENAME #") and v["locks"][1]["lock"].endswith(mnt)
    assert f"fuse-daemon (tid {daemon.pid}), sleeping in fuse_dev_do_read" in v["summary"], v["summary"]
    assert all(x["verdict"] != "deadlock" for x in rep["verdicts"])


@_needs_fuse
def test_fuse_daemon_blocked_on_a_lock_its_client_holds_is_a_deadlock(tmp_path: Path) -> None:
    """The client's rename holds the rename mutex and waits for the daemon; the daemon's
    worker, handling that RENAME, renames across the same directories itself and waits for
    the mutex: a cycle through a FUSE request and a kernel mutex."""
    with processes() as ps, fuse_mount(ps, str(tmp_path), "self") as (daemon, mnt):
        c = ps.spawn(FUSE_RENAMER, name="fuse-client", src=f"{mnt}/a/x", dst=f"{mnt}/b/y")
        wait_alive(c, 1.0)
        worker = threads_by_comm(daemon.pid)["fuse-daemon-wk"]
        rep, v = freeze(tmp_path)
    assert v["verdict"] == "deadlock", v
    assert sorted((t["tid"], t["pid"]) for t in v["tasks"]) == sorted([(c.pid, c.pid), (worker, daemon.pid)])
    locks = {lk["kind"]: lk for lk in v["locks"]}
    assert set(locks) == {"fuse", "mutex"}, v["locks"]
    assert (locks["fuse"]["waiter_tid"], locks["fuse"]["holder_tid"]) == (c.pid, worker)
    assert (locks["mutex"]["waiter_tid"], locks["mutex"]["holder_tid"]) == (worker, c.pid)
    assert {lk["source"] for lk in v["locks"]} == {"fuse", "blocked"}
    # the daemon's main thread, idle in its read loop, is not part of the cycle
    assert daemon.pid not in {t["tid"] for t in v["tasks"]}


@_needs_fuse
def test_inode_rwsem_chain_is_found_from_the_waiters_stack(tmp_path: Path) -> None:
    """Two truncates of one FUSE file: the first holds the inode's i_rwsem and waits for a
    SETATTR answer that never comes; the second waits for the rwsem in D state.  No kernel
    records this rwsem's owner (6.18's task->blocker covers mutexes and semaphores): the
    edge comes from the waiter found on the second task's own stack."""
    with processes() as ps, fuse_mount(ps, str(tmp_path), "silent") as (daemon, mnt):
        t1 = ps.spawn(FUSE_TRUNCATER, name="fuse-trunc1", path=f"{mnt}/a/x")
        wait_alive(t1, 0.5)
        t2 = ps.spawn(FUSE_TRUNCATER, name="fuse-trunc2", path=f"{mnt}/a/x")
        wait_alive(t2, 1.0)
        rep, v = freeze(tmp_path)
    assert v["verdict"] == "hung-task", v
    assert [(t["tid"], t["role"]) for t in v["tasks"]] == [(t2.pid, "waiter"), (t1.pid, "waiter"), (daemon.pid, "holder")]
    assert [(lk["kind"], lk["source"]) for lk in v["locks"]] == [("rwsem-write", "blocked"), ("fuse", "fuse")]
    assert v["locks"][1]["lock"].startswith("fuse SETATTR #")
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["user-deadlock"]["blocked"]
    w = next(t for t in ev["tasks"] if t["tid"] == t2.pid)
    assert w["blocker"]["source"] == "stack" and w["blocker"]["owner"]["tid"] == t1.pid, w["blocker"]
    assert all(x["verdict"] != "deadlock" for x in rep["verdicts"])


FLOCK_HOLDER = """
import fcntl, os, time
open("/proc/self/comm", "w").write("{name}")
fd = os.open("{path}", os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)      # the waiter's flock() blocks behind this one
time.sleep({seconds})
"""


@_needs_fuse
def test_file_locks_on_a_fuse_file_whose_daemon_never_answers_getattr(tmp_path: Path) -> None:
    """A flock chain on a file of a FUSE mount whose daemon caches no attributes and never
    answers GETATTR: any stat() of that file hangs.  The investigation names the file from
    /proc links and fdinfo without asking the filesystem, finishes, and ends the chain at
    the holder, sleeping."""
    with processes() as ps, fuse_mount(ps, str(tmp_path), "nogetattr") as (daemon, mnt):
        holder = ps.spawn(FLOCK_HOLDER, name="flock-holder", path=f"{mnt}/a/x", seconds=SCENARIO_S)
        wait_alive(holder, 0.5)
        waiter = ps.spawn(FLOCK_HOLDER, name="flock-waiter", path=f"{mnt}/a/x", seconds=SCENARIO_S)
        wait_alive(waiter, 1.0)
        p = investigate("playbooks/freeze.yaml", "--window", "2", "--json", "--out", str(tmp_path / "b"),
                        timeout=240)
        # the kernel's cached attributes (file.locks' inode where fdinfo has none, before
        # 5.14) do not ask the daemon either: the holder's file, by its /proc link
        fd = next(fd for fd in os.listdir(f"/proc/{holder.pid}/fd")
                  if os.readlink(f"/proc/{holder.pid}/fd/{fd}") == f"{mnt}/a/x")
        with open(f"/proc/{holder.pid}/fdinfo/{fd}") as f:
            ino = next((int(ln.split()[1]) for ln in f if ln.startswith("ino:")), None)
        probe = subprocess.run([sys.executable, "-c", "import sys; from investigator.system.procfs import "
                                "open_file_id; print(open_file_id(*sys.argv[1:]))", str(holder.pid), fd],
                               capture_output=True, text=True, timeout=30, cwd=REPO)
        assert probe.returncode == 0 and probe.stdout.startswith("("), probe
        assert ino is None or probe.stdout.strip().endswith(f", {ino})"), (probe.stdout, ino)
    rep = json.loads(p.stdout)
    # no read waited on the daemon: each 2 s window closed within seconds (a stat() of the
    # file waits for a GETATTR answer that never comes; 6-10 s in an emulated guest, whose
    # start and attach alone take about a minute)
    assert max(n["observed_s"] for n in rep["nodes"]) < 40, [(n["id"], n["observed_s"]) for n in rep["nodes"]]
    v = next(v for v in rep["verdicts"] if v["node"] == "user-deadlock")
    assert v["verdict"] == "hung-task", v
    assert [(t["tid"], t["role"]) for t in v["tasks"]] == [(waiter.pid, "waiter"), (holder.pid, "holder")]
    assert [lk["lock"] for lk in v["locks"]] == [f"flock {mnt}/a/x"], v["locks"]
    assert f"flock-holder (tid {holder.pid}), sleeping in " in v["summary"], v["summary"]
