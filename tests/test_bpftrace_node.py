"""A node whose probe is a bpftrace program reaches a verdict on a real condition; its
bpftrace child dies with the tool; without bpftrace the node says why it cannot observe."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, investigate
from scenarios.procs import PERIODIC, RT_HOG, processes, wait_alive

pytestmark = [pytest.mark.bpf,
              pytest.mark.skipif(shutil.which("bpftrace") is None, reason="bpftrace is not installed")]
BOOK = "playbooks/runqueue-bpftrace.yaml"


@pytest.mark.cpu_heavy
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs a second CPU to starve")
def test_bpftrace_node_concludes_starvation(tmp_path: Path) -> None:
    with processes() as ps:
        ps.spawn(RT_HOG, name="rt-hog", cpu=1, rtprio=10, seconds=25)
        victim = ps.spawn(PERIODIC, name="periodic", cpu=1, period=0.005, work=0.02, seconds=25)
        wait_alive(victim, 2.5)
        p = investigate(BOOK, "--window", "3", "--json", "--out", str(tmp_path / "b"))
    assert p.returncode == 1, p.stderr
    rep = json.loads(p.stdout)
    (v,) = rep["verdicts"]
    assert v["verdict"] == "starvation" and "periodic" in v["summary"]
    assert rep["nodes"][0]["probes"][0]["hook"] == "bpftrace"
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["runq-bt"]["bt"]
    assert ev["worst_ms"]["periodic"] >= 100


def test_bpftrace_child_dies_with_the_tool(tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-m", "investigator", BOOK, "--window", "30", "-q",
                          "--out", str(tmp_path / "b")], cwd=REPO, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    kids: list[int] = []
    deadline = time.monotonic() + 30
    from scenarios.procs import children_of
    while time.monotonic() < deadline and not kids:
        kids = [k for k in children_of(p.pid) if open(f"/proc/{k}/comm").read().strip() == "bpftrace"]
        time.sleep(0.1)
    assert kids, "bpftrace never started"
    time.sleep(1.0)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{k}") for k in kids):
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{k}") for k in kids)


def test_without_bpftrace_the_node_is_unobservable(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": "/nonexistent"}
    p = subprocess.run([sys.executable, "-m", "investigator", BOOK, "--window", "1", "--json",
                        "--out", str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True,
                       timeout=60, env=env)
    assert p.returncode == 3, p.stderr
    node = json.loads(p.stdout)["nodes"][0]
    assert node["status"] == "unobservable" and "bpftrace is not installed" in " ".join(node["errors"])
