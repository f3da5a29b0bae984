"""I/O stalls: a cgroup the test makes whose writes to a loop device of its own are limited
to 1 MiB/s (cgroup v2 io.max, or the v1 blkio controller's throttle.write_bps_device),
holding a writer that writes 256 KiB at a time with O_DIRECT -- each write waits about a
quarter of a second for the limit, while the device itself answers in well under a
millisecond.  Started before the investigation; freeze.yaml's first look sees the machine's
I/O pressure and routes to io-stall, whose verdict names the writer as victim with its
share of the window and its longest wait, the device, and the cgroup with its limit.

Look-alike that must never be named: a writer in a cgroup without a limit, writing to a
second loop device as fast as it can -- a fast device under heavy but healthy load, waited
for all the time but never for long."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.procs import (DIRECT_WRITER, SCENARIO_S, io_limited_cgroup, limited_cgroup, loop_device, processes,
                             spawn_in_cgroup, wait_alive)

pytestmark = [pytest.mark.bpf, pytest.mark.second_kernel]


def test_a_writer_held_by_its_cgroups_io_limit_is_its_victim(tmp_path: Path) -> None:
    name, free_name = f"inv-io-{os.getpid()}", f"inv-io-ok-{os.getpid()}"
    (tmp_path / "a").mkdir()
    (tmp_path / "c").mkdir()
    with loop_device(str(tmp_path / "a")) as (dev, mm), loop_device(str(tmp_path / "c")) as (fast, _), \
            io_limited_cgroup(name, mm, 1 << 20) as (cg, version), \
            limited_cgroup(free_name, "io", {}, {}, v1_controller="blkio") as (ok, _), processes() as ps:
        writer = spawn_in_cgroup(ps, cg, DIRECT_WRITER.format(name="inv-io-writer", dev=dev, seconds=SCENARIO_S))
        busy = spawn_in_cgroup(ps, ok, DIRECT_WRITER.format(name="inv-io-busy", dev=fast, seconds=SCENARIO_S))
        wait_alive(writer, 1.0)      # a few writes held by the limit before the investigation
        p = investigate("playbooks/freeze.yaml", "--window", "2", "--json", "--out", str(tmp_path / "b"),
                        timeout=240)
        for x in (writer, busy):
            wait_alive(x, 0)
    assert p.returncode == 1, p.stdout + p.stderr
    rep = json.loads(p.stdout)
    (look,) = [n for n in rep["nodes"] if n["id"] == "triage"]
    assert any("io-stall" in r["next"] for r in look["routes"]), look["routes"]
    (v,) = [v for v in rep["verdicts"] if v["node"] == "io-stall"]
    assert v["verdict"] == "io-stall", v
    d = v["evidence"]["details"]
    assert (d["kind"], d["dev"], d["device"], d["cgroup"], d["cgroup_version"]) == \
        ("limit", mm, os.path.basename(dev), f"/{name}", version), d
    assert d["limits"] == {"wbps": 1 << 20}, d["limits"]
    w = d["victim"]
    assert w["tid"] == writer.pid and w["iowait_pct"] >= 50.0 and w["max_wait_ms"] >= 150.0, w
    assert {t["tid"]: t["role"] for t in v["tasks"]} == {writer.pid: "victim"}, v["tasks"]
    assert [t["cgroup"] for t in v["tasks"]] == [f"/{name}"], v["tasks"]
    assert f"/{name}" in v["summary"] and os.path.basename(dev) in v["summary"] and "1 MiB/s" in v["summary"]
    # the busy writer: waits for its fast device all the time, never for long, never named in an
    # I/O verdict (on a slow emulated guest it may keep a kworker or ksoftirqd from its CPU, and
    # the kernel's own stall reports name what ran: true verdicts of another kind)
    named = {t["tid"] for x in rep["verdicts"] if x["verdict"] != "starvation" for t in x["tasks"]}
    assert busy.pid not in named, rep["verdicts"]
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["io-stall"]["blockio"]
    seen = {t["tid"]: t for t in ev["tasks"]}
    assert busy.pid in seen and seen[busy.pid]["max_wait_ms"] < 100.0, seen.get(busy.pid)
    fast_dev = next(x for x in ev["devices"] if x["name"] == os.path.basename(fast))
    assert fast_dev["requests"] > 100 and fast_dev["inflight"] <= 8, fast_dev
