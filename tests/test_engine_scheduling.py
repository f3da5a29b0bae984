"""The scheduler on the real kernel: nodes that need the same probe share one attachment
(the kernel's own listing shows it once) and observe at the same time; a successor starts
as soon as its predecessor concludes, reusing the attachment still held by a running node."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, bpf_ids_of_pid, kernel_bpf_listing, wait_unloaded

pytestmark = pytest.mark.bpf


def test_shared_probe_is_attached_once_and_windows_overlap(tmp_path: Path) -> None:
    out = tmp_path / "b"
    p = subprocess.Popen([sys.executable, "-m", "investigator", "tests/fixtures/playbooks/shared.yaml",
                          "--json", "--out", str(out)], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    samples = []
    seen: dict[str, set[int]] = {"prog": set(), "link": set(), "map": set()}
    while p.poll() is None:
        ids = bpf_ids_of_pid(p.pid)
        if ids["link"]:
            listing = {e["id"]: e for e in kernel_bpf_listing()["prog"]}
            names = sorted(str(listing[i]["name"]) for i in ids["prog"] if i in listing)
            samples.append((time.monotonic(), names))
            for k in seen:
                seen[k] |= ids[k]
        time.sleep(0.1)
    stdout, stderr = p.communicate()
    assert p.returncode == 0, stderr
    # while first and second observe together: one sched_switch program, not two
    assert samples, "never saw the tool's programs"
    for _, names in samples:
        assert names.count("btf_sched_switc") <= 1, names
    rep = json.loads(stdout)
    assert [n["id"] for n in rep["nodes"]] == ["first", "third", "second"]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    t = {(e["event"], e.get("node")): e["t"] for e in events}
    # overlapping windows: second started before first concluded
    assert t[("node_started", "second")] < t[("node_concluded", "first")]
    # the successor started when first concluded, while second was still observing
    assert t[("node_concluded", "first")] <= t[("node_started", "third")] < t[("node_concluded", "second")]
    shared = [e for e in events if e["event"] == "probe_shared"]
    assert {e["node"] for e in shared} == {"second", "third"}
    attached = [e for e in events if e["event"] == "probe_attached"]
    assert sorted(e["probe"] for e in attached) == ["sched.blocked", "sched.runqlat"]
    assert wait_unloaded(seen) == {"prog": set(), "link": set(), "map": set()}


def test_max_time_bounds_the_whole_run(tmp_path: Path) -> None:
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "investigator", "tests/fixtures/playbooks/shared.yaml",
                        "--json", "--max-time", "1.5", "--out", str(tmp_path / "b")], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    status = {n["id"]: n["status"] for n in rep["nodes"]}
    assert status == {"first": "refuted", "second": "refuted", "third": "skipped"}
    assert all(n["window_s"] <= 1.5 for n in rep["nodes"])
    # the budget bounds the windows; attaching is this machine's own time, measured by the run
    assert rep["duration_s"] < rep["timings"]["attached_s"] + 1.5 + 1.0, rep["timings"]
    assert elapsed < 60


def test_an_optional_probe_unreadable_at_the_end_leaves_its_node_concluding(monkeypatch: pytest.MonkeyPatch) -> None:
    """file.locks is optional in user-deadlock (deadlock.yaml): when /proc/locks stops answering
    after the window opened (its read waits for RCU), the node concludes on its other
    probes, skipping the file-lock rules, and says why -- instead of ending in error."""
    from investigator.engine.run import RunOptions, run_playbook
    from investigator.playbook import load_playbook
    from investigator.probes.collectors import filelocks
    real, calls = filelocks.read_in_child, []

    def stalls_later(path: str, timeout: float, limit: int = 1 << 22) -> str:
        calls.append(path)
        if len(calls) > 1:
            raise TimeoutError(f"reading {path} did not finish in {timeout:g} s")
        return real(path, timeout, limit=limit)
    monkeypatch.setattr(filelocks, "read_in_child", stalls_later)
    lp = load_playbook(str(REPO / "playbooks" / "deadlock.yaml"))
    res = run_playbook(lp, RunOptions(window_s=1.0))
    (ud,) = [n for n in res.nodes if n.id == "user-deadlock"]
    assert len(calls) == 2
    assert ud.status == "refuted", (ud.status, ud.errors)
    assert any(e.startswith("optional probe file.locks could not be read (TimeoutError") and
               "rules that read filelocks were skipped" in e for e in ud.errors), ud.errors
    assert "filelocks" not in ud.evidence


def test_a_probe_slow_to_load_is_reported_with_where_its_thread_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A load the kernel holds (it cannot be cancelled) is reported after SLOW_ATTACH_S with
    the state and kernel stack of the thread that waits: here a load made to sleep."""
    from investigator.engine import run as engine
    from investigator.evidence.events import EventLog
    from investigator.playbook import load_playbook
    from investigator.probes.instance import ProbeInstance, Targets
    lp = load_playbook(str(REPO / "playbooks" / "freeze.yaml"))
    use = lp.spec.nodes["blocked-tasks"].probes[0]
    manifest = lp.probes["blocked-tasks"][use.as_ or lp.alias_of("blocked-tasks", use.use)]
    monkeypatch.setattr(engine, "SLOW_ATTACH_S", 0.3)
    monkeypatch.setattr(ProbeInstance, "attach", lambda self: time.sleep(1.5))
    events, seen = EventLog(), []
    events.listeners.append(lambda e, f: seen.append((e, dict(f))))
    pool = engine._Pool(events, Targets())
    try:
        pool.preattach([(manifest, use, Targets(), "blocked-tasks")])
    finally:
        pool.close_all()
    slow = [f for e, f in seen if e == "probe_attach_slow"]
    assert len(slow) == 1, seen
    assert slow[0]["probe"] == "sched.blocked" and slow[0]["after_s"] >= 0.3 and slow[0]["state"] == "S", slow
    assert any("nanosleep" in x for x in slow[0]["kernel_stack"]), slow[0]["kernel_stack"]
