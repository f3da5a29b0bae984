"""The kernel's log as /dev/kmsg gives it, one record per read, and the reports in it that
tell of a freeze: a hung task (with the lock's owner the kernel names), an RCU stall, a
soft or hard lockup, a workqueue lockup, RT throttling, an OOM kill, a sleep in atomic
context.

A record is ``PRIO,SEQ,TIMESTAMP_US,FLAGS;MESSAGE`` followed by ``\\n KEY=VALUE`` lines;
non-printable bytes of the message are escaped as ``\\xNN``.  The timestamp is the kernel's
local clock in microseconds since boot (CLOCK_MONOTONIC, to within the clocks' drift).
A reader that falls behind the ring buffer gets EPIPE once and goes on from the oldest
record still there; the records lost are counted from the gap in sequence numbers.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any, Iterator

PATH = "/dev/kmsg"
MAX_RECORD = 8192                   # the kernel's own record limit (CONSOLE_EXT_LOG_MAX)
MAX_STACK = 32                      # call-trace frames kept per report
MAX_TEXT = 240                      # characters of a report's first line kept
CONTINUES_US = 2_000_000            # a report's lines come one after another: after a gap, not its


@dataclass(frozen=True)
class Record:
    seq: int
    ts_us: int
    prio: int
    text: str


def open_kmsg() -> int:
    """A non-blocking descriptor on /dev/kmsg positioned at its oldest record; OSError when
    it cannot be read (not root, dmesg_restrict without CAP_SYSLOG, no such device)."""
    fd = os.open(PATH, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        if not stat.S_ISCHR(os.fstat(fd).st_mode):
            raise OSError(errno.ENODEV, f"{PATH} is not a character device")
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


def parse_record(raw: bytes) -> Record | None:
    head, sep, rest = raw.partition(b";")
    if not sep:
        return None
    parts = head.split(b",")
    try:
        prio, seq, ts = int(parts[0]) & 7, int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return None
    msg = rest.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    if "\\x" in msg:
        msg = re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), msg)
    return Record(seq, ts, prio, msg)


@dataclass
class Reader:
    """Records read from one descriptor, within bounds: at most ``max_records`` and
    ``max_bytes`` per call of ``read``."""
    fd: int
    max_records: int = 50_000
    max_bytes: int = 8 << 20
    next_seq: int = -1
    lost: int = 0
    capped: bool = False

    def read(self) -> list[Record]:
        out: list[Record] = []
        nbytes = 0
        while len(out) < self.max_records and nbytes < self.max_bytes:
            try:
                raw = os.read(self.fd, MAX_RECORD)
            except BlockingIOError:
                return out
            except OSError as e:
                if e.errno == errno.EPIPE:      # overwritten before it was read: go on
                    continue
                if e.errno == errno.EINTR:
                    continue
                raise
            if not raw:
                return out
            nbytes += len(raw)
            r = parse_record(raw)
            if r is None:
                continue
            if self.next_seq >= 0 and r.seq > self.next_seq:
                self.lost += r.seq - self.next_seq
            self.next_seq = r.seq + 1
            out.append(r)
        self.capped = True
        return out


def now_us() -> int:
    """The kernel log's clock now (microseconds since boot).  The log's stamps are the
    scheduler clock, which no NTP adjusts: CLOCK_MONOTONIC_RAW is the closer of the clocks
    user space can read."""
    import time
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW) // 1000


# --- the reports ----------------------------------------------------------------------

_TASK = r"(?P<comm>.{1,64}?):(?P<tid>\d+)"
HEADS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("hung-task", re.compile(r"INFO: task " + _TASK + r" blocked for more than (?P<seconds>\d+) seconds")),
    ("soft-lockup", re.compile(r"BUG: soft lockup - CPU#(?P<cpu>\d+) stuck for (?P<seconds>\d+)s! \[" + _TASK + r"\]")),
    ("hard-lockup", re.compile(r"[Ww]atchdog detected hard LOCKUP on cpu (?P<cpu>\d+)")),
    ("rcu-stall", re.compile(r"INFO: (?P<flavor>\w+) (?:self-)?detected (?:expedited )?stalls? on (?:CPUs|CPU|tasks)")),
    ("workqueue-lockup", re.compile(r"BUG: workqueue lockup - pool cpus=(?P<cpus>[\d,-]+)\S* .*stuck for (?P<seconds>\d+)s")),
    ("rt-throttling", re.compile(r"sched: RT throttling activated")),
    ("oom-kill", re.compile(r"(?P<memcg>Memory cgroup )?[Oo]ut of memory(?:[^:]*)?: Killed process (?P<tid>\d+) \((?P<comm>[^)]*)\)")),
    ("atomic-sleep", re.compile(r"BUG: scheduling while atomic: (?P<comm>.{1,64}?)/(?P<tid>\d+)/")),
    ("atomic-sleep", re.compile(r"BUG: sleeping function called from invalid context at ")),
    # the first line of an OOM report, from the task whose allocation failed; its kill follows
    ("oom-invoked", re.compile(r"(?P<comm>\S.{0,63}?) invoked oom-killer: ")),
)
# every head holds one of these: a line with none is no head (checked before the patterns,
# which cost ten searches a line over a log of thousands)
_HEAD_NEEDLES = ("INFO: ", "BUG: ", "LOCKUP", "RT throttling", "ut of memory", " invoked oom-killer: ")
# lines that add to the report before them
BLOCKER = re.compile(r"INFO: task " + _TASK + r" (?:<\w+> )?(?:is )?blocked on an? (?P<kind>[\w-]+) likely "
                     r"(?:owned|last held) by task (?P<bcomm>.{1,64}?):(?P<btid>\d+)")
RCU_CPU = re.compile(r"rcu:\s+(?P<cpu>\d+)-")
INVALID_CTX = re.compile(r"in_atomic\(\): \d+, irqs_disabled\(\): \d+, .*pid: (?P<tid>\d+), name: (?P<comm>.{1,64})$")
CPU_LINE = re.compile(r"CPU: (?P<cpu>\d+) (?:UID: \d+ )?PID: (?P<tid>\d+) Comm: (?P<comm>\S+)")
OOM_DETAIL = re.compile(r"oom-kill:constraint=(?P<constraint>[^,]+),(?:.*?oom_memcg=(?P<memcg>[^,]*),)?"
                        r".*?task_memcg=(?P<task_memcg>[^,]*),task=(?P<comm>[^,]*),pid=(?P<tid>\d+)")
FRAME = re.compile(r"^\s*(?:\? )?(?P<fn>[A-Za-z_][\w.]*\+0x[0-9a-f]+/0x[0-9a-f]+)")
MARKER = re.compile(r"^\s*</?(?:TASK|IRQ|NMI|SOFTIRQ)>\s*$")


@dataclass
class Report:
    kind: str
    seq: int
    ts_us: int
    text: str
    cpu: int = -1
    cpus: list[int] = field(default_factory=list)
    task: dict[str, Any] | None = None
    blocker: dict[str, Any] | None = None
    seconds: int = 0
    cgroup: str = ""
    stack: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    _in_trace: bool = False
    _traced: bool = False           # one call trace per report: the first after its head
    _last_us: int = 0               # the stamp of its latest line

    def evidence(self, t0_us: int) -> dict[str, Any]:
        tasks = []
        if self.task:
            tasks.append({**self.task, "role": "victim" if self.kind in ("hung-task", "oom-kill") else "culprit"})
            if self.blocker:
                tasks[0]["role"] = "waiter"
                tasks.append({**self.blocker, "role": "holder"})
        out: dict[str, Any] = {
            "kind": self.kind, "seq": self.seq, "at_s": round((self.ts_us - t0_us) / 1e6, 3),
            "text": self.text[:MAX_TEXT], "cpu": self.cpu, "cpus": self.cpus or ([self.cpu] if self.cpu >= 0 else []),
            "task": self.task, "blocker": self.blocker, "seconds": self.seconds, "cgroup": self.cgroup,
            "stack": self.stack, "tasks": tasks, **self.extra}
        if self.blocker:
            out["locks"] = [{"lock": f"{self.blocker.get('lock_kind', 'lock')} owned by {self.blocker['comm']}",
                             "kind": self.blocker.get("lock_kind", ""), "holder_tid": self.blocker["tid"],
                             "waiter_tid": self.task["tid"] if self.task else 0}]
        return out


def _task(m: re.Match[str], tid: str = "tid", comm: str = "comm") -> dict[str, Any]:
    return {"tid": int(m.group(tid)), "comm": m.group(comm).strip()}


def reports(records: Iterator[Record] | list[Record]) -> list[Report]:
    """The freeze reports among ``records`` (in order), each with what the lines after its
    first one add: the call trace, the lock owner, the stalled CPUs, the OOM victim's cgroup."""
    out: list[Report] = []
    cur: Report | None = None
    for r in records:
        line = r.text
        head = None
        if any(n in line for n in _HEAD_NEEDLES):
            head = next(((k, m) for k, p in HEADS for m in [p.search(line)] if m), None)
        if head is not None:
            kind, m = head
            g = m.groupdict()
            cur = Report(kind, r.seq, r.ts_us, line.strip(), _last_us=r.ts_us)
            if g.get("tid"):
                cur.task = _task(m)
            if g.get("cpu"):
                cur.cpu = int(g["cpu"])
            if g.get("seconds"):
                cur.seconds = int(g["seconds"])
            if g.get("cpus"):
                cur.cpus = _cpu_list(g["cpus"])
            if kind == "rcu-stall":
                cur.extra["flavor"] = g["flavor"]
            if kind == "oom-invoked":
                cur.task = {"tid": 0, "comm": g["comm"].strip()}
            if kind == "oom-kill":
                cur.extra["memcg"] = bool(g.get("memcg"))
                prev = out[-1] if out and out[-1].kind == "oom-invoked" else None
                if prev is not None:            # the allocating task that invoked the killer
                    cur.extra["invoked_by"] = prev.task
                    cur.cgroup = prev.cgroup
                    cur.stack = prev.stack
                    cur.extra.update({k: prev.extra[k] for k in ("constraint", "task_cgroup") if k in prev.extra})
                    out.pop()
            out.append(cur)
            continue
        if cur is None or r.ts_us - cur._last_us > CONTINUES_US:
            continue
        # a line that continues the current report
        cur._last_us = r.ts_us
        b = BLOCKER.search(line)
        if b and cur.task and int(b.group("tid")) == cur.task["tid"]:
            cur.blocker = {"tid": int(b.group("btid")), "comm": b.group("bcomm").strip(), "lock_kind": b.group("kind")}
            continue
        if cur.kind == "rcu-stall":
            c = RCU_CPU.match(line)
            if c:
                cur.cpus.append(int(c.group("cpu")))
                continue
        d = OOM_DETAIL.search(line)
        if d:
            if cur.kind in ("oom-invoked", "oom-kill"):
                # the cgroup whose limit was hit (a memory cgroup OOM), else the victim's own
                cur.cgroup = cur.cgroup or d.group("memcg") or d.group("task_memcg") or ""
                cur.extra["constraint"] = d.group("constraint")
                cur.extra["task_cgroup"] = d.group("task_memcg") or ""
            continue
        ic = INVALID_CTX.search(line)
        if ic and cur.kind == "atomic-sleep" and cur.task is None:
            cur.task = _task(ic)
            continue
        cl = CPU_LINE.search(line)
        # the task the report's backtrace names: on a stalled CPU, for an RCU stall
        if cl and (cur.task is None or cur.task["tid"] == 0) and \
                cur.kind in ("rcu-stall", "hard-lockup", "atomic-sleep", "oom-invoked") and \
                not (cur.kind == "rcu-stall" and cur.cpus and int(cl.group("cpu")) not in cur.cpus) and \
                not (cur.kind == "hard-lockup" and int(cl.group("cpu")) != cur.cpu):
            cur.task = _task(cl)
            if cur.cpu < 0:
                cur.cpu = int(cl.group("cpu"))
            continue
        if line.lstrip().lower().startswith("call trace:"):      # x86 "Call Trace:", arm64 "Call trace:"
            # an RCU stall's trace is the one of the stalled CPU's task (the detecting CPU's
            # own backtrace may come first)
            if not cur._traced and not (cur.kind == "rcu-stall" and cur.task is None):
                cur._in_trace = cur._traced = True
            continue
        if cur._in_trace:
            f = FRAME.match(line)
            if f and len(cur.stack) < MAX_STACK and not line.lstrip().startswith("?"):
                cur.stack.append(f.group("fn"))
            # the trace ends at its </TASK> (x86) or at the first line that is no frame (arm64)
            if "</TASK>" in line or not (f or MARKER.match(line)):
                cur._in_trace = False
    for r in out:               # an OOM report whose kill line was not (yet) read
        if r.kind == "oom-invoked":
            r.kind = "oom"
    return out


def _cpu_list(s: str) -> list[int]:
    out: list[int] = []
    for part in s.split(","):
        a, _, b = part.partition("-")
        try:
            lo, hi = int(a), int(b or a)
        except ValueError:
            continue
        out.extend(range(lo, min(hi, lo + 4095) + 1))
    return out
