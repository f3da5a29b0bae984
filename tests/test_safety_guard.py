"""The overhead guard on the real kernel: over budget, a probe is detached (the kernel's
listing shows its links gone while the run goes on), its nodes conclude on what it
gathered and say so, and the report records it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, bpf_ids_of_pid

pytestmark = pytest.mark.bpf


def test_guard_detaches_a_probe_over_budget_and_the_run_goes_on(tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-m", "investigator", "playbooks/freeze.yaml", "--window", "3",
                          "--max-overhead", "0.0001", "--json", "--out", str(tmp_path / "b")],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    most_links, later_links = 0, []
    t0 = time.monotonic()
    while p.poll() is None:
        n = len(bpf_ids_of_pid(p.pid)["link"])
        if time.monotonic() - t0 < 0.6:
            most_links = max(most_links, n)
        elif time.monotonic() - t0 > 1.5:
            later_links.append(n)
        time.sleep(0.05)
    out, err = p.communicate()
    assert p.returncode in (0, 1), err
    rep = json.loads(out)
    assert rep["complete"] is True
    tripped = {g["probe"] for g in rep["overhead_guard"]}
    assert "sched.runqlat" in tripped
    # links were dropped while the process was still running
    assert most_links >= 4 and later_links and max(later_links) < most_links
    notes = [e for n in rep["nodes"] for e in n["errors"] if "overhead guard" in e]
    assert notes
    assert all(n["status"] in ("refuted", "inconclusive", "confirmed") for n in rep["nodes"])
    events = [json.loads(line)["event"] for line in (tmp_path / "b" / "events.jsonl").read_text().splitlines()]
    assert "overhead_guard" in events
