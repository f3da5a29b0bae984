"""Time to verdict as the machine grows: N extra threads (each waking every second), or N
cgroups each with a CPU quota (what the cgroup walks of cgroup.throttling and
system.pressure read), plus a pthread ABBA deadlock started before the investigation, under
playbooks/freeze.yaml.  Measures launch -> all attached (the report's own timing), launch ->
verdict (wall time of the run), the run's CPU time, peak memory, and whether the deadlock is
still found with the right threads.

    sudo .venv/bin/python bench/scale.py [--sizes 0,1000,10000] [--cgroups 1000] [--reps 3] [--out docs/performance.md]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from docsplice import splice  # noqa: E402
sys.path.insert(0, str(REPO / "tests"))
from scenarios.build import c_helper  # noqa: E402
from scenarios.procs import processes, start_abba  # noqa: E402

INVESTIGATE = str(Path(sys.executable).parent / "investigate")     # the installed command
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


@contextlib.contextmanager
def quota_cgroups(n: int) -> Iterator[None]:
    """``n`` empty cgroups, each with a CPU quota (cgroup v2 cpu.max, else v1 cpu), removed after."""
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    root = Path("/sys/fs/cgroup" if v2 else "/sys/fs/cgroup/cpu") / f"inv-scale-{os.getpid()}"
    made: list[Path] = []
    try:
        if n:
            root.mkdir()
            made.append(root)
            if v2:
                (root / "cgroup.subtree_control").write_text("+cpu")
        for i in range(n):
            d = root / f"q{i}"
            d.mkdir()
            made.append(d)
            if v2:
                (d / "cpu.max").write_text("50000 100000")
            else:
                (d / "cpu.cfs_quota_us").write_text("50000")
        yield
    finally:
        for d in reversed(made):
            d.rmdir()


def one(n: int, ncg: int, tmp: Path) -> dict[str, float | bool]:
    many, abba = c_helper("many_threads", tmp), c_helper("abba", tmp)
    with quota_cgroups(ncg), processes() as ps:
        if n:
            crowd = ps.spawn_argv([str(many), str(n), "1000", "120"])
        _, waiters = start_abba(ps, str(abba), seconds=120, settle=3.0 if n < 5000 else 6.0)
        if n:
            assert len(os.listdir(f"/proc/{crowd.pid}/task")) >= n, "the crowd did not start"
        t0 = time.monotonic()
        p = subprocess.Popen([INVESTIGATE, "playbooks/freeze.yaml", "--window", "3",
                              "--json", "--out", str(tmp / f"b{n}-{ncg}-{time.monotonic_ns()}")], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV)
        out = p.stdout.read()
        _, _, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
    rep = json.loads(out)
    dl = [v for v in rep["verdicts"] if v["verdict"] == "deadlock"]
    right = bool(dl) and {x["tid"] for x in dl[0]["tasks"]} == {tid for tid, _ in waiters.values()}
    return {"wall": wall, "attached": rep.get("timings", {}).get("launch_to_attached_s", float("nan")),
            "rss": ru.ru_maxrss / 1024, "cpu": ru.ru_utime + ru.ru_stime, "found": right}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="0,1000,10000", help="extra threads, one row each")
    ap.add_argument("--cgroups", default="1000", help="cgroups with a CPU quota, one row each (no extra threads)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    cases = [(int(x), 0) for x in a.sizes.split(",") if x] + [(0, int(x)) for x in a.cgroups.split(",") if x]
    res: dict[tuple[int, int], list[dict]] = {c: [] for c in cases}
    with tempfile.TemporaryDirectory() as d:
        for rep in range(a.reps):
            for n, ncg in cases:
                r = one(n, ncg, Path(d))
                res[(n, ncg)].append(r)
                print(f"rep {rep + 1} threads={n} cgroups={ncg}: verdict in {r['wall']:.2f} s, attached "
                      f"{r['attached']:.3f} s, cpu {r['cpu']:.2f} s, rss {r['rss']:.0f} MiB, deadlock found: {r['found']}",
                      file=sys.stderr)
    lines = ["| extra threads | cgroups with a quota | launch → all attached | launch → verdict (window 3 s) | "
             "CPU of the run | peak memory | deadlock found, right threads |",
             "|---|---|---|---|---|---|---|"]
    for (n, ncg), rs in res.items():
        def med(k: str) -> str:
            xs = [r[k] for r in rs]
            return f"{statistics.median(xs):.3g} ({min(xs):.3g}-{max(xs):.3g})"
        lines.append(f"| {n} | {ncg} | {med('attached')} s | {med('wall')} s | {med('cpu')} s | {med('rss')} MiB | "
                     f"{sum(r['found'] for r in rs)} of {len(rs)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        splice(a.out, "scale", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
