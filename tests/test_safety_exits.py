"""Every exit path detaches: SIGKILL in the middle of a window leaves no program or link
of the tool's behind (checked in the kernel's own listing); SIGINT gives a partial
report marked incomplete and a complete bundle."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, bpf_ids_of_pid, still_loaded, wait_for_event, wait_unloaded

pytestmark = pytest.mark.bpf


def _start(tmp_path: Path, window: str = "30") -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "investigator", "playbooks/starvation.yaml", "--window", window,
                             "--out", str(tmp_path / "b")], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_attached(p: subprocess.Popen[str], n_links: int, timeout: float = 20) -> dict[str, set[int]]:
    deadline = time.monotonic() + timeout
    ids: dict[str, set[int]] = {"prog": set(), "link": set()}
    while time.monotonic() < deadline:
        ids = bpf_ids_of_pid(p.pid)
        if len(ids["link"]) >= n_links:
            return ids
        assert p.poll() is None, p.communicate()
        time.sleep(0.05)
    raise AssertionError(f"not attached in {timeout} s: {ids}")


def test_sigkill_mid_window_leaves_nothing_loaded(tmp_path: Path) -> None:
    p = _start(tmp_path)
    try:
        ids = _wait_attached(p, 8)   # 3 scheduler + 3 workqueue tracepoints + 2 task iterators
        assert still_loaded(ids) == ids, "the kernel lists what the process holds"
        time.sleep(0.5)
    finally:
        p.kill()
        p.wait(timeout=10)
    assert wait_unloaded(ids) == {"prog": set(), "link": set(), "map": set()}


def test_sigint_writes_a_partial_report(tmp_path: Path) -> None:
    p = _start(tmp_path)
    try:
        started = wait_for_event(tmp_path / "b" / "events.jsonl", "first_attached", p)
        ids = bpf_ids_of_pid(p.pid)
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    rep = json.loads((tmp_path / "b" / "report.json").read_text())
    assert rep["complete"] is False and rep["interrupted_by"] == "SIGINT"
    assert {n["id"] for n in rep["nodes"]} == {"cpu-starvation", "workqueue-stall", "cpu-throttled", "irq-overload"}
    assert all(n["interrupted"] for n in rep["nodes"])
    assert set(started["nodes"]) == {n["id"] for n in rep["nodes"]}   # type: ignore[arg-type]
    assert all(0.5 < n["observed_s"] < 30 for n in rep["nodes"])   # cut short of the 30 s window
    for f in ("report.md", "evidence.json", "events.jsonl", "playbook.yaml"):
        assert (tmp_path / "b" / f).stat().st_size > 0
    assert "INCOMPLETE" in out and "every probe detached at" in out
    # the probes are detached first: before any node concludes, the report is printed or
    # the bundle written
    events = [json.loads(line) for line in (tmp_path / "b" / "events.jsonl").read_text().splitlines()]
    names = [e["event"] for e in events]
    det = names.index("probes_detached")
    assert det < min(i for i, n in enumerate(names) if n == "node_concluded"), names
    assert events[det]["after_signal_ms"] < 1000, events[det]
    assert wait_unloaded(ids) == {"prog": set(), "link": set(), "map": set()}


OUR_PROGRAMS = None


def _our_program_names() -> set[str]:
    global OUR_PROGRAMS
    if OUR_PROGRAMS is None:
        from conftest import repo_probe_names
        OUR_PROGRAMS = repo_probe_names()
    return OUR_PROGRAMS


def _ours_loaded() -> list[dict[str, object]]:
    from conftest import kernel_bpf_listing
    names = _our_program_names()
    return [p for p in kernel_bpf_listing()["prog"] if str(p.get("name")) in names]


def test_sigkill_at_random_moments_never_leaves_anything(tmp_path: Path) -> None:
    """Kill the tool at 20 points spread over start-up, attach, observation and read-out;
    afterwards the kernel lists none of the project's programs."""
    import random
    rng = random.Random(1234)
    assert _ours_loaded() == [], "a previous test left programs loaded"
    # the moments are spread over this machine's own start-up: measured by one run first
    p = subprocess.Popen([sys.executable, "-m", "investigator", "playbooks/freeze.yaml", "--window", "0.6",
                          "-q", "--out", str(tmp_path / "measure")], cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    try:
        wait_for_event(tmp_path / "measure" / "events.jsonl", "first_attached", p)
        attached_after = time.monotonic() - t0
    finally:
        p.kill()
        p.wait(timeout=10)
    delays = sorted(rng.uniform(0.0, attached_after * 1.3 + 0.6) for _ in range(20))
    seen: dict[str, set[int]] = {"prog": set(), "link": set(), "map": set()}
    for i, delay in enumerate(delays):
        p = subprocess.Popen([sys.executable, "-m", "investigator", "playbooks/freeze.yaml", "--window", "0.6",
                              "-q", "--out", str(tmp_path / f"b{i}")], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + delay
        while time.monotonic() < end and p.poll() is None:
            ids = bpf_ids_of_pid(p.pid)
            for k in seen:
                seen[k] |= ids[k]
            time.sleep(0.01)
        p.kill()
        p.wait(timeout=10)
    assert seen["link"], "no kill happened while probes were attached"
    assert wait_unloaded(seen) == {"prog": set(), "link": set(), "map": set()}
    deadline = time.monotonic() + 10
    while _ours_loaded() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ours_loaded() == []


def _niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.parametrize("started, asked", [(0, None), (0, -5), (10, -5)])
def test_the_run_keeps_its_priority_unless_asked(tmp_path: Path, started: int, asked: int | None) -> None:
    """By default the run keeps the niceness it was started with (raised, it would take the
    CPU from the tasks it investigates: two runs at -5 on one CPU starved a third task);
    ``--nice -5`` sets it before any thread exists, every thread inheriting it, unless the
    run was started under a niceness of its own (``nice -n 10``), which is kept."""
    import os
    own = os.getpriority(os.PRIO_PROCESS, 0) + started      # what `nice -n` gives the run
    expected = asked if asked is not None and own == 0 else own
    p = subprocess.Popen(["nice", "-n", str(started), sys.executable, "-m", "investigator",
                          "tests/fixtures/playbooks/shared.yaml", "--window", "30", "-q", "--out", str(tmp_path / "b")]
                         + (["--nice", str(asked)] if asked is not None else []),
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_event(tmp_path / "b" / "events.jsonl", "first_attached", p)
        tids = [int(x.name) for x in Path(f"/proc/{p.pid}/task").iterdir()]
        assert {_niceness(t) for t in tids} == {expected}, tids
    finally:
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=60)
