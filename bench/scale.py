"""Time to verdict as the machine grows: N extra threads (each waking every second), plus a
pthread ABBA deadlock started before the investigation, under playbooks/freeze.yaml.
Measures launch -> all attached (the report's own timing), launch -> verdict (wall time of
the run), peak memory, and whether the deadlock is still found with the right threads.

    sudo .venv/bin/python bench/scale.py [--sizes 0,1000,10000] [--reps 3] [--out docs/performance.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from docsplice import splice  # noqa: E402
sys.path.insert(0, str(REPO / "tests"))
from scenarios.build import c_helper  # noqa: E402
from scenarios.procs import processes, start_abba  # noqa: E402


def one(n: int, tmp: Path) -> dict[str, float | bool]:
    many, abba = c_helper("many_threads", tmp), c_helper("abba", tmp)
    with processes() as ps:
        if n:
            crowd = ps.spawn_argv([str(many), str(n), "1000", "120"])
        _, waiters = start_abba(ps, str(abba), seconds=120, settle=3.0 if n < 5000 else 6.0)
        if n:
            assert len(os.listdir(f"/proc/{crowd.pid}/task")) >= n, "the crowd did not start"
        t0 = time.monotonic()
        p = subprocess.Popen([sys.executable, "-m", "investigator", "playbooks/freeze.yaml", "--window", "3",
                              "--json", "--out", str(tmp / f"b{n}")], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        out = p.stdout.read()
        _, _, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
    rep = json.loads(out)
    dl = [v for v in rep["verdicts"] if v["verdict"] == "deadlock"]
    right = bool(dl) and {x["tid"] for x in dl[0]["tasks"]} == {tid for tid, _ in waiters.values()}
    return {"wall": wall, "attached": rep.get("timings", {}).get("launch_to_attached_s", float("nan")),
            "rss": ru.ru_maxrss / 1024, "found": right}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="0,1000,10000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    res: dict[int, list[dict]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory() as d:
        for rep in range(a.reps):
            for n in sizes:
                r = one(n, Path(d))
                res[n].append(r)
                print(f"rep {rep + 1} n={n}: verdict in {r['wall']:.2f} s, attached {r['attached']:.3f} s, "
                      f"rss {r['rss']:.0f} MiB, deadlock found: {r['found']}", file=sys.stderr)
    lines = ["| extra threads | launch → all attached | launch → verdict (window 3 s) | peak memory | deadlock found, right threads |",
             "|---|---|---|---|---|"]
    for n, rs in res.items():
        def med(k: str) -> str:
            xs = [r[k] for r in rs]
            return f"{statistics.median(xs):.3g} ({min(xs):.3g}-{max(xs):.3g})"
        lines.append(f"| {n} | {med('attached')} s | {med('wall')} s | {med('rss')} MiB | "
                     f"{sum(r['found'] for r in rs)} of {len(rs)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        splice(a.out, "scale", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
