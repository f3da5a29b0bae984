"""Side-by-side benchmarks: investigator against the tools an engineer would pick instead,
on a calm machine and on sick ones.

    sudo .venv/bin/python bench/run.py [--reps 5] [--sick-reps 3] [--out docs/performance.md]

Tools: investigate with the flagship playbook (freeze.yaml, every probe of its first step),
bpftrace 0.17 with the shipped runqlat.bt, Debian's libbpf-tools runqlat.  Within each
repetition the tools run in turn (the drift of a shared machine hits all alike).  Measured
as the user sees it:

- launch -> first probe / every probe of the first step attached *and announced*: the tool's
  own words on its output -- investigate's "attached PROBE via HOOK" lines (one per probe of
  the first step), libbpf-tools' "Tracing run queue latency", bpftrace's "Attaching N
  probes..." (printed just *before* it attaches, which favours bpftrace);
- CPU seconds of a whole run with a 1 s window (user + system, the kernel's verifier
  included, children included): ``investigate --window 1``, ``runqlat 1 1``, bpftrace
  stopped 1 s after it attached;
- peak memory: ``ru_maxrss`` (wait4) of a run observing for ~2 s;
- stop: SIGINT -> every probe detached (investigate: no event-driven BPF link left in the
  process, /proc/PID/fdinfo; the others detach at exit) and SIGINT -> exited (investigate
  concludes, prints the report and writes the bundle in that time);
- slowdown of ``taskset -c 1 perf bench sched pipe`` with the tool attached, against the same
  workload alone just before it (calm machine only).

Sick machines, each for the whole condition: the page cache dropped before every launch
(cold start); two tasks thrashing a 32 MiB memory cgroup (memory pressure: the tools'
pages compete with theirs); a SCHED_FIFO hog on CPU 1 (CPU starvation; RT throttling left
at the kernel's default, 95 %).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))
from docsplice import splice  # noqa: E402
from scenarios.procs import (PAGE_TOUCHER, RT_HOG, data_file, ext4_loop, memory_cgroup,  # noqa: E402
                             memory_refaults, processes, spawn_in_cgroup, wait_alive)

PY = sys.executable
OURS, BPFTRACE, LIBBPF = "investigate freeze.yaml", "bpftrace runqlat.bt", "libbpf-tools runqlat"
# what a user's shell gives: bytecode is read from (and written to) __pycache__
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "TERM": "dumb"}
ANNOUNCED = re.compile(r"\battached (\S+) via ")


def first_step_probes(path: Path) -> int:
    """Distinct probes the playbook's start nodes attach (what 'first step attached' counts)."""
    sys.path.insert(0, str(REPO))
    from investigator.playbook.load import load_playbook
    lp = load_playbook(path)
    return len({lp.probes[nid][u.as_ or lp.alias_of(nid, u.use)].name
                for nid in lp.spec.start for u in lp.spec.nodes[nid].probes})


def tools(tmp: str) -> dict[str, dict[str, Any]]:
    book = REPO / "playbooks" / "freeze.yaml"
    # the installed command, as a user runs it (its modules compiled at install)
    inv = [str(Path(PY).parent / "investigate"), str(book), "--max-overhead", "100", "--plain"]
    t: dict[str, dict[str, Any]] = {
        OURS: {"long": inv + ["--window", "600", "--out", f"{tmp}/long"],
               "short": inv + ["--window", "1", "-q", "--out", f"{tmp}/short"],
               "ready": ("count", first_step_probes(book)), "detach": "links"},
    }
    if shutil.which("bpftrace"):
        t[BPFTRACE] = {"long": ["bpftrace", str(REPO / "bench" / "runqlat.bt")], "short": None,
                       "ready": ("marker", "Attaching"), "detach": "exit"}
    if shutil.which("runqlat"):
        # stdbuf: its stdout is a pipe here, which stdio would buffer until exit
        t[LIBBPF] = {"long": ["stdbuf", "-oL", "runqlat"], "short": ["runqlat", "1", "1"],
                     "ready": ("marker", "Tracing run queue latency"), "detach": "exit"}
    return t


def _event_links(pid: int) -> int:
    """BPF links the process holds that run on events (every link but a task iterator's)."""
    n = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fdinfo")
    except OSError:
        return 0
    for fd in fds:
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = f.read()
        except OSError:
            continue
        if "link_id:" in info and "link_type:\titer" not in info:
            n += 1
    return n


class Run:
    """One launch of a tool: its output read line by line in a thread, times from launch."""

    def __init__(self, cmd: list[str], ready: tuple[str, Any]) -> None:
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, bufsize=1, env=ENV)
        self.first = self.all = float("nan")
        self.lines: list[str] = []
        self._ready = threading.Event()
        kind, want = ready
        seen: set[str] = set()

        def read() -> None:
            assert self.p.stdout is not None
            for line in self.p.stdout:
                now = time.monotonic() - self.t0
                self.lines.append(line)
                if kind == "marker" and want in line and self.first != self.first:
                    self.first = self.all = now
                    self._ready.set()
                elif kind == "count" and (m := ANNOUNCED.search(line)):
                    if self.first != self.first:
                        self.first = now
                    seen.add(m.group(1))
                    if len(seen) >= want and self.all != self.all:
                        self.all = now
                        self._ready.set()
            self._ready.set()
        threading.Thread(target=read, daemon=True).start()

    def wait_ready(self, timeout: float = 60) -> None:
        if not self._ready.wait(timeout) or self.all != self.all:
            self.p.kill()
            raise RuntimeError(f"{self.p.args[:3]} never said it was attached:\n{''.join(self.lines[-20:])}")

    def stop(self, detach: str) -> tuple[float, float, float]:
        """SIGINT; (seconds to every probe detached, seconds to exit, peak RSS in MiB)."""
        if self.p.poll() is not None:
            raise RuntimeError(f"{self.p.args[:3]} exited early:\n{''.join(self.lines[-20:])}")
        t = time.monotonic()
        self.p.send_signal(signal.SIGINT)
        detached = float("nan")
        if detach == "links":
            while _event_links(self.p.pid) and self.p.poll() is None:
                time.sleep(0.0005)
            detached = time.monotonic() - t
        _, _, ru = os.wait4(self.p.pid, 0)
        self.p.returncode = 0
        exited = time.monotonic() - t
        return (exited if detach == "exit" else detached), exited, ru.ru_maxrss / 1024


def cpu_of_short_run(spec: dict[str, Any]) -> float:
    """CPU seconds (user + system, children included) of a whole run with a 1 s window."""
    if spec["short"] is not None:
        t = time.monotonic()
        p = subprocess.Popen(spec["short"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        _, _, ru = os.wait4(p.pid, 0)
        p.returncode = 0
        if time.monotonic() - t > 120:
            raise RuntimeError(f"{spec['short'][:3]} took over 120 s")
        return ru.ru_utime + ru.ru_stime
    r = Run(spec["long"], spec["ready"])
    r.wait_ready()
    time.sleep(1.0)
    r.p.send_signal(signal.SIGINT)
    _, _, ru = os.wait4(r.p.pid, 0)
    r.p.returncode = 0
    return ru.ru_utime + ru.ru_stime


def pipe_bench(loops: int) -> float:
    """Seconds of `perf bench sched pipe` pinned to CPU 1."""
    out = subprocess.run(["taskset", "-c", "1", "perf", "bench", "sched", "pipe", "-l", str(loops)],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if "Total time:" in line:
            return float(line.split()[-2])
    raise RuntimeError(out)


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


@contextlib.contextmanager
def condition(name: str, tmp: str) -> Iterator[Any]:
    """The machine's state for one set of measurements; yields what runs before each launch."""
    if name == "calm":
        yield lambda: None
    elif name == "cold cache":
        yield drop_caches
    elif name == "memory pressure":
        with ext4_loop(tmp, mib=256) as mnt, memory_cgroup(f"inv-bench-mem-{os.getpid()}", 32) as (cg, ver), \
                processes() as ps:
            big = data_file(f"{mnt}/big", 96)
            touchers = [spawn_in_cgroup(ps, cg, PAGE_TOUCHER.format(name=f"bench-touch{i}", path=big,
                                                                       seconds=3600)) for i in range(2)]
            while memory_refaults(cg, ver) < 20000:
                wait_alive(touchers[0], 0.05)
            yield lambda: wait_alive(touchers[0], 0.0)
    elif name == "CPU starvation":
        with processes() as ps:
            hog = ps.spawn(RT_HOG, name="bench-rt-hog", cpu=1, rtprio=10, seconds=3600)
            wait_alive(hog, 0.3)
            yield lambda: wait_alive(hog, 0.0)
    else:
        raise ValueError(name)


KEYS = ("first", "all", "cpu", "rss", "detached", "exit", "pipe")


def measure(ts: dict[str, dict[str, Any]], cond: str, reps: int, loops: int, tmp: str) -> dict[str, dict[str, list[float]]]:
    res: dict[str, dict[str, list[float]]] = {n: {k: [] for k in KEYS} for n in ts}
    with condition(cond, tmp) as before:
        for rep in range(reps):
            for name, spec in ts.items():
                r = res[name]
                before()
                r["cpu"].append(cpu_of_short_run(spec))
                if cond == "calm":
                    base = pipe_bench(loops)
                before()
                run = Run(spec["long"], spec["ready"])
                run.wait_ready()
                r["first"].append(run.first)
                r["all"].append(run.all)
                time.sleep(1.0)
                if cond == "calm":
                    r["pipe"].append(pipe_bench(loops) / base)
                time.sleep(1.0)
                det, ex, rss = run.stop(spec["detach"])
                r["detached"].append(det)
                r["exit"].append(ex)
                r["rss"].append(rss)
                print(f"[{cond}] rep {rep + 1}/{reps} {name}: first {run.first:.3f} s, all {run.all:.3f} s, "
                      f"cpu {r['cpu'][-1]:.3f} s, rss {rss:.0f} MiB, detached {det:.4f} s, exit {ex:.3f} s",
                      file=sys.stderr)
    return res


def med(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def fmt(xs: list[float], unit: str) -> str:
    xs = [x for x in xs if x == x]
    if not xs:
        return "-"
    return f"{statistics.median(xs):.3g} {unit} ({min(xs):.3g}-{max(xs):.3g})"


def table(res: dict[str, dict[str, list[float]]], calm: bool) -> list[str]:
    head = ("| tool | launch → first attached | launch → first step attached | CPU, 1 s-window run | "
            "peak memory | SIGINT → probes detached | SIGINT → exited |" + (" pinned pipe slowdown |" if calm else ""))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in res.items():
        lines.append(f"| {name} | {fmt(r['first'], 's')} | {fmt(r['all'], 's')} | {fmt(r['cpu'], 's')} | "
                     f"{fmt(r['rss'], 'MiB')} | {fmt(r['detached'], 's')} | {fmt(r['exit'], 's')} |"
                     + (f" {fmt(r['pipe'], 'x')} |" if calm else ""))
    return lines


def verdicts(res: dict[str, dict[str, list[float]]], calm: bool) -> list[str]:
    """One line per target of the issue, as a ratio, met or missed."""
    o, b, lt = res[OURS], res.get(BPFTRACE), res.get(LIBBPF)
    out = []

    def line(what: str, ours: float, ref: float, bound: float, unit: str, ok: bool) -> None:
        ratio = ours / ref if ref == ref and ref else float("nan")
        out.append(f"- {what}: {ours:.3g} {unit} against {bound:.3g} {unit} (ratio {ratio:.2f}): "
                   f"**{'met' if ok else 'missed'}**")
    if b:
        line("every first-step probe attached and announced, against bpftrace's runqlat.bt",
             med(o["all"]), med(b["all"]), med(b["all"]), "s", med(o["all"]) <= med(b["all"]))
        line("first probe attached, against a third of bpftrace's",
             med(o["first"]), med(b["all"]) / 3, med(b["all"]) / 3, "s", med(o["first"]) <= med(b["all"]) / 3)
        line("CPU of a 1 s-window run, against 0.5 s (bpftrace: %.3g s)" % med(b["cpu"]),
             med(o["cpu"]), 0.5, 0.5, "s", med(o["cpu"]) <= 0.5)
        line("peak memory, against 40 % of bpftrace's", med(o["rss"]), med(b["rss"]) * 0.4,
             med(b["rss"]) * 0.4, "MiB", med(o["rss"]) <= med(b["rss"]) * 0.4)
    if lt:
        line("SIGINT → every probe detached, against libbpf-tools' stop", med(o["detached"]), med(lt["exit"]),
             med(lt["exit"]), "s", med(o["detached"]) <= med(lt["exit"]))
        if calm:
            line("pinned pipe slowdown with every first-step probe attached, against libbpf-tools runqlat's",
                 med(o["pipe"]), med(lt["pipe"]), med(lt["pipe"]), "x", med(o["pipe"]) <= med(lt["pipe"]))
    return out


CONDITIONS = ("calm", "cold cache", "memory pressure", "CPU starvation")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5, help="repetitions on the calm machine")
    ap.add_argument("--sick-reps", type=int, default=3, help="repetitions in each sick condition")
    ap.add_argument("--loops", type=int, default=200000)
    ap.add_argument("--only", choices=CONDITIONS, action="append")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    text = []
    with tempfile.TemporaryDirectory() as tmp:
        ts = tools(tmp)
        for cond in args.only or CONDITIONS:
            calm = cond == "calm"
            res = measure(ts, cond, args.reps if calm else args.sick_reps, args.loops, tmp)
            n = args.reps if calm else args.sick_reps
            text += [f"### {cond} ({n} repetitions, median (min-max))", ""] + table(res, calm) + [""] \
                + verdicts(res, calm) + [""]
    out = "\n".join(text)
    print(out)
    if args.out:
        splice(args.out, "results", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
