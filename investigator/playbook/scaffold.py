"""``investigate new NAME``: a playbook to start from, with a test fixture that passes, so
that a team's new playbook is validated and tested from its first commit."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..probes.manifest import ProbeManifest, registry

TEMPLATE = """\
# {name}: written with `investigate new`. Replace the TODOs, then:
#   investigate validate {name}.yaml
#   sudo investigate {name}.yaml --window 3
#   investigate test {name}.yaml            (replays tests/{name}/*)
#   investigate test {name}.yaml --record BUNDLE --name CASE   (a real run as a fixture)
apiVersion: investigator/v1
kind: Playbook
metadata:
  name: {name}
  description: TODO -- the question this playbook answers.
  owners: [TODO]
  maturity: experimental
defaults:
  window: 5s
start: [first-hypothesis]
nodes:
  first-hypothesis:
    hypothesis: TODO -- say in words what you suspect (here, CPU starvation).
    probes:
      - use: sched.runqlat          # investigate probes: the library and its evidence fields
        with: {{min_wait: 1ms}}
    conclude:
      - when: runqlat.starved.wait_ms >= 100.0 && runqlat.starved.culprit.tid != 0
        verdict: starvation
        confidence: medium
        about: runqlat.starved
        explain: >-
          {{runqlat.starved.victim.comm}} (tid {{runqlat.starved.victim.tid}}) waited
          {{runqlat.starved.wait_ms}} ms for CPU {{runqlat.starved.cpu}}, held by
          {{runqlat.starved.culprit.comm}} (tid {{runqlat.starved.culprit.tid}})
        next: [culprit-doing]
      - when: runqlat.max_ms < 50.0
        verdict: refuted
        explain: "No task waited more than {{runqlat.max_ms}} ms for a CPU."
  # A follow-up, aimed at what the node before it found: the TIDs of that finding's tasks in
  # these roles go to the kernel (only they are watched), and its rules read the finding as
  # focus.* (focus.tasks, focus.cpus, focus.locks, ...).
  culprit-doing:
    hypothesis: TODO -- the culprit holds the CPU with its own work.
    focus: {{from: first-hypothesis, tasks: [culprit]}}
    probes:
      - use: sched.progress         # where the focused task's time went in the window
    conclude:
      - when: progress.worst.task.tid != 0 && progress.worst.pct.running >= 80.0
        verdict: starvation
        confidence: high
        about: >-
          {{"tasks": focus.tasks, "cpus": focus.cpus, "doing": progress.worst.doing}}
        explain: "The culprit {{progress.worst.task.comm}} (tid {{progress.worst.task.tid}}) {{progress.worst.doing}}"
      - when: progress.worst.pct.running < 50.0
        verdict: refuted
        explain: "The culprit did not hold a CPU: it {{progress.worst.doing}}"
"""

EXPECT = """\
description: A quiet machine (evidence with every value at zero, written by `investigate new`);
  replace it with a real run recorded with --record.
verdicts: []
exact: true
nodes:
  first-hypothesis: refuted
"""

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def zero_evidence(m: ProbeManifest) -> dict[str, Any]:
    """Evidence of the manifest's shape with neutral values (0, "", [], {})."""
    neutral = {"int": 0, "float": 0.0, "str": "", "bool": False, "list": [], "object": {}}
    out: dict[str, Any] = {}
    for f in m.evidence:
        cur = out
        parts = f.path.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = neutral.get(f.type, None)
    out["probe"] = {"name": m.name, "hook": m.hooks[0].kind}
    return out


def create(name: str, directory: Path) -> list[Path]:
    if not _NAME.match(name):
        raise ValueError(f"'{name}': use lowercase letters, digits and dashes")
    book = directory / f"{name}.yaml"
    case = directory / "tests" / name / "quiet-machine"
    if book.exists() or case.exists():
        raise ValueError(f"{book} or {case} exists already")
    case.mkdir(parents=True)
    book.write_text(TEMPLATE.format(name=name))
    m = registry()["sched.runqlat"]
    (case / "evidence.json").write_text(json.dumps({"first-hypothesis": {m.alias: zero_evidence(m)}}, indent=2))
    (case / "report.json").write_text(json.dumps({
        "playbook": name, "complete": True, "started_at": "", "duration_s": 0.0, "kernel": {},
        "nodes": [{"id": "first-hypothesis", "status": "refuted", "verdict": "refuted", "hypothesis": "",
                   "window_s": 5.0, "observed_s": 5.0, "probes": [], "errors": []}],
        "verdicts": []}, indent=2))
    (case / "expect.yaml").write_text(EXPECT)
    return [book, case]
