"""Bounded under load: the tool's peak memory does not grow with the number of tasks on
the machine, and two investigations at once do not disturb each other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from scenarios.build import c_helper
from scenarios.procs import PERIODIC, RT_HOG, SCENARIO_S, processes, wait_alive

pytestmark = [pytest.mark.bpf, pytest.mark.cpu_heavy]




def _peak_rss_kib(args: list[str]) -> tuple[dict, int]:  # type: ignore[type-arg]
    code = ("import os, subprocess, sys, resource, json\n"
            f"p = subprocess.run([sys.executable, '-m', 'investigator', *{args!r}], capture_output=True, text=True)\n"
            "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
            "print(json.dumps({'rc': p.returncode, 'rss': r, 'out': p.stdout, 'err': p.stderr[-2000:]}))\n")
    res = json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                                    text=True, timeout=180).stdout)
    assert res["rc"] in (0, 1), res["err"]
    return json.loads(res["out"]), int(res["rss"])


def test_peak_memory_is_bounded_with_thousands_of_tasks(tmp_path: Path) -> None:
    book = "tests/fixtures/playbooks/all-tasks.yaml"
    _, idle_rss = _peak_rss_kib([book, "--window", "2", "--json", "--out", str(tmp_path / "idle")])
    exe = c_helper("many_threads", tmp_path)
    with processes() as ps:
        crowd = ps.spawn_argv([str(exe), "3000", "50", "30"])
        wait_alive(crowd, 2.0)
        threads = len(os.listdir(f"/proc/{crowd.pid}/task"))
        rep, busy_rss = _peak_rss_kib([book, "--window", "3", "--json", "--out", str(tmp_path / "busy")])
    assert threads >= 2900
    ev = json.loads((tmp_path / "busy" / "evidence.json").read_text())["everything"]
    assert ev["blocked"]["sleeping_count"] >= 2900          # it saw them all ...
    assert len(ev["blocked"]["tasks"]) <= 50                # ... and kept a bounded part
    assert ev["runqlat"]["tasks_over_min"] > 1000
    print(f"\npeak RSS: idle machine {idle_rss / 1024:.1f} MiB, with {threads} more tasks "
          f"{busy_rss / 1024:.1f} MiB")
    assert busy_rss < idle_rss + 40 * 1024, (idle_rss, busy_rss)
    assert busy_rss < 200 * 1024


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs a second CPU to starve")
def test_two_investigations_at_once_do_not_disturb_each_other(tmp_path: Path) -> None:
    with processes() as ps:
        hog = ps.spawn(RT_HOG, name="rt-hog", cpu=1, rtprio=10, seconds=SCENARIO_S)
        victim = ps.spawn(PERIODIC, name="periodic", cpu=1, period=0.005, work=0.02, seconds=SCENARIO_S)
        wait_alive(victim, 2.5)
        # both on CPU 0: on CPU 1 one investigation would itself wait behind the hog, a real
        # starved task that the other may rightly name before the periodic victim
        runs = [subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "investigator", "playbooks/freeze.yaml",
                                  "--window", "3", "--json", "--out", str(tmp_path / f"b{i}")], cwd=REPO,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
        outs = [r.communicate(timeout=240) for r in runs]
    for r, (out, err) in zip(runs, outs):
        assert r.returncode == 1, err
        rep = json.loads(out)
        st = [v for v in rep["verdicts"] if v["node"] == "cpu-starvation"]
        assert len(st) == 1
        roles = {t["role"]: t["tid"] for t in st[0]["tasks"]}
        assert roles == {"victim": victim.pid, "culprit": hog.pid}
        assert rep["complete"] and not rep.get("overhead_guard")
