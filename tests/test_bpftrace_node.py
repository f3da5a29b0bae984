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
from conftest import REPO, bpf_ids_of_pid, investigate, kernel_bpf_listing
from scenarios.procs import PERIODIC, RT_HOG, SCENARIO_S, processes, wait_alive

pytestmark = [pytest.mark.bpf,
              pytest.mark.skipif(shutil.which("bpftrace") is None, reason="bpftrace is not installed")]
BOOK = "playbooks/runqueue-bpftrace.yaml"


@pytest.mark.cpu_heavy
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs a second CPU to starve")
def test_bpftrace_node_concludes_starvation(tmp_path: Path) -> None:
    with processes() as ps:
        ps.spawn(RT_HOG, name="rt-hog", cpu=1, rtprio=10, seconds=SCENARIO_S)
        victim = ps.spawn(PERIODIC, name="periodic", cpu=1, period=0.005, work=0.02, seconds=SCENARIO_S)
        wait_alive(victim, 2.5)
        p = investigate(BOOK, "--window", "3", "--json", "--allow-custom-probes", "--out", str(tmp_path / "b"))
    assert p.returncode == 1, p.stderr
    rep = json.loads(p.stdout)
    (v,) = rep["verdicts"]
    assert v["verdict"] == "starvation" and "periodic" in v["summary"]
    assert rep["nodes"][0]["probes"][0]["hook"] == "bpftrace"
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["runq-bt"]["bt"]
    assert ev["worst_ms"]["periodic"] >= 100


def _bpftrace_children(pid: int, timeout: float = 30) -> list[int]:
    """The tool's bpftrace children, waited for until one has attached its programs."""
    from scenarios.procs import children_of
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = []
        for k in children_of(pid):
            try:
                if open(f"/proc/{k}/comm").read().strip() == "bpftrace":
                    kids.append(k)
            except OSError:
                pass
        if kids and all(bpf_ids_of_pid(k)["prog"] for k in kids):
            return kids
        time.sleep(0.05)
    return []


def _gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{k}") for k in pids):
        time.sleep(0.05)
    return not any(os.path.exists(f"/proc/{k}") for k in pids)


def test_bpftrace_child_dies_with_the_tool(tmp_path: Path) -> None:
    """A SIGKILL of the tool leaves no bpftrace process and none of its BPF programs."""
    p = subprocess.Popen([sys.executable, "-m", "investigator", BOOK, "--window", "30", "-q",
                          "--allow-custom-probes", "--out", str(tmp_path / "b")], cwd=REPO, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        kids = _bpftrace_children(p.pid)
        assert kids, "bpftrace never attached"
        progs = set().union(*(bpf_ids_of_pid(k)["prog"] for k in kids))
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    assert _gone(kids, 10)
    assert progs and not progs & {int(x["id"]) for x in kernel_bpf_listing()["prog"]}


def _book(tmp: Path, program: str, name: str = "bt") -> Path:
    book = tmp / f"{name}.yaml"
    body = "\n".join("          " + ln for ln in program.splitlines())
    book.write_text(f"""apiVersion: investigator/v1
kind: Playbook
metadata: {{name: {name}}}
start: [bt]
nodes:
  bt:
    hypothesis: a bpftrace program
    probes:
      - bpftrace: |
{body}
    conclude: [{{when: "true", verdict: refuted}}]
""")
    return book


def _wrapped_bpftrace(tmp: Path) -> tuple[dict[str, str], Path]:
    """PATH with a bpftrace that records that it was started, then runs the real one."""
    real = shutil.which("bpftrace")
    (tmp / "bin").mkdir()
    marker = tmp / "bpftrace-started"
    wrapper = tmp / "bin" / "bpftrace"
    wrapper.write_text(f"#!/bin/sh\necho $$ >> {marker}\nexec {real} \"$@\"\n")
    wrapper.chmod(0o755)
    return {**os.environ, "PATH": f"{tmp / 'bin'}:{os.environ['PATH']}"}, marker


FLOOD = 'profile:hz:997 { cat("/nonexistent/investigator-stderr-flood"); @n = count(); }'


def test_bpftrace_needs_the_flag_and_nothing_starts_without_it(tmp_path: Path) -> None:
    env, marker = _wrapped_bpftrace(tmp_path)
    book = _book(tmp_path, FLOOD)
    p = subprocess.run([sys.executable, "-m", "investigator", str(book), "--window", "1", "--out",
                        str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 2, p.stderr
    assert f"{book}:9:19: a bpftrace program is custom code that runs as root: run with --allow-custom-probes" \
        in p.stderr and "nothing was attached" in p.stderr
    assert not marker.exists() and not (tmp_path / "b").exists()    # no bpftrace, no run at all
    p = investigate("validate", str(book))
    assert p.returncode == 2 and "--allow-custom-probes" in p.stderr
    assert investigate("validate", "--allow-custom-probes", str(book)).returncode == 0
    assert investigate("graph", str(book)).returncode == 0           # reading it runs nothing


def test_a_flood_on_stderr_does_not_block_the_run(tmp_path: Path) -> None:
    """bpftrace writes an error line per cat() of a missing file, ~1000 a second: well over a
    pipe's 64 KiB within the window.  Drained while it runs, it still prints its maps when the
    window closes, and the run ends on time."""
    env, marker = _wrapped_bpftrace(tmp_path)
    window = 2.0
    p = subprocess.run([sys.executable, "-m", "investigator", str(_book(tmp_path, FLOOD)), "--window", str(window),
                        "--allow-custom-probes", "--max-overhead", "100", "--json", "--out", str(tmp_path / "b")],
                       cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    assert marker.exists()
    rep = json.loads(p.stdout)
    # a blocked bpftrace costs its 10 s stop timeout after the window: measured from attach,
    # by the run itself, so that a slow start does not count
    observed = rep["duration_s"] - rep["timings"]["attached_s"]
    assert observed < window + 9, rep["timings"]
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["bt"]["bt"]
    assert ev["n"] > 200, ev                     # its maps came after the flood
    probe = ev["probe"]
    assert probe["stderr_dropped_bytes"] > 0 and "failed to open file" in probe["stderr_tail"][-1], probe


def test_the_guard_stops_a_costly_bpftrace_and_the_run_goes_on(tmp_path: Path) -> None:
    book = _book(tmp_path, 'profile:hz:997 { printf("%d %s %s\\n", pid, comm, kstack); @n = count(); }')
    p = subprocess.Popen([sys.executable, "-m", "investigator", str(book), "--window", "8", "--json",
                          "--allow-custom-probes", "--max-overhead", "0.05", "--out", str(tmp_path / "b")],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        kids = _bpftrace_children(p.pid)
        assert kids, "bpftrace never attached"
        assert _gone(kids, 6) and p.poll() is None      # stopped by the guard, inside the window
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    rep = json.loads(out)
    assert [g["probe"] for g in rep["overhead_guard"]] == ["bpftrace"], rep["overhead_guard"]
    assert "its process's CPU time" in rep["overhead_guard"][0]["reason"]
    (node,) = rep["nodes"]
    assert node["status"] == "refuted" and any("overhead guard" in e for e in node["errors"]), node


def test_a_quiet_bpftrace_is_left_alone_by_the_guard(tmp_path: Path) -> None:
    book = _book(tmp_path, "tracepoint:sched:sched_process_exec { @n = count(); }")
    p = investigate(str(book), "--window", "2", "--json", "--allow-custom-probes", "--max-overhead", "0.5",
                    "--out", str(tmp_path / "b"))
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert "overhead_guard" not in rep and not rep["nodes"][0]["errors"], rep


def test_without_bpftrace_the_node_is_unobservable(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": "/nonexistent"}
    p = subprocess.run([sys.executable, "-m", "investigator", BOOK, "--window", "1", "--json",
                        "--allow-custom-probes", "--out", str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True,
                       timeout=60, env=env)
    assert p.returncode == 3, p.stderr
    node = json.loads(p.stdout)["nodes"][0]
    assert node["status"] == "unobservable" and "bpftrace is not installed" in " ".join(node["errors"])
