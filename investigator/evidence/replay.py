"""Re-evaluate a bundle's conclusions offline, with its own playbook or an edited one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..engine.run import NodeRun
from ..playbook.load import apply_overrides, load_playbook
from ..report import model
from ..rules.conclude import conclude


def replay(b: dict[str, Any], playbook: Path | None, bundled_name: str,
           sets: list[str] | None = None) -> dict[str, Any]:
    """The bundle's report, its conclusions drawn again from its evidence: with the vars the
    run used (those the playbook still declares), then ``sets`` (NAME=VALUE) on top."""
    lp = load_playbook(playbook, to_run=False) if playbook else \
        load_playbook(bundled_name, text=b["playbook_text"], imports=b.get("imports", {}), to_run=False)
    old = b["report"]
    for name, value in (old.get("vars") or {}).items():
        if name in lp.spec.vars:
            lp.spec.vars[name] = value
    apply_overrides(lp, sets or [])
    nodes = []
    for n in old["nodes"]:
        nr = NodeRun(n["id"], n.get("hypothesis", ""), n.get("window_s", 0.0), status=n["status"],
                     probes=n.get("probes", []), errors=list(n.get("errors", [])),
                     interrupted=n.get("interrupted", False))
        nr.started_at, nr.ended_at = 0.0, n.get("observed_s", 0.0)
        env = b["evidence"].get(n["id"])
        if n["id"] in lp.spec.nodes and env and n["status"] not in ("unobservable", "skipped"):
            try:
                c = conclude(lp, n["id"], env)
            except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
                # evidence no probe of ours wrote: that node's error, not the replay's end
                nr.status, nr.verdict = "error", None
                nr.errors.append(f"the bundle's evidence of this node is malformed ({type(e).__name__}: {e})")
                nodes.append(nr)
                continue
            nr.status, nr.verdict, nr.rule, nr.confidence = c.status, c.verdict, c.rule, c.confidence
            nr.summary, nr.about, nr.values = c.summary, c.about, c.evidence
        else:
            nr.verdict = n.get("verdict")
        nodes.append(nr)
    return model.build(nodes, playbook=lp.name, complete=old["complete"], started_at=old["started_at"],
                       duration_s=old["duration_s"], kernel=old["kernel"],
                       interrupted_by=old.get("interrupted_by"), replayed=True,
                       variables=dict(lp.spec.vars))
