"""Collector logic around the kernel's records, on records built by hand (the probes
themselves are tested on the real kernel elsewhere)."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace
from typing import Any

from investigator.probes.collectors import runqlat


class _Map:
    def __init__(self, rows: list[tuple[bytes, bytes]]) -> None:
        self.rows = rows

    def items(self, limit: int = 0) -> list[tuple[bytes, bytes]]:
        return self.rows


def _wait(tid: int, culprit_tid: int, culprit_tgid: int, comm: bytes) -> tuple[bytes, bytes]:
    c = runqlat.Culprit(overlap_ns=290_000_000, tid=culprit_tid, tgid=culprit_tgid, prio=120, policy=0, comm=comm)
    t = runqlat.TaskLat(count=3, total_ns=400_000_000, max_ns=300_000_000, over=3, max_at_ns=time.monotonic_ns(),
                        tgid=tid, max_cpu=1, prio=139, policy=0, comm=b"victim", culprit=c)
    return tid.to_bytes(4, "little"), bytes(t)


def _finish(rows: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    inst = SimpleNamespace(obj=SimpleNamespace(maps={"cpu_hist": _Map([]), "task_lat": _Map(rows)},
                                               read_global=lambda name: 0),
                           attached_at=time.monotonic() - 5, values={})
    return runqlat.Collector().finish(inst)


def test_the_investigation_itself_is_never_the_culprit_of_a_wait() -> None:
    """Loading probes is verifier work in the investigator's own context; on a slow machine
    a task may wait behind it.  That wait is reported, but never blamed on the observer."""
    ev = _finish([_wait(4242, os.getpid(), os.getpid(), b"python")])
    (t,) = ev["tasks"]
    assert t["culprit"]["investigator"] and t["culprit"]["share"] == 0.0 and t["culprit"]["held_ms"] == 290.0
    assert ev["starved"]["culprit"]["tid"] == 0
    assert ev["by_cpu"][0]["culprit"]["share"] == 0.0
    # the same wait behind any other task is attributed to it
    ev = _finish([_wait(4242, 777, 777, b"hog")])
    assert ev["starved"]["culprit"]["tid"] == 777 and ev["starved"]["culprit"]["share"] == 0.967


def test_what_a_blocked_task_waits_for_is_read_from_its_stack() -> None:
    from investigator.probes.collectors.blocked import diagnosis
    gone = 2 ** 22 + 7                  # no such task: no system call file to add

    def says(*stack: str) -> str:
        return diagnosis({"tid": gone, "pid": gone, "stack": list(stack), "blocker": None})
    # the stat_refresh writer behind a starved per-CPU kworker (seen in the 6.1 guest)
    assert says("__flush_work+0x10a", "schedule_on_each_cpu+0xa0", "vmstat_refresh+0x2f").startswith(
        "waits for queued kernel work to run")
    assert says("__wait_rcu_gp+0x12b", "synchronize_rcu+0x71", "expand_files+0x76").startswith(
        "waits for an RCU grace period")
    assert says("percpu_rwsem_wait+0x1", "__percpu_down_read+0x1", "mnt_want_write+0x1").startswith(
        "waits for a frozen filesystem")
    assert says("some_wait+0x3", "other+0x1") == "sleeps in some_wait+0x3"


def test_the_terminal_report_shows_stuck_tasks_and_pools_without_progress() -> None:
    from investigator.report.text import render_evidence
    culprit = {"tid": 122, "pid": 122, "comm": "rt-hog"}
    runnable = {"probe": {"name": "sched.runnable"}, "waiting_count": 1, "stuck_count": 1,
                "tasks": [{"tid": 35, "pid": 35, "comm": "kworker/1:1", "policy": "SCHED_OTHER", "cpu": 1,
                           "waiting_ms": 17013.3, "stuck": True, "culprit": culprit}]}
    pools = {"probe": {"name": "workqueue.pools"}, "pools_count": 6, "stalled_count": 1,
             "stalled": [{"cpu": 1, "stalled_ms": 17112.0, "pending": 7,
                          "functions": [{"function": "refresh_vm_stats", "workqueue": "events"}],
                          "workers": [{"comm": "kworker/1:1", "state": "R", "queued": True}]}]}
    text = render_evidence({"cpu-starvation": {"runnable": runnable}, "workqueue-stall": {"wqpools": pools}})
    assert "1 through the whole window" in text and "kworker/1:1  SCHED_OTHER  1" in text and "rt-hog (122)" in text
    assert "1 of 6 took no item" in text and "refresh_vm_stats (events)" in text and "kworker/1:1 R queued" in text


def _stall_task(tid: int, stall_ms: float, alloc_mib: float, comm: bytes, kthread: bool = False) -> tuple[bytes, bytes]:
    from investigator.probes.collectors import memstall
    r = memstall.MemstallTask(mm=memstall.MmStall(reclaim_ns=int(stall_ms * 1e6)), alloc_pages=int(alloc_mib * 256), reclaims=5,
                              tgid=tid, kthread=int(kthread), comm=comm)
    return tid.to_bytes(4, "little"), bytes(r)


def _stall_evidence(monkeypatch: Any, rows: list[tuple[bytes, bytes]], cgroup_of: dict[int, str],
                    t0: int = 0, until: int = 0) -> dict[str, Any]:
    """mem.stall's evidence for hand-made task records over a 1 s window (or from ``t0`` to
    ``until``, the probe's observed end), the tasks living in the v2 cgroups ``cgroup_of``
    names, /lim the one limited cgroup (32 MiB, reached 50 times)."""
    from investigator.probes.collectors import memstall
    from investigator.system import cgroups
    m0 = cgroups.Memory(32 << 20, 0, 30 << 20, 100, 0, 0, 10, 1, 0, 0)
    m1 = cgroups.Memory(32 << 20, 0, 31 << 20, 150, 0, 0, 900, 40, 0, 0)
    monkeypatch.setattr(cgroups, "task_paths", lambda tid: {"": cgroup_of[tid]} if tid in cgroup_of else {})
    monkeypatch.setattr(cgroups, "memory", lambda folder, v2: m1)
    c = memstall.Collector()
    c.t0, c.vm0, c.kswapd0, c.stopped = t0 or time.monotonic_ns() - 10**9, memstall._vmstat(), {}, []
    c.roots, c.limited = {True: [], False: []}, {(True, "/lim"): ("/sys/fs/cgroup/lim", m0)}
    inst = SimpleNamespace(obj=SimpleNamespace(maps={"tasks": _Map(rows)}, read_global=lambda name: 3),
                           values={"min_share": 10}, links=["tp_btf:sched_switch"],
                           observed_until_ns=(lambda: until) if until else time.monotonic_ns)
    inst.obj.maps["tasks"].lookup_batch = lambda limit: rows
    return c.finish(inst)


def test_a_probe_cut_by_the_overhead_guard_gives_shares_of_what_it_observed(monkeypatch: Any) -> None:
    """Detached 1 s after its start and read 9 s later, mem.stall's window is that second:
    a task that reclaimed 400 ms of it and was asleep in a stall for its last 200 ms (its
    wake never seen) lost 60% -- not 6% of ten seconds, nor a stall running on unseen."""
    from investigator.probes.collectors import memstall
    detached = time.monotonic_ns() - 9 * 10**9
    r = memstall.MemstallTask(mm=memstall.MmStall(reclaim_ns=400 * 10**6), sleep_since=detached - 200 * 10**6,
                              alloc_pages=256, reclaims=5, tgid=101, comm=b"reader")
    ev = _stall_evidence(monkeypatch, [((101).to_bytes(4, "little"), bytes(r))], {101: "/lim"},
                         t0=detached - 10**9, until=detached)
    (t,) = [t for t in ev["tasks"] if t["tid"] == 101]
    assert ev["window_ms"] == 1000.0 and (t["stall_ms"], t["stall_pct"], t["stall_sleep_ms"]) == (600.0, 60.0, 200.0), t
    assert ev["worst"]["victim"]["tid"] == 101


def test_memory_stalls_are_grouped_under_the_limit_that_ran_out(monkeypatch: Any) -> None:
    """A task alone at its cgroup's limit is that limit's victim, with no culprit; a task that
    brought in far more pages than the victims beside it is their culprit; the machine is the
    cause of stalls outside any limited cgroup; kernel threads and the investigation itself
    are never victims."""
    ev = _stall_evidence(monkeypatch, [_stall_task(101, 600, 90, b"reader"), _stall_task(5, 700, 0, b"kcompactd0", True),
                                       _stall_task(os.getpid(), 500, 1, b"investigate")],
                         {101: "/lim/job", 5: "/", os.getpid(): "/"})
    w = ev["worst"]
    assert (w["scope"], w["path"], w["limit_mib"], w["limit_hits"], w["refaults"]) == ("cgroup", "/lim", 32.0, 50, 890)
    assert [t["tid"] for t in w["victims"]] == [101] and w["victim"]["stall_pct"] >= 59.0 and w["culprit"]["tid"] == 0
    assert {t["tid"]: t["role"] for t in w["tasks"]} == {101: "victim"} and w["cgroups"] == ["/lim"]
    assert ev["stalled_count"] == 1 and len(ev["scopes"]) == 1 and ev["system"]["kswapd_wakes"] == 3
    # a streamer beside its victims: 10 times the pages of any of them
    ev = _stall_evidence(monkeypatch, [_stall_task(201, 300, 400, b"stream"), _stall_task(202, 500, 40, b"worker"),
                                       _stall_task(203, 250, 20, b"other")],
                         {201: "/lim", 202: "/lim", 203: "/lim/sub"})
    w = ev["worst"]
    assert w["culprit"]["tid"] == 201 and [t["tid"] for t in w["victims"]] == [202, 203]
    assert {t["tid"]: t["role"] for t in w["tasks"]} == {201: "culprit", 202: "victim", 203: "victim"}
    # ... but not when it brought in less than twice what a victim did: no culprit guessed
    ev = _stall_evidence(monkeypatch, [_stall_task(201, 300, 60, b"stream"), _stall_task(202, 500, 40, b"worker")],
                         {201: "/lim", 202: "/lim"})
    assert ev["worst"]["culprit"]["tid"] == 0 and {t["tid"] for t in ev["worst"]["victims"]} == {201, 202}
    # stalls outside any limited cgroup: the machine
    ev = _stall_evidence(monkeypatch, [_stall_task(301, 400, 10, b"app"), _stall_task(302, 50, 5, b"calm")],
                         {301: "/free", 302: "/free"})
    w = ev["worst"]
    assert (w["scope"], w["path"], w["cgroups"]) == ("system", "", []) and [t["tid"] for t in w["victims"]] == [301]
    assert "the whole machine" in w["cause"]
    # nothing stalled a tenth of the window
    ev = _stall_evidence(monkeypatch, [_stall_task(302, 50, 5, b"calm")], {302: "/lim"})
    assert ev["worst"]["scope"] == "" and ev["worst"]["victims_count"] == 0 and ev["stalled_count"] == 0


def _io_evidence(monkeypatch: Any, tasks: list[tuple[int, float, float, int]], devs: dict[int, tuple[float, int]],
                 inflight: list[tuple[int, float]], cgroup_of: dict[int, str]) -> dict[str, Any]:
    """block.io's evidence over a 1 s window: ``tasks`` as (tid, iowait_ms, max_wait_ms, dev),
    ``devs`` as dev -> (max_ms, count), requests still out as (dev, age_ms); the v2 cgroup
    /lim limits writes to 7:1 (dev 7 << 20 | 1) to 1 MiB/s."""
    from investigator.probes.collectors import blockio
    from investigator.system import cgroups
    monkeypatch.setattr(cgroups, "task_paths", lambda tid: {"": cgroup_of[tid]} if tid in cgroup_of else {})
    now = time.monotonic_ns()
    rows = [(tid.to_bytes(4, "little"), bytes(blockio.BlockioTask(iowait_ns=int(w * 1e6), max_wait_ns=int(m * 1e6),
                                                                  waits=3, dev=dev, tgid=tid, comm=b"t")))
            for tid, w, m, dev in tasks]
    drows = [(d.to_bytes(4, "little"), bytes(blockio.BlockioDev(count=n, total_ns=int(mx * 1e6) * n // 2,
                                                                max_ns=int(mx * 1e6))))
             for d, (mx, n) in devs.items()]
    reqs = [(i.to_bytes(8, "little"), bytes(blockio.BlockioReq(issue_ts=now - int(age * 1e6), dev=d)))
            for i, (d, age) in enumerate(inflight, 1)]
    maps = {"tasks": _Map(rows), "devs": _Map(drows), "reqs": _Map(reqs)}
    for m in maps.values():
        m.lookup_batch = (lambda rows: lambda limit: rows)(m.rows)  # type: ignore[attr-defined]
    c = blockio.Collector()
    c.t0, c.stopped, c.roots = now - 10**9, [], {True: [], False: []}
    c.limited = {(True, "/lim"): {"7:1": {"wbps": 1 << 20}}}
    inst = SimpleNamespace(obj=SimpleNamespace(maps=maps), values={"min_share": 20, "min_wait": 10**8},
                           observed_until_ns=time.monotonic_ns)
    return c.finish(inst)


def test_io_stalls_are_told_apart_by_the_limit_or_the_device_behind_them(monkeypatch: Any) -> None:
    """A task held by its cgroup's limit on a device (its own requests issued later by a
    kworker: no device of its own) is that limit's victim; a task waiting on a device whose
    requests take long is the device's; a task busy with a fast device (many short waits) is
    never a victim, nor is the investigation itself."""
    loop1, vda = 7 << 20 | 1, 254 << 20
    ev = _io_evidence(monkeypatch, [(101, 900, 260, 0), (102, 950, 4, vda), (os.getpid(), 800, 300, vda)],
                      {loop1: (0.3, 8), vda: (3.0, 5000)}, [], {101: "/lim/job", 102: "/", os.getpid(): "/"})
    w = ev["worst"]
    assert (w["kind"], w["dev"], w["cgroup"], w["limits"]) == ("limit", "7:1", "/lim", {"wbps": 1 << 20}), w
    assert [t["tid"] for t in w["victims"]] == [101] and ev["stalled_count"] == 1 and "1 MiB/s" in w["cause"]
    assert {t["tid"]: t["role"] for t in w["tasks"]} == {101: "victim"} and w["cgroups"] == ["/lim"]
    # a device slow to answer: a request took 800 ms, another is out for 1.5 s
    ev = _io_evidence(monkeypatch, [(201, 700, 800, vda)], {vda: (800.0, 20)}, [(vda, 1500.0)], {201: "/"})
    w = ev["worst"]
    assert (w["kind"], w["dev"], w["cgroup"]) == ("device", "254:0", "") and w["device_stats"]["inflight"] == 1
    assert w["device_stats"]["oldest_inflight_ms"] >= 1500.0 and "slow to answer" in w["cause"]
    # long waits that neither explains
    ev = _io_evidence(monkeypatch, [(301, 500, 400, vda)], {vda: (2.0, 50)}, [], {301: "/"})
    assert ev["worst"]["kind"] == "unknown" and ev["worst"]["victim"]["tid"] == 301
    # nothing stalled
    ev = _io_evidence(monkeypatch, [(102, 950, 4, vda)], {vda: (3.0, 5000)}, [], {102: "/"})
    assert ev["worst"]["kind"] == "" and ev["worst"]["victims_count"] == 0 and ev["slowest"]["dev"] == "254:0"


def test_a_locks_contenders_are_named_by_their_share_of_the_window() -> None:
    """Ten waiters of one lock: the eight who waited longest named with their share, the
    other two counted; the holders ordered by how many waiters waited for them; a waiter
    who also held it stays a waiter in the finding; an owner the lock never recorded (a
    spinlock) is said so in words."""
    from investigator.probes.collectors.lock import LockWaiter, contenders, worst_finding

    def w(tgid: int, ms: int, owner: int) -> LockWaiter:
        return LockWaiter(count=10, total_ns=ms * 10**6, max_ns=ms * 10**5, tgid=tgid, owner_tid=owner,
                          owner_tgid=owner, comm=f"w{tgid}".encode(), owner_comm=f"w{owner}".encode())

    pairs = [(100 + i, w(100 + i, 1000 - 50 * i, 999 if i % 3 else 100)) for i in range(10)]
    who = contenders(pairs, 2 * 10**9)
    assert who["waiters"] == 10 and who["others"] == 2 and who["others_wait_ms"] == 1150.0, who
    assert [c["tid"] for c in who["contenders"]] == list(range(100, 108)), who["contenders"]
    assert who["contenders"][0]["wait_pct"] == 50.0 and who["share_pct"] == 387.5, who
    assert [(h["tid"], h["waited_by"]) for h in who["holders"]] == [(999, 6), (100, 4)], who["holders"]
    assert who["who_waits"].startswith("w100 (tid 100) 50%, w101 (tid 101) 47.5%") and who["who_waits"].endswith(
        "and 2 more"), who["who_waits"]
    top = {"addr": "0x1", "name": "", "kind": "rwsem", "stack": [], "waiter": who["contenders"][0],
           "owner": {"tid": 0, "pid": 0, "comm": ""}, **who}
    roles = {t["tid"]: t["role"] for t in worst_finding(top).to_dict()["tasks"]}
    assert roles == {**{t: "waiter" for t in range(100, 108)}, 999: "holder"}, roles
    assert contenders([(5, w(5, 10, 0))], 10**9)["who_holds"] == "owners the lock does not record"


def _pair(charged: int, other: int, n: int, charged_comm: bytes = b"busy-hog", other_comm: bytes = b"x") -> tuple[Any, Any]:
    from investigator.probes.collectors.net import NetrxCount, NetrxKey
    return NetrxKey(charged, other), NetrxCount(n, n * 92, charged, other, charged_comm, other_comm)


def test_whose_packets_names_senders_by_share_and_the_tasks_their_delivery_woke() -> None:
    """net.rx's record of one busy context: two senders, packets from a device, the
    reader its NET_RX work woke thousands of times, and a task a timer woke inside the
    softirq twice -- listed and named by what they did, the stray wakeup left out."""
    from investigator.probes.collectors.net import contexts, worst_finding
    senders = [_pair(50, 7, 900, other_comm=b"udp-sender"), _pair(50, 8, 50, other_comm=b"other-sender"),
               _pair(50, 0, 50), _pair(60, 7, 10, charged_comm=b"quiet", other_comm=b"udp-sender")]
    woken = [_pair(50, 9, 400, other_comm=b"udp-reader"), _pair(50, 11, 2, other_comm=b"python"),
             _pair(50, 50, 99, other_comm=b"busy-hog")]
    ctx = contexts(senders, woken)
    assert [c["tid"] for c in ctx] == [50, 60]
    c = ctx[0]
    assert (c["packets"], c["from_device"], c["from_tasks_pct"]) == (1000, 50, 95.0)
    assert [(t["tid"], t["share_pct"]) for t in c["senders"]] == [(7, 90.0), (8, 5.0)]
    assert [(t["tid"], t["wakeups"]) for t in c["woken"]] == [(9, 400)]      # not the stray, not itself
    assert c["who_sent"] == "udp-sender (tid 7, 90.0% of the packets), other-sender (tid 8, 5.0% of the packets)"
    assert c["who_woken"] == "udp-reader (tid 9, 400 wakeups)"
    f = worst_finding(c).to_dict()
    assert [(t["tid"], t["role"], t.get("as")) for t in f["tasks"]] == \
        [(50, "victim", None), (7, "culprit", "sender"), (8, "culprit", "sender"), (9, "culprit", "woken")]
    none = worst_finding(None).to_dict()
    assert none["tasks"] == [] and none["packets"] == 0 and none["who_sent"] == ""
