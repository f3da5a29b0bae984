"""Playbook tests: recorded bundles plus the verdicts they must produce.

A playbook's fixtures live in ``playbooks/tests/<playbook name>/<case>/``: the recorded
``evidence.json`` and ``report.json`` of a real run, and ``expect.yaml``::

    description: An RT hog starves a periodic task on CPU 1.
    verdicts:                      # every problem verdict the playbook must give ...
      - verdict: starvation
        node: cpu-starvation
        tasks: [{role: victim, comm: periodic}, {role: culprit, comm: rt-hog}]
        cpus: [1]
    exact: true                    # ... and no other (the default)
    nodes: {blocked-tasks: refuted}   # optional: node statuses

Expectations match partially: a listed key must be equal, a listed task must match one
of the verdict's tasks on the keys given.  ``investigate test PLAYBOOK`` replays every case
through the playbook as it is now, so a team keeps its playbooks correct in its own CI.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import bundle
from .replay import replay


@dataclass
class CaseResult:
    name: str
    ok: bool
    problems: list[str]


def fixtures_dir(playbook: Path, name: str) -> Path:
    return playbook.resolve().parent / "tests" / name


def _match(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _match(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list) and expected and isinstance(expected[0], dict):
        return isinstance(actual, list) and all(any(_match(e, a) for a in actual) for e in expected)
    return bool(expected == actual)


def check_case(case: Path, playbook: Path) -> CaseResult:
    problems: list[str] = []
    try:
        expect = yaml.safe_load((case / "expect.yaml").read_text()) or {}
        b = {"report": json.loads((case / "report.json").read_text()),
             "evidence": json.loads((case / "evidence.json").read_text()),
             "playbook_text": ""}
    except (OSError, ValueError, yaml.YAMLError) as e:
        return CaseResult(case.name, False, [f"unreadable fixture: {e}"])
    rep = replay(b, playbook, str(playbook))
    got = rep["verdicts"]
    want = expect.get("verdicts") or []
    for w in want:
        if not any(_match(w, g) for g in got):
            problems.append(f"expected {w} -- got {[_brief(g) for g in got] or 'no verdict'}")
    if expect.get("exact", True) and len(got) != len(want):
        extra = [_brief(g) for g in got if not any(_match(w, g) for w in want)]
        if extra:
            problems.append(f"unexpected verdicts: {extra}")
    statuses = {n["id"]: n["status"] for n in rep["nodes"]}
    for nid, st in (expect.get("nodes") or {}).items():
        if statuses.get(nid) != st:
            problems.append(f"node {nid}: expected {st}, got {statuses.get(nid)}")
    return CaseResult(case.name, not problems, problems)


def _brief(v: dict[str, Any]) -> str:
    tasks = ", ".join(f"{t['role']}={t['comm']}" for t in v.get("tasks", []))
    return f"{v['verdict']}@{v['node']}({tasks})"


def cases(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if (p / "expect.yaml").exists()) if directory.is_dir() else []


def record(bundle_dir: Path, directory: Path, name: str, description: str = "") -> Path:
    """Turn a run's bundle into a fixture whose expectations are its current verdicts
    (review expect.yaml before committing it)."""
    b = bundle.read(bundle_dir)
    case = directory / name
    case.mkdir(parents=True, exist_ok=False)
    for f in ("report.json", "evidence.json"):
        shutil.copy(bundle_dir / f, case / f)
    rep = b["report"]
    expect = {
        "description": description or f"recorded from {bundle_dir}",
        "verdicts": [{"verdict": v["verdict"], "node": v["node"],
                      "tasks": [{"role": t["role"], "comm": t["comm"]} for t in v["tasks"]],
                      **({"cpus": v["cpus"]} if v["cpus"] else {})} for v in rep["verdicts"]],
        "exact": True,
        "nodes": {n["id"]: n["status"] for n in rep["nodes"]},
    }
    (case / "expect.yaml").write_text(yaml.safe_dump(expect, sort_keys=False))
    return case
