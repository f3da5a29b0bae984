"""Replay concludes every node through the live run's own conclusion function: a real run
whose probes fail in each way a node can degrade (a required probe that cannot be read, an
optional one that cannot be read or cannot attach, probes the overhead guard detaches) is
written as a bundle by the real writer, replayed by the real CLI, and gives the same node
statuses, verdicts, rules, summaries, errors and durations -- also when the bundle is of the
older form that carried how each probe was read only in the node's errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

pytestmark = pytest.mark.bpf

# runqlat's rule would hold on its evidence: a replay that concluded the erroring node on the
# evidence it has (blocked) would give hung-task instead of error
PLAYBOOK = """\
apiVersion: investigator/v1
kind: Playbook
metadata: {name: degraded, description: Nodes whose probes fail in each way.}
start: [unreadable, optional-unreadable, optional-absent]
nodes:
  unreadable:
    hypothesis: A required probe cannot be read.
    probes: [{use: sched.runqlat, with: {min_wait: 1ms}}, {use: sched.blocked}]
    observe: {window: 1s}
    conclude:
      - when: blocked.count >= 0
        verdict: hung-task
        explain: "{blocked.count} blocked"
  optional-unreadable:
    hypothesis: An optional probe cannot be read.
    probes: [{use: sched.blocked}, {use: file.locks, optional: true}]
    observe: {window: 1s}
    conclude:
      - when: filelocks.held_count >= 0
        verdict: contention
      - when: blocked.count >= 0
        verdict: refuted
        explain: "{blocked.count} blocked, file locks unread"
  optional-absent:
    hypothesis: An optional probe cannot attach.
    probes: [{use: sched.blocked}, {use: kernel.func, optional: true, with: {function: no_such_function_at_all}}]
    observe: {window: 1s}
    conclude:
      - when: func.calls >= 0
        verdict: overload
      - when: blocked.count >= 0
        verdict: hung-task
        explain: "{blocked.count} blocked without func"
"""

GUARDED = """\
apiVersion: investigator/v1
kind: Playbook
metadata: {name: guarded, description: A probe the overhead guard detaches.}
start: [busy]
nodes:
  busy:
    hypothesis: The run queue is long.
    probes: [{use: sched.runqlat, with: {min_wait: 1ms}}]
    observe: {window: 2s}
    conclude:
      - when: runqlat.count >= 0
        verdict: refuted
        explain: "{runqlat.count} waits"
"""

KEYS = ("id", "status", "verdict", "rule", "summary", "errors", "observed_s", "window_s", "interrupted")


def _run_to_bundle(tmp_path: Path, text: str, **opts: Any) -> tuple[dict[str, Any], Path]:
    """Run the playbook ``text`` in this process and write its bundle with the real writer."""
    from investigator.engine.run import RunOptions, run_playbook
    from investigator.evidence import bundle
    from investigator.playbook import load_playbook
    from investigator.report import model
    book = tmp_path / "book.yaml"
    book.write_text(text)
    lp = load_playbook(str(book))
    writer = bundle.writer_for(tmp_path / "b", lp.name)
    result = run_playbook(lp, RunOptions(bundle=writer, **opts))
    rep = model.build(result)
    problems, written = bundle.finish(writer, lp, rep, {n.id: n.evidence for n in result.nodes})
    assert written is not None, problems
    return rep, Path(written.split()[1])


def _replayed(path: Path) -> dict[str, Any]:
    p = subprocess.run([sys.executable, "-m", "investigator", "replay", str(path), "--json"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout)


def _same(live: dict[str, Any], replayed: dict[str, Any]) -> None:
    assert [{k: n[k] for k in KEYS} for n in replayed["nodes"]] == [{k: n[k] for k in KEYS} for n in live["nodes"]]
    assert replayed["verdicts"] == live["verdicts"]
    assert all(n["observed_s"] > 0 for n in replayed["nodes"] if n["status"] != "unobservable")


def _as_older_bundle(path: Path) -> None:
    """Drop what a bundle older than the probe records' read_error/guard keys did not hold."""
    rep = json.loads((path / "report.json").read_text())
    for n in rep["nodes"]:
        for rec in n["probes"]:
            rec.pop("read_error", None)
            rec.pop("guard", None)
    (path / "report.json").write_text(json.dumps(rep))


def test_replay_equals_live_for_nodes_that_errored_or_lost_optional_probes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from investigator.probes.collectors import filelocks
    from investigator.probes.instance import ProbeInstance
    real_collect, real_read = ProbeInstance.collect, filelocks.read_in_child
    calls: list[str] = []

    def collect(self: ProbeInstance) -> dict[str, Any]:
        if self.name == "sched.runqlat":
            raise OSError(5, "the map could not be read")
        return real_collect(self)

    def stalls_later(path: str, timeout: float, limit: int = 1 << 22) -> str:
        calls.append(path)
        if len(calls) > 1:              # the window's opening read works, the closing one not
            raise TimeoutError(f"reading {path} did not finish in {timeout:g} s")
        return real_read(path, timeout, limit=limit)
    monkeypatch.setattr(ProbeInstance, "collect", collect)
    monkeypatch.setattr(filelocks, "read_in_child", stalls_later)
    live, path = _run_to_bundle(tmp_path, PLAYBOOK)
    by = {n["id"]: n for n in live["nodes"]}
    assert by["unreadable"]["status"] == "error" and by["unreadable"]["verdict"] is None
    assert any(e.startswith("reading sched.runqlat: OSError") for e in by["unreadable"]["errors"])
    assert [r["read_error"] is not None for r in by["unreadable"]["probes"]] == [True, False]
    assert by["optional-unreadable"]["status"] == "refuted", by["optional-unreadable"]
    assert any(e.startswith("optional probe file.locks could not be read (TimeoutError")
               for e in by["optional-unreadable"]["errors"])
    assert by["optional-absent"]["verdict"] == "hung-task", by["optional-absent"]
    assert any(e.startswith("optional probe kernel.func cannot attach here") and e.endswith("the rules that read func were skipped")
               for e in by["optional-absent"]["errors"])
    evidence = json.loads((path / "evidence.json").read_text())
    assert "blocked" in evidence["unreadable"] and "runqlat" not in evidence["unreadable"]
    _same(live, _replayed(path))
    _as_older_bundle(path)
    _same(live, _replayed(path))


def test_replay_equals_live_for_a_node_cut_by_the_overhead_guard(tmp_path: Path) -> None:
    live, path = _run_to_bundle(tmp_path, GUARDED, max_overhead_percent=0.0001)
    assert [g["probe"] for g in live["overhead_guard"]] == ["sched.runqlat"]
    (node,) = live["nodes"]
    assert node["status"] == "refuted"
    assert node["probes"][0]["guard"]["reason"]
    assert any("was detached by the overhead guard" in e for e in node["errors"])
    _same(live, _replayed(path))
    _as_older_bundle(path)
    _same(live, _replayed(path))
