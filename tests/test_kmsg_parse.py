"""The kernel's report formats (6.1-6.18) as system/kmsg.py tells them apart, and PSI lines
as system/psi.py reads them: the units under kernel.reports and system.pressure, whose real
conditions tests/test_kernel_reports.py creates.  The RCU stall and lockup texts follow
kernel/rcu/tree_stall.h, kernel/watchdog.c and kernel/workqueue.c; they cannot be caused
on a healthy kernel."""

from __future__ import annotations

from investigator.system import kmsg, psi

LOG = """python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
CPU: 1 UID: 0 PID: 4242 Comm: python3 Not tainted 6.18.0 #1
Call Trace:
 <TASK>
 dump_stack_lvl+0x5d/0x80
 ? unreliable+0x1/0x2
 dump_header+0x43/0x1a0
 </TASK>
memory: usage 65536kB, limit 65536kB, failcnt 45
oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/inv,task_memcg=/inv/leaf,task=python3,pid=4242,uid=0
Memory cgroup out of memory: Killed process 4242 (python3) total-vm:1000kB, anon-rss:100kB
INFO: task fsfreeze-w:777 blocked for more than 122 seconds.
      Not tainted 6.18.44
task:fsfreeze-w      state:D stack:0     pid:777   tgid:777   ppid:1      flags:0x00004002
Call Trace:
 <TASK>
 __schedule+0x3d5/0xba0
 percpu_rwsem_wait+0x10e/0x130
 </TASK>
INFO: task fsfreeze-w:777 is blocked on a mutex likely owned by task holder:778.
watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [spin:99]
rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:
rcu: \t1-....: (5249 ticks this GP) idle=1234/1/0x4000000000000000 softirq=1/1 fqs=2
rcu: \t(detected by 0, t=5252 jiffies, g=1, q=2 ncpus=2)
NMI backtrace for cpu 0
CPU: 0 UID: 0 PID: 0 Comm: swapper/0 Not tainted
Sending NMI from CPU 0 to CPUs 1:
CPU: 1 UID: 0 PID: 55 Comm: spinner Tainted: G
BUG: workqueue lockup - pool cpus=0-1 node=0 flags=0x4 nice=0 stuck for 31s!
sched: RT throttling activated
Out of memory: Killed process 99 (hog) total-vm:1kB
""".replace("\\t", "\t").splitlines()


def _reports() -> list[dict]:
    recs = [kmsg.Record(i, 10_000_000 + i * 1000, 3, line) for i, line in enumerate(LOG)]
    return [r.evidence(10_000_000) for r in kmsg.reports(recs)]


def test_each_report_is_told_apart_with_its_entities() -> None:
    got: dict[str, dict] = {}
    for r in _reports():
        got.setdefault(r["kind"], r)
    assert list(got) == ["oom-kill", "hung-task", "soft-lockup", "rcu-stall", "workqueue-lockup", "rt-throttling"]
    oom = got["oom-kill"]
    assert (oom["task"], oom["cgroup"], oom["memcg"], oom["invoked_by"]) == \
        ({"tid": 4242, "comm": "python3"}, "/inv", True, {"tid": 4242, "comm": "python3"}), oom
    assert oom["stack"] == ["dump_stack_lvl+0x5d/0x80", "dump_header+0x43/0x1a0"]   # "?" frames left out
    hung = got["hung-task"]
    assert hung["seconds"] == 122 and hung["stack"] == ["__schedule+0x3d5/0xba0", "percpu_rwsem_wait+0x10e/0x130"]
    assert [(t["tid"], t["role"]) for t in hung["tasks"]] == [(777, "waiter"), (778, "holder")]
    assert hung["locks"][0]["kind"] == "mutex" and hung["locks"][0]["holder_tid"] == 778
    assert (got["soft-lockup"]["cpu"], got["soft-lockup"]["seconds"], got["soft-lockup"]["task"]["tid"]) == (1, 22, 99)
    # the stalled CPU's task, not the detecting CPU's idle task
    rcu = got["rcu-stall"]
    assert (rcu["cpus"], rcu["task"], rcu["flavor"]) == ([1], {"tid": 55, "comm": "spinner"}, "rcu_preempt"), rcu
    assert got["workqueue-lockup"]["cpus"] == [0, 1] and got["workqueue-lockup"]["seconds"] == 31


def test_a_report_takes_one_trace_and_only_the_lines_written_with_it() -> None:
    lines = ["INFO: task w:7 blocked for more than 2 seconds.", "Call Trace:", " <TASK>",
             " schedule+0x1/0x2", " </TASK>", "WARNING: CPU: 0 PID: 1 at x", "Call Trace:", " <TASK>",
             " warn_here+0x1/0x2", " </TASK>"]
    recs = [kmsg.Record(i, i, 3, line) for i, line in enumerate(lines)]
    (hung,) = kmsg.reports(recs)
    assert hung.stack == ["schedule+0x1/0x2"], hung.stack
    late = [kmsg.Record(0, 0, 3, lines[0]), kmsg.Record(1, 5_000_000, 3, "INFO: task w:7 is blocked on a mutex "
                                                                          "likely owned by task h:8.")]
    assert kmsg.reports(late)[0].blocker is None
    # an RCU stall: the detecting CPU's backtrace is not the stalled CPU's
    rcu = ["rcu: INFO: rcu_sched detected stalls on CPUs/tasks:", "rcu: \t1-....: (1 ticks this GP)",
           "NMI backtrace for cpu 0", "CPU: 0 PID: 0 Comm: swapper/0", "Call Trace:", " idle+0x1/0x2",
           "NMI backtrace for cpu 1", "CPU: 1 PID: 55 Comm: spinner", "Call Trace:", " spin+0x1/0x2", " </TASK>"]
    (r,) = kmsg.reports([kmsg.Record(i, i, 3, line.replace("\\t", "\t")) for i, line in enumerate(rcu)])
    assert r.task == {"tid": 55, "comm": "spinner"} and r.stack == ["spin+0x1/0x2"], (r.task, r.stack)


def test_a_kill_without_its_first_lines_and_times_relative_to_the_window() -> None:
    reps = _reports()
    last = reps[-1]
    assert last["kind"] == "oom-kill" and last["task"] == {"tid": 99, "comm": "hog"} and not last["memcg"]
    assert reps[0]["at_s"] == 0.01 and reps[1]["at_s"] > reps[0]["at_s"]


def test_a_record_header_and_its_escapes() -> None:
    r = kmsg.parse_record(b"4,338,1286195,-;task a\\x0ab\n SUBSYSTEM=block\n")
    assert r == kmsg.Record(338, 1286195, 4, "task a\nb")
    assert kmsg.parse_record(b"garbage") is None and kmsg.parse_record(b"x,y;z") is None


def test_pressure_lines_and_shares() -> None:
    text = "some avg10=1.50 avg60=0.34 avg300=0.41 total=2000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    a = psi.parse(text)
    b = psi.parse(text.replace("total=2000000", "total=2500000"))
    assert a["some"].avg10 == 1.5 and psi.share(a["some"], b["some"], 1.0) == 50.0
    assert psi.share(a["full"], b["full"], 1.0) == 0.0 and psi.share(None, b["some"], 1.0) == 0.0
    assert psi.parse("some avg10=x total=1\n") == {}


def _one(lines: list[str], step_us: int = 1000) -> list[kmsg.Report]:
    return kmsg.reports([kmsg.Record(i, i * step_us, 3, line) for i, line in enumerate(lines)])


def test_the_other_forms_the_kernel_prints() -> None:
    # a semaphore's owner is "likely last held by"; an rw-semaphore's carries the modes
    (h,) = _one(["INFO: task w:7 blocked for more than 120 seconds.",
                 "INFO: task w:7 blocked on a semaphore likely last held by task h:8"])
    assert (h.blocker["tid"], h.blocker["lock_kind"]) == (8, "semaphore")
    (h,) = _one(["INFO: task w:7 blocked for more than 120 seconds.",
                 "INFO: task w:7 <writer> blocked on an rw-semaphore likely owned by task h:9 <reader>"])
    assert (h.blocker["tid"], h.blocker["lock_kind"]) == (9, "rw-semaphore")
    (e,) = _one(["rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: { 1-... } 21002 jiffies"])
    assert e.kind == "rcu-stall" and e.extra["flavor"] == "rcu_preempt"
    (t,) = _one(["INFO: rcu_tasks detected stalls on tasks:"])
    assert t.kind == "rcu-stall"
    # "sleeping function called from invalid context": the task is on the next line
    (a,) = _one(["BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580",
                 "in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 321, name: insmod"])
    assert a.kind == "atomic-sleep" and a.task == {"tid": 321, "comm": "insmod"}
    # a hard lockup names the task of its own CPU, not another CPU's backtrace
    (hl,) = _one(["Watchdog detected hard LOCKUP on cpu 1", "CPU: 0 PID: 5 Comm: other", "CPU: 1 PID: 6 Comm: looper"])
    assert hl.task == {"tid": 6, "comm": "looper"}


def test_an_arm64_trace_ends_at_its_first_line_that_is_no_frame() -> None:
    (s,) = _one(["watchdog: BUG: soft lockup - CPU#2 stuck for 26s! [spin:40]", "Call trace:",
                 " spin_loop+0x10/0x20", " el0t_64_sync+0x190/0x198", "Kernel panic - not syncing: softlockup",
                 " not_a_frame_of_it+0x1/0x2"])
    assert s.stack == ["spin_loop+0x10/0x20", "el0t_64_sync+0x190/0x198"], s.stack


def test_a_slow_console_spreads_a_report_but_a_gap_ends_it() -> None:
    oom = ["a invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"] + ["Mem-Info: ..."] * 5 + [
        "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/x,task=a,pid=5,uid=0",
        "Out of memory: Killed process 5 (a) total-vm:1kB"]
    (k,) = _one(oom, step_us=900_000)          # 0.9 s between lines: 6 s in all, still one report
    assert (k.kind, k.cgroup, k.extra["constraint"], k.extra["task_cgroup"]) == ("oom-kill", "/x", "CONSTRAINT_NONE", "/x")
    (h,) = kmsg.reports([kmsg.Record(0, 0, 3, "INFO: task w:7 blocked for more than 2 seconds."),
                         kmsg.Record(1, 3_000_000, 3, "INFO: task w:7 is blocked on a mutex likely owned by task h:8.")])
    assert h.blocker is None


def test_each_cgroups_share_is_taken_over_its_own_reads(tmp_path) -> None:
    from investigator.probes.collectors import pressure
    line = "some avg10=0.00 avg60=0.00 avg300=0.00 total={}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "cpu.pressure").write_text(line.format(1000))
    (tmp_path / "a" / "cpu.pressure").unlink()
    (tmp_path / "a" / "cpu.pressure").symlink_to(tmp_path / "b" / "cpu.pressure")   # never followed
    got, unread = pressure._read_cgroups([str(tmp_path / "a"), str(tmp_path / "b")], 1.0)
    assert list(got) == [str(tmp_path / "b")] and unread == 0
    t, v = got[str(tmp_path / "b")]
    assert v["cpu"]["some"].total_us == 1000
    got, unread = pressure._read_cgroups([str(tmp_path / "b")] * 3, -1.0)       # out of time at once
    assert got == {} and unread == 3
