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
from conftest import REPO, bpf_ids_of_pid, events_of

pytestmark = pytest.mark.bpf


def test_guard_detaches_a_probe_over_budget_and_the_run_goes_on(tmp_path: Path) -> None:
    log = tmp_path / "b" / "events.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "investigator", "playbooks/starvation.yaml", "--window", "3",
                          "--max-overhead", "0.0001", "--json", "--out", str(tmp_path / "b")],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the kernel's count of the tool's links once the guard has tripped and before any node
    # concluded (a node's conclusion releases its probes): taken between two reads of the
    # event log that both show the trip and no window closed yet
    after_trip: list[tuple[set[str], int, set[str]]] = []   # (trips before, links, trips after)

    def trips(evs: list[dict[str, object]]) -> set[str]:
        return {str(e["probe"]) for e in evs if e["event"] == "overhead_guard"}
    while p.poll() is None:
        before = events_of(log)
        if trips(before) and "window_closed" not in [e["event"] for e in before]:
            n = len(bpf_ids_of_pid(p.pid)["link"])
            after = events_of(log)
            if "window_closed" not in [e["event"] for e in after]:
                after_trip.append((trips(before), n, trips(after)))
        time.sleep(0.02)
    out, err = p.communicate()
    assert p.returncode in (0, 1), err
    rep = json.loads(out)
    assert rep["complete"] is True
    tripped = {g["probe"] for g in rep["overhead_guard"]}
    assert "sched.runqlat" in tripped
    events = events_of(log)
    attached = {e["probe"]: len(e["links"]) for e in events if e["event"] == "probe_attached"}
    assert attached["sched.runqlat"] >= 1
    held = sum(attached.values())
    # the tripped probes' links were gone while the process was still running, the others held
    assert after_trip, "no sample between the guard's trip and the first window's end"
    # (a trip detaches first, then its event reaches the log through the bundle writer: a
    # sample can see links gone whose trip the log shows only later, never the other way)
    for before, n, _after in after_trip:
        assert held - sum(attached[t] for t in tripped) <= n <= held - sum(attached[t] for t in before) < held, \
            (held, attached, after_trip)
    notes = [e for n in rep["nodes"] for e in n["errors"] if "overhead guard" in e]
    assert notes
    assert all(n["status"] in ("refuted", "inconclusive", "confirmed") for n in rep["nodes"])
    assert "overhead_guard" in [e["event"] for e in events]
