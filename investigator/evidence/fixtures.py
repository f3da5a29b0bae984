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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..playbook import PlaybookError, yamlpos
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


def read_case(case: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A fixture's expectations and its recorded bundle, read as replay reads bundles
    (bundle.read: no symbolic link followed, sizes bounded, shapes checked); BundleError."""
    b = bundle.read(case, bundle.EVIDENCE_FILES)
    fd = bundle.open_folder(case)
    try:
        raw = bundle.read_file(fd, "expect.yaml", case)
    finally:
        os.close(fd)
    where = case / "expect.yaml"
    if raw is None:
        raise bundle.BundleError(f"{where}: missing")
    try:
        expect, _ = yamlpos.load(raw, str(where))
    except PlaybookError as e:
        raise bundle.BundleError(str(e.diagnostics[0])) from None
    expect = expect if expect is not None else {}
    if not isinstance(expect, dict):
        raise bundle.BundleError(f"{where}: expectations are a mapping (verdicts, exact, nodes)")
    if not isinstance(expect.get("verdicts") or [], list):
        raise bundle.BundleError(f"{where}: 'verdicts' is not a list")
    if not isinstance(expect.get("nodes") or {}, dict):
        raise bundle.BundleError(f"{where}: 'nodes' is not a mapping of node -> status")
    return expect, b


def check_case(case: Path, playbook: Path) -> CaseResult:
    problems: list[str] = []
    try:
        expect, b = read_case(case)
    except bundle.BundleError as e:
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
    for f in bundle.EVIDENCE_FILES:           # what was read and checked, not what the names point to now
        (case / f).write_text(json.dumps(b[f.removesuffix(".json")], indent=2) + "\n")
    rep = b["report"]
    expect = {
        "description": description or f"recorded from {bundle_dir}",
        "verdicts": [{"verdict": v["verdict"], "node": v["node"],
                      "tasks": [{"role": t["role"], "comm": t["comm"]} for t in v["tasks"]],
                      **({"cpus": v["cpus"]} if v["cpus"] else {}),
                      **({"symptom_of": v["symptom_of"]} if v.get("symptom_of") else {})} for v in rep["verdicts"]],
        "exact": True,
        "nodes": {n["id"]: n["status"] for n in rep["nodes"]},
    }
    (case / "expect.yaml").write_text(yaml.safe_dump(expect, sort_keys=False))
    return case
