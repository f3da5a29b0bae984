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
from conftest import REPO, bpf_ids_of_pid, still_loaded, wait_unloaded

pytestmark = pytest.mark.bpf


def _start(tmp_path: Path, window: str = "30") -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "investigator", "playbooks/freeze.yaml", "--window", window,
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
        ids = _wait_attached(p, 7)   # 3 scheduler + 3 workqueue tracepoints + the task iterator
        assert still_loaded(ids) == ids, "the kernel lists what the process holds"
        time.sleep(0.5)
    finally:
        p.kill()
        p.wait(timeout=10)
    assert wait_unloaded(ids) == {"prog": set(), "link": set()}


def test_sigint_writes_a_partial_report(tmp_path: Path) -> None:
    p = _start(tmp_path)
    try:
        ids = _wait_attached(p, 7)
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    rep = json.loads((tmp_path / "b" / "report.json").read_text())
    assert rep["complete"] is False and rep["interrupted_by"] == "SIGINT"
    assert {n["id"] for n in rep["nodes"]} == {"cpu-starvation", "blocked-tasks", "workqueue-stall"}
    assert all(n["interrupted"] for n in rep["nodes"])
    assert all(0.5 < n["observed_s"] < 10 for n in rep["nodes"])
    for f in ("report.md", "evidence.json", "events.jsonl", "playbook.yaml"):
        assert (tmp_path / "b" / f).stat().st_size > 0
    assert "INCOMPLETE" in out
    assert wait_unloaded(ids) == {"prog": set(), "link": set()}
