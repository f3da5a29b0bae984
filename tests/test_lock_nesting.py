"""lock.contention keeps the outer wait when another lock's contention begins and ends inside
it (a mutex waiter spinning on the mutex's wait_lock in the slow path, an rq lock taken by
schedule() while it sleeps).  The shipped object is loaded, not attached, and its raw_tp
programs are run (BPF_PROG_TEST_RUN) with contention_begin/end arguments in this thread,
pinned to one CPU: the kernel runs the real programs on the sequences a nested wait makes.

The nesting the issue names was not reproduced with real locks on a 2-CPU machine: twelve
writers on one pipe made 200,000 pipe-mutex waits in 3 s and never contended the mutex's
wait_lock (4 of those waits had another spinlock's contention inside, the rq lock or a wait
queue's lock); this test makes the sequence directly instead."""

from __future__ import annotations

import ctypes as C
import os
import threading
from collections.abc import Iterator

import pytest

from investigator.bpf import BpfObject
from investigator.bpf._lib import LIBBPF_PATH
from investigator.probes.collectors.lock import MUTEX, READ, SPIN, WRITE, LockStat
from investigator.probes.manifest import registry

pytestmark = [pytest.mark.bpf, pytest.mark.second_kernel]

# not kernel addresses: the owner read at the begin fails (as it may for any lock) and is 0
MUTEX_ADDR, WAIT_LOCK, RWSEM_ADDR, OTHER_SPIN = 0x10000, 0x10008, 0x20000, 0x30000


class RunOpts(C.Structure):
    _fields_ = [("sz", C.c_size_t), ("data_in", C.c_void_p), ("data_out", C.c_void_p),
                ("data_size_in", C.c_uint32), ("data_size_out", C.c_uint32), ("ctx_in", C.c_void_p),
                ("ctx_out", C.c_void_p), ("ctx_size_in", C.c_uint32), ("ctx_size_out", C.c_uint32),
                ("retval", C.c_uint32), ("repeat", C.c_int), ("duration", C.c_uint32),
                ("flags", C.c_uint32), ("cpu", C.c_uint32), ("batch_size", C.c_uint32)]


@pytest.fixture
def lock_obj() -> Iterator[BpfObject]:
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})        # the per-CPU slot of spinning waits is this CPU's
    try:
        with BpfObject(registry()["lock.contention"].object_path) as o:
            for name, p in o.programs.items():
                p.autoload = name.startswith("raw_")
            o.load()
            yield o
    finally:
        os.sched_setaffinity(0, before)


def _run(o: BpfObject, prog: str, lock: int, arg: int) -> None:
    libbpf = C.CDLL(LIBBPF_PATH, use_errno=True)
    libbpf.bpf_prog_test_run_opts.argtypes = [C.c_int, C.POINTER(RunOpts)]
    args = (C.c_uint64 * 2)(lock, arg & 0xFFFFFFFF)
    opts = RunOpts(sz=C.sizeof(RunOpts), ctx_in=C.cast(args, C.c_void_p), ctx_size_in=C.sizeof(args))
    rc = libbpf.bpf_prog_test_run_opts(o.programs[prog].fd, C.byref(opts))
    assert rc == 0, f"test run of {prog}: {os.strerror(C.get_errno())}"


def begin(o: BpfObject, lock: int, flags: int) -> None:
    _run(o, "raw_lock_begin", lock, flags)


def end(o: BpfObject, lock: int, ret: int = 0) -> None:
    _run(o, "raw_lock_end", lock, ret)


def stats(o: BpfObject) -> dict[int, LockStat]:
    return {int.from_bytes(k, "little"): LockStat.from_buffer_copy(v) for k, v in o.maps["by_lock"].items()}


def waiting(o: BpfObject) -> dict[int, int]:
    """tid -> the lock it is recorded waiting for."""
    return {int.from_bytes(k, "little"): int.from_bytes(v[:8], "little") for k, v in o.maps["waiting"].items()}


def test_a_spinning_wait_inside_a_mutex_wait_keeps_the_mutex_wait(lock_obj: BpfObject) -> None:
    o, tid = lock_obj, threading.get_native_id()
    begin(o, MUTEX_ADDR, MUTEX | SPIN)      # optimistic spin
    begin(o, MUTEX_ADDR, MUTEX)             # then sleeps: the same wait
    for _ in range(50):                     # the slow path spins on wait_lock again and again
        begin(o, WAIT_LOCK, SPIN)
        assert waiting(o) == {tid: MUTEX_ADDR}
        end(o, WAIT_LOCK)
    assert waiting(o) == {tid: MUTEX_ADDR}, "the inner waits replaced or ended the mutex wait"
    end(o, MUTEX_ADDR)
    st = stats(o)
    assert set(st) == {MUTEX_ADDR, WAIT_LOCK}
    m, w = st[MUTEX_ADDR], st[WAIT_LOCK]
    assert (m.count, m.nested, m.flags, m.worst_tid) == (1, 1, MUTEX | SPIN, tid)
    assert (w.count, w.nested, w.flags) == (50, 0, SPIN)
    # the mutex wait spans all fifty spins: it lasted longer than their sum
    assert m.total_ns > w.total_ns
    assert waiting(o) == {}


def test_a_sleeping_lock_inside_a_wait_is_not_timed_and_an_unrelated_end_is_ignored(lock_obj: BpfObject) -> None:
    o, tid = lock_obj, threading.get_native_id()
    begin(o, RWSEM_ADDR, WRITE)
    begin(o, MUTEX_ADDR, MUTEX)             # cannot nest for real: counted, never timed
    end(o, MUTEX_ADDR)
    end(o, OTHER_SPIN)                      # the end of a wait the probe never saw begin
    assert waiting(o) == {tid: RWSEM_ADDR}
    end(o, RWSEM_ADDR)
    st = stats(o)
    assert set(st) == {RWSEM_ADDR} and (st[RWSEM_ADDR].count, st[RWSEM_ADDR].nested) == (1, 1)


def test_a_spinlock_inside_a_spinning_wait_keeps_the_outer(lock_obj: BpfObject) -> None:
    """An interrupt handler spinning on another lock while the task it interrupted spins:
    the outer spin is timed whole, the inner only counted in it."""
    o = lock_obj
    begin(o, OTHER_SPIN, SPIN | READ)       # an rwlock
    begin(o, WAIT_LOCK, SPIN)
    end(o, WAIT_LOCK)
    end(o, OTHER_SPIN)
    st = stats(o)
    assert set(st) == {OTHER_SPIN} and (st[OTHER_SPIN].count, st[OTHER_SPIN].nested) == (1, 1)
    # and the slot is free again: the next spinning wait is timed
    begin(o, WAIT_LOCK, SPIN)
    end(o, WAIT_LOCK)
    assert stats(o)[WAIT_LOCK].count == 1


def _begin_in_thread(o: BpfObject, lock: int, flags: int) -> int:
    """Begin a wait in a new thread (a task of its own); its tid."""
    tids: list[int] = []

    def run() -> None:
        tids.append(threading.get_native_id())
        begin(o, lock, flags)
    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    assert tids and not t.is_alive()
    return tids[0]


def test_waits_the_maps_have_no_room_for_are_counted_and_reach_the_evidence() -> None:
    """The shipped object with its waiting map cut to 2 waits and by_lock to 1 lock: the
    third task's wait is not recorded and counted in waits_dropped (the collector's
    edges_dropped); a second lock's ended wait is counted in ended_dropped.  The tasks
    already recorded, and a wait nested in one of them, are no drop."""
    from types import SimpleNamespace
    import time

    from investigator.probes.collectors.lock import Collector
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})  # a spinning wait begins and ends on one CPU
    try:
        with BpfObject(registry()["lock.contention"].object_path) as o:
            for name, p in o.programs.items():
                p.autoload = name.startswith("raw_")
            o.maps["waiting"].set_max_entries(2)
            o.maps["by_lock"].set_max_entries(1)
            o.load()
            recorded = {_begin_in_thread(o, MUTEX_ADDR, MUTEX) for _ in range(2)}
            assert set(waiting(o)) == recorded
            assert o.read_global("waits_dropped") == 0
            tid = threading.get_native_id()
            begin(o, RWSEM_ADDR, WRITE)                 # a third task: the map is full
            assert set(waiting(o)) == recorded and o.read_global("waits_dropped") == 1
            begin(o, MUTEX_ADDR, MUTEX)                 # nested in a wait not recorded: dropped too
            assert o.read_global("waits_dropped") == 2
            end(o, RWSEM_ADDR)                          # its end finds nothing to end
            begin(o, OTHER_SPIN, SPIN)                  # spinning waits have their own slot
            end(o, OTHER_SPIN)
            begin(o, WAIT_LOCK, SPIN)                   # a second lock: by_lock is full
            end(o, WAIT_LOCK)
            assert set(stats(o)) == {OTHER_SPIN} and o.read_global("ended_dropped") == 1
            assert o.read_global("waits_dropped") == 2 and tid not in waiting(o)
            ev = Collector().finish(SimpleNamespace(obj=o, values={}, observed_until_ns=time.monotonic_ns,
                                                    observed_s=lambda: 0.0))
    finally:
        os.sched_setaffinity(0, before)
    assert ev["edges_dropped"] == 2 and ev["ended_dropped"] == 1
    assert ev["waiting_count"] == 2 and ev["contended_locks"] == 1
