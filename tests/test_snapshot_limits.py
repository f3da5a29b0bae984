"""Snapshot record limits: an iterator that finds more records than its `max_records`
keeps that many, says `truncated` and gives the true count (`seen`), counted in the kernel
beyond the limit; under the limit, nothing is said to be cut."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.procs import SCENARIO_S, processes, wait_alive

THREADS = 12
SLEEPERS = """
import threading, time
open("/proc/self/comm", "w").write("{name}")
ts = [threading.Thread(target=time.sleep, args=({seconds},)) for _ in range({threads})]
for t in ts:
    t.start()
for t in ts:
    t.join()
"""

BOOK = """\
apiVersion: investigator/v1
kind: Playbook
metadata:
  name: snapshot-limits
  description: The same blocked-tasks snapshot with a record limit below and above the tasks it finds.
start: [cut, whole]
nodes:
  cut:
    hypothesis: More sleepers than the limit.
    probes:
      - use: sched.blocked
        with: {{include_sleeping: true, min_sleep: 0s, max_records: {cut}}}
    conclude:
      - when: blocked.truncated
        verdict: inconclusive
      - when: "true"
        verdict: refuted
  whole:
    hypothesis: Fewer sleepers than the limit.
    probes:
      - use: sched.blocked
        with: {{include_sleeping: true, min_sleep: 0s}}
    conclude:
      - when: blocked.truncated
        verdict: inconclusive
      - when: "true"
        verdict: refuted
"""


def _sleeping(pid: int) -> int:
    n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            n += f.read().rsplit(")", 1)[1].split()[0] == "S"
    return n


@pytest.mark.bpf
def test_a_snapshot_over_its_limit_says_so_with_the_true_count(tmp_path: Path) -> None:
    book = tmp_path / "limits.yaml"
    book.write_text(BOOK.format(cut=5))
    with processes() as ps:
        crowd = ps.spawn(SLEEPERS, name="sleepers", threads=THREADS, seconds=SCENARIO_S)
        deadline = time.monotonic() + 10
        while _sleeping(crowd.pid) < THREADS + 1 and time.monotonic() < deadline:
            wait_alive(crowd, 0.05)
        assert _sleeping(crowd.pid) == THREADS + 1
        p = investigate(str(book), "--pid", str(crowd.pid), "--window", "1", "--json", "--quiet",
                        "--out", str(tmp_path / "b"), timeout=60)
    assert p.returncode in (0, 1), p.stderr
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())
    cut, whole = ev["cut"]["blocked"], ev["whole"]["blocked"]
    assert cut["truncated"] is True and cut["seen"] == THREADS + 1
    assert cut["sleeping_count"] == 5 and len(cut["tasks"]) == 5
    assert whole["truncated"] is False and whole["seen"] == THREADS + 1
    assert whole["sleeping_count"] == THREADS + 1
    verdicts = {n["id"]: n["verdict"] for n in json.loads(p.stdout)["nodes"]}
    assert verdicts == {"cut": "inconclusive", "whole": "refuted"}


def test_a_limit_above_the_probe_bound_is_refused_with_its_place(tmp_path: Path) -> None:
    book = tmp_path / "limits.yaml"
    book.write_text(BOOK.format(cut=5000))
    p = investigate("validate", str(book), timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    line = next(ln for ln in (p.stdout + p.stderr).splitlines() if "max_records" in ln or "at most" in ln)
    assert line.startswith(f"{book}:12:68: ") and "at most 4096 (the probe's bound), got 5000" in line
    assert "Traceback" not in p.stderr


LOCKS_BOOK = """\
apiVersion: investigator/v1
kind: Playbook
metadata:
  name: scan-deadline
  description: file.locks with no time to walk /proc, and with its default time.
start: [hurried, patient]
nodes:
  hurried:
    hypothesis: The walk has no time.
    probes:
      - use: file.locks
        with: {scan_time: 0s}
    conclude:
      - when: "true"
        verdict: refuted
  patient:
    hypothesis: The walk has its time.
    probes:
      - use: file.locks
    conclude:
      - when: "true"
        verdict: refuted
"""


@pytest.mark.bpf
def test_file_locks_walks_stop_at_their_deadline_and_say_how_far_they_got(tmp_path: Path) -> None:
    """An OFD ABBA deadlock: its holders and waiters are found only by walking /proc.  With
    no time for the walk the evidence is partial (no edges, the reason, what was looked at);
    with the default time the same locks give both edges and nothing is partial."""
    from scenarios.procs import FLOCK_ABBA
    book = tmp_path / "scan.yaml"
    book.write_text(LOCKS_BOOK)
    with processes() as ps:
        parent, (p0, p1) = ps.spawn_with_pids(FLOCK_ABBA, str(tmp_path / "pids"), name="ofd-abba",
                                              dir=str(tmp_path), seconds=SCENARIO_S, how="ofd")
        wait_alive(parent, 1.5)
        p = investigate(str(book), "--window", "1", "--json", "--quiet", "--out", str(tmp_path / "b"), timeout=60)
    assert p.returncode in (0, 1), p.stderr
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())
    hurried, patient = ev["hurried"]["filelocks"], ev["patient"]["filelocks"]
    assert hurried["partial"] is True and "the 0 s deadline" in hurried["partial_reason"]
    assert hurried["scanned"]["files"] == 0 and hurried["edges"] == []
    assert hurried["ofd_count"] >= 2                 # /proc/locks itself was read whole
    assert patient["partial"] is False and patient["partial_reason"] == ""
    assert patient["scanned"]["files"] > 0 and patient["scanned"]["tasks"] > 0
    assert {(e["waiter"], e["holder"]) for e in patient["edges"]} >= {(p0, p1), (p1, p0)}


PILE = 1000
PILE_BOOK = """\
apiVersion: investigator/v1
kind: Playbook
metadata:
  name: snapshot-counts
  description: Snapshots of a thousand futex waiters, larger than one read of the iterator.
start: [whole, cut, sleeping]
nodes:
  whole:
    hypothesis: Every futex waiter fits.
    probes:
      - use: user.futex
    conclude:
      - when: "true"
        verdict: refuted
  cut:
    hypothesis: The futex waiters beyond 100 are dropped.
    probes:
      - use: user.futex
        with: {max_records: 100}
    conclude:
      - when: "true"
        verdict: refuted
  sleeping:
    hypothesis: Every sleeping thread fits.
    probes:
      - use: sched.blocked
        with: {include_sleeping: true, min_sleep: 0s}
    conclude:
      - when: "true"
        verdict: refuted
"""


def _in_futex(pid: int) -> int:
    n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                n += f.read().startswith("futex")
        except OSError:
            continue
    return n


@pytest.mark.bpf
def test_a_snapshot_larger_than_one_read_counts_each_record_once(tmp_path: Path) -> None:
    """A thousand futex waiters (tests/scenarios/mutex_pile.c) make snapshots of several
    times the iterator's read buffer: the records the kernel shows again after a full
    buffer are counted once, so `seen` is the real number -- whole, cut at 100 (its drops
    exact), and in sched.blocked's larger records -- and a snapshot that fits is not cut."""
    import subprocess
    from scenarios.build import c_helper
    exe = c_helper("mutex_pile", tmp_path)
    book = tmp_path / "pile.yaml"
    book.write_text(PILE_BOOK)
    with processes() as ps:
        spawned = time.monotonic()
        pile = subprocess.Popen([str(exe), str(PILE), str(SCENARIO_S)], stdout=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
        ps.procs.append(pile)       # type: ignore[arg-type]
        assert f"started={PILE}" in pile.stdout.readline()  # type: ignore[union-attr]
        deadline = time.monotonic() + 60
        while _in_futex(pile.pid) < PILE and time.monotonic() < deadline:
            wait_alive(pile, 0.1)
        assert _in_futex(pile.pid) == PILE
        threads = len(os.listdir(f"/proc/{pile.pid}/task"))
        p = investigate(str(book), "--pid", str(pile.pid), "--window", "1", "--json", "--quiet",
                        "--out", str(tmp_path / "b"), timeout=120)
        assert pile.poll() is None, "the pile must outlive the run"
        lived_s = time.monotonic() - spawned
    assert p.returncode in (0, 1), p.stderr
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())
    whole, cut, sleeping = ev["whole"]["futex"], ev["cut"]["futex"], ev["sleeping"]["blocked"]
    assert threads == PILE + 2                      # the waiters, the holder, main
    assert whole["seen"] == PILE and whole["waiters_count"] == PILE and whole["truncated"] is False
    assert whole["edges_dropped"] == 0 and len(whole["edges"]) == PILE
    # how long each has not run, in the scheduler's clocks: known, and within the pile's life
    assert all(0 < w["blocked_s"] <= lived_s for w in whole["waiters"]), whole["waiters"][:3]
    assert cut["seen"] == PILE and cut["truncated"] is True and cut["waiters_count"] == 100
    assert cut["edges_dropped"] == PILE - 100
    assert sleeping["seen"] == threads and sleeping["sleeping_count"] == threads
    assert sleeping["truncated"] is False
