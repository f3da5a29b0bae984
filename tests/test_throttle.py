"""CPU quota throttling: a cgroup the test makes, with a quota of 0.3 CPUs (30 ms per
100 ms period; cgroup v2 cpu.max, or the v1 cpu controller), holding a busy loop that uses
the quota up and a periodic task that then waits for it -- started before the
investigation, throttled while the other CPU is idle.  freeze.yaml's first look sees the
throttled cgroup and routes to cpu-throttled, whose verdict names the cgroup, its quota,
the busy loop as culprit and the periodic task as victim.  Look-alikes: a sibling cgroup
with a quota of two CPUs whose light task never runs out of it is never named, and
cpu-starvation (every wait under 100 ms) gives no verdict for what the quota did."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.procs import (NORMAL_HOG, PERIODIC, SCENARIO_S, limited_cgroup, processes, spawn_in_cgroup,
                             wait_alive)

pytestmark = [pytest.mark.bpf, pytest.mark.second_kernel,
              pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs a second CPU to stay idle")]


def _throttled(cg: Path) -> int:
    st = dict(line.split() for line in (cg / "cpu.stat").read_text().splitlines() if len(line.split()) == 2)
    return int(st.get("nr_throttled", 0))


def test_a_cgroup_out_of_its_cpu_quota_is_throttled_not_starved(tmp_path: Path) -> None:
    name, other = f"inv-thr-{os.getpid()}", f"inv-thr-ok-{os.getpid()}"
    with limited_cgroup(name, "cpu", {"cpu.max": "30000 100000"},
                        {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "30000"}) as (cg, _), \
            limited_cgroup(other, "cpu", {"cpu.max": "200000 100000"},
                           {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "200000"}) as (ok, _), \
            processes() as ps:
        hog = spawn_in_cgroup(ps, cg, NORMAL_HOG.format(name="inv-thr-hog", cpu=0, seconds=SCENARIO_S))
        victim = spawn_in_cgroup(ps, cg, PERIODIC.format(name="inv-thr-victim", cpu=1, period=0.01, work=0.001,
                                                         seconds=SCENARIO_S))
        light = spawn_in_cgroup(ps, ok, PERIODIC.format(name="inv-thr-light", cpu=1, period=0.01, work=0.001,
                                                        seconds=SCENARIO_S))
        # the quota has run out again and again before the investigation starts
        deadline = time.monotonic() + 60
        while _throttled(cg) < 10:
            assert time.monotonic() < deadline, "the cgroup was never throttled"
            wait_alive(hog, 0.05)
        assert _throttled(ok) == 0
        p = investigate("playbooks/freeze.yaml", "--window", "2", "--json", "--out", str(tmp_path / "b"),
                        timeout=240)
        for x in (hog, victim, light):
            wait_alive(x, 0)
    assert p.returncode == 1, p.stdout + p.stderr
    rep = json.loads(p.stdout)
    (look,) = [n for n in rep["nodes"] if n["id"] == "triage"]
    assert any("cpu-throttled" in r["next"] and f"/{name}" in r["because"] for r in look["routes"]), look["routes"]
    (v,) = [v for v in rep["verdicts"] if v["node"] == "cpu-throttled"]
    assert v["verdict"] == "throttled", v
    roles = {t["tid"]: t["role"] for t in v["tasks"]}
    assert roles == {hog.pid: "culprit", victim.pid: "victim"}, v["tasks"]
    assert all(t["cgroup"] == f"/{name}" for t in v["tasks"]), v["tasks"]
    d = v["evidence"]["details"]
    assert d["path"] == f"/{name}" and d["quota_ms"] == 30.0 and d["period_ms"] == 100.0, d
    assert d["throttled_pct"] >= 50.0 and d["throttled_ms"] >= 500.0, d
    # the culprit used about the quota, far more than the victim
    culprit = d["culprit"]
    assert culprit["tid"] == hog.pid and d["victim"]["tid"] == victim.pid, d
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["cpu-throttled"]["throttle"]
    # the quota bounds what the cgroup used over the time the node watched (2 s or more on a
    # slow machine): 0.3 CPUs, give or take a period at each end
    most = 0.3 * 1000 * ev["observed_s"] + 2 * d["quota_ms"]
    assert 300.0 <= d["used_ms"] <= most and culprit["cpu_ms"] >= 2 * (d["used_ms"] - culprit["cpu_ms"]), (most, d)
    assert "(30 ms per 100 ms, 0.3 CPUs)" in v["summary"] and f"/{name}" in v["summary"], v["summary"]
    # the look-alike cgroup, under its quota, is never named
    assert all(c["path"] != f"/{other}" for c in ev["throttled"]), ev["throttled"]
    assert ev["cgroups_count"] >= 2
    named = {t["tid"] for x in rep["verdicts"] for t in x["tasks"]}
    assert light.pid not in named
    # the waits the quota caused are not run-queue starvation: no starvation names the victim
    assert not [x for x in rep["verdicts"] if x["verdict"] == "starvation" and victim.pid in {t["tid"] for t in x["tasks"]}]
