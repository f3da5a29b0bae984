"""Side-by-side benchmarks: investigator against the tools an engineer would pick instead.

    sudo .venv/bin/python bench/run.py [--reps 5] [--out docs/performance.md]

For each tool, alternating tool by tool within each repetition (absolute times on shared
machines drift; pairs alternate so drift hits all tools alike):

- launch -> first probe attached, launch -> all attached: the BPF links the process holds
  (/proc/PID/fdinfo link_id) for tools that use BPF links; for tools that attach through
  perf events (bpftrace's tracepoints), the line they print when attaching;
- peak memory (ru_maxrss of the process, from wait4) over a 3 s observation;
- stop time: SIGINT -> the process has exited (everything detached);
- slowdown of `taskset -c 1 perf bench sched pipe -l N` (context-switch heavy, pinned)
  and of `perf bench sched messaging -g 10 -l 100` (400 tasks, noisier) with the tool
  attached, against the same workload alone in the same repetition.

Reported: median, min-max and the ratio to investigate's full flagship playbook.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from docsplice import splice  # noqa: E402
PY = sys.executable


def playbook_links(path: str) -> int:
    """BPF links a playbook's distinct probes hold once attached (their preferred hooks)."""
    sys.path.insert(0, str(REPO))
    from investigator.playbook.load import load_playbook
    lp = load_playbook(REPO / path)
    probes = {m.name: m for aliases in lp.probes.values() for m in aliases.values() if m.hooks}
    return sum(len(m.hooks[0].programs) for m in probes.values())


def tools(tmp: str) -> dict[str, dict]:  # type: ignore[type-arg]
    def ours(book: str, out: str) -> dict:  # type: ignore[type-arg]
        return {"cmd": [PY, "-m", "investigator", book, "--window", "600", "-q", "--max-overhead", "100",
                        "--out", f"{tmp}/{out}"], "links": playbook_links(book)}
    t = {
        "investigate freeze.yaml (all probes)": ours("playbooks/freeze.yaml", "a"),
        "investigate runqlat only": ours("bench/runq-only.yaml", "b"),
        "investigate offcpu only": ours("bench/offcpu-only.yaml", "c"),
    }
    if shutil.which("runqlat"):
        t["libbpf-tools runqlat"] = {"cmd": ["runqlat"], "links": 3}
    if shutil.which("offcputime"):
        t["libbpf-tools offcputime"] = {"cmd": ["offcputime"], "links": 1}
    if shutil.which("bpftrace"):
        t["bpftrace runqlat.bt"] = {"cmd": ["bpftrace", str(REPO / "bench" / "runqlat.bt")], "marker": "Attaching"}
    return t


def _links(pid: int) -> int:
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fdinfo"):
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    n += "link_id:" in f.read()
            except OSError:
                pass
    except OSError:
        pass
    return n


def start(spec: dict) -> tuple[subprocess.Popen, float, float]:  # type: ignore[type-arg]
    """Launch; return the process, seconds to the first and to all probes attached."""
    t0 = time.monotonic()
    p = subprocess.Popen(spec["cmd"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, bufsize=1)
    first = alll = float("nan")
    deadline = t0 + 30
    if "links" in spec:
        while time.monotonic() < deadline and p.poll() is None:
            n = _links(p.pid)
            now = time.monotonic() - t0
            if n >= 1 and first != first:
                first = now
            if n >= spec["links"]:
                alll = now
                break
            time.sleep(0.002)
        threading_drain(p)
    else:
        assert p.stdout is not None
        for line in p.stdout:
            if spec["marker"] in line:
                first = alll = time.monotonic() - t0
                break
            if time.monotonic() > deadline:
                break
        threading_drain(p)
    return p, first, alll


def threading_drain(p: subprocess.Popen) -> None:  # type: ignore[type-arg]
    import threading

    def drain() -> None:
        if p.stdout is not None:
            for _ in p.stdout:
                pass
    threading.Thread(target=drain, daemon=True).start()


def stop(p: subprocess.Popen) -> tuple[float, float]:  # type: ignore[type-arg]
    """SIGINT; return (seconds to exit, peak RSS in MiB)."""
    if p.poll() is not None:
        raise RuntimeError(f"{p.args} exited early with {p.returncode}")
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    _, _, ru = os.wait4(p.pid, 0)
    p.returncode = 0
    return time.monotonic() - t0, ru.ru_maxrss / 1024


def pipe_bench(loops: int) -> float:
    """Seconds of `perf bench sched pipe` pinned to CPU 1."""
    out = subprocess.run(["taskset", "-c", "1", "perf", "bench", "sched", "pipe", "-l", str(loops)],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if "Total time:" in line:
            return float(line.split()[-2])
    raise RuntimeError(out)


def messaging_bench() -> float:
    """Seconds of `perf bench sched messaging -g 10 -l 100` (many tasks, unpinned, noisier)."""
    out = subprocess.run(["perf", "bench", "sched", "messaging", "-g", "10", "-l", "100"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if "Total time:" in line:
            return float(line.split()[-2])
    raise RuntimeError(out)


def fmt(xs: list[float], unit: str, scale: float = 1.0) -> str:
    xs = [x * scale for x in xs if x == x]
    if not xs:
        return "n/a"
    return f"{statistics.median(xs):.3g} {unit} ({min(xs):.3g}-{max(xs):.3g})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--loops", type=int, default=200000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    res: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ts = tools(tmp)
        for rep in range(args.reps):
            for name, spec in ts.items():
                r = res.setdefault(name, {"first": [], "all": [], "rss": [], "stop": [], "slow": [],
                                          "slow_msg": []})
                base = pipe_bench(args.loops)
                base_msg = messaging_bench()
                p, first, alll = start(spec)
                time.sleep(1.0)
                loaded = pipe_bench(args.loops)
                loaded_msg = messaging_bench()
                time.sleep(1.0)
                st, rss = stop(p)
                r["slow_msg"].append(loaded_msg / base_msg)
                r["first"].append(first)
                r["all"].append(alll)
                r["rss"].append(rss)
                r["stop"].append(st)
                r["slow"].append(loaded / base)
                print(f"rep {rep + 1}/{args.reps} {name}: attached {alll:.3f} s, rss {rss:.0f} MiB, "
                      f"stop {st:.3f} s, slowdown {loaded / base:.2f}x", file=sys.stderr)
    ref = res[next(iter(res))]
    lines = ["| tool | launch → first attached | launch → all attached | peak memory | stop (SIGINT → exit) "
             "| slowdown of pinned `perf bench sched pipe` | slowdown of `perf bench sched messaging` |",
             "|---|---|---|---|---|---|---|"]
    for name, r in res.items():
        lines.append(f"| {name} | {fmt(r['first'], 's')} | {fmt(r['all'], 's')} | {fmt(r['rss'], 'MiB')} | "
                     f"{fmt(r['stop'], 's')} | {fmt(r['slow'], 'x')} | {fmt(r['slow_msg'], 'x')} |")
    ratios = ["", "Ratios to the tool in the first row (medians): "]
    for name, r in list(res.items())[1:]:
        def q(k: str) -> str:
            a, b = statistics.median(ref[k]), statistics.median(r[k])
            return f"{a / b:.2f}" if b else "n/a"
        ratios.append(f"- vs {name}: all-attached {q('all')}, memory {q('rss')}, stop {q('stop')}, "
                      f"slowdown pipe {q('slow')}, messaging {q('slow_msg')}")
    text = "\n".join(lines + ratios) + "\n"
    print(text)
    if args.out:
        splice(args.out, "results", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
