"""Re-evaluate a bundle's conclusions offline, with its own playbook or an edited one.

Each node is concluded again through ``rules.conclude.conclude_node``, the function the live
run concluded it with, from what the bundle recorded of it: its probe records (which could
not attach, which could not be read, which the overhead guard detached) and its evidence.
Bundles written before the probe records said how each probe was read carry it only in the
node's errors; ``probe_records`` reads it back from there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..playbook.load import LoadedPlaybook, apply_overrides, load_playbook
from ..report import model
from ..result import NodeResult, RunOutcome
from ..rules import focus
from ..rules.conclude import conclude_node

_GUARD_NOTE = re.compile(r" was detached by the overhead guard after (?P<after>\S+) s: (?P<reason>.*); "
                         r"concluded on what it gathered$")


def probe_records(n: dict[str, Any]) -> list[dict[str, Any]]:
    """A reported node's probe records, each with ``read_error`` and ``guard``: as written,
    or, in a bundle older than those keys, read back from the node's errors."""
    out = []
    errors = [e for e in n.get("errors", []) if isinstance(e, str)]
    for rec in n.get("probes", []):
        rec = dict(rec)
        if rec.get("error") is None and "read_error" not in rec:
            name = str(rec.get("probe", ""))
            rec["read_error"], rec["guard"] = None, None
            for e in errors:
                if e.startswith(f"reading {name}: "):
                    rec["read_error"] = e[len(f"reading {name}: "):]
                elif e.startswith(f"optional probe {name} could not be read (") and "); the rules that read " in e:
                    rec["read_error"] = e[len(f"optional probe {name} could not be read ("):].rsplit(
                        "); the rules that read ", 1)[0]
                elif e.startswith(name) and (m := _GUARD_NOTE.fullmatch(e[len(name):])):
                    rec["guard"] = {"after_s": m["after"], "reason": m["reason"]}
        out.append(rec)
    return out


def _renamed(lp: LoadedPlaybook, node_id: str, env: dict[str, Any]) -> dict[str, Any]:
    """A node's evidence with each probe under the name this playbook reads it by, when the
    bundle keyed it by another name of the same probe (its alias, or a former one)."""
    if not isinstance(env, dict):
        return env
    out = dict(env)
    for name, m in lp.probes.get(node_id, {}).items():
        if name not in out:
            for other in (m.alias, *m.former_aliases):
                if other != name and other in out and other not in lp.probes[node_id]:
                    out[name] = out[other]
                    break
    return out


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
        nr = NodeResult(n["id"], n.get("hypothesis", ""), n.get("window_s", 0.0),
                        observed_s=n.get("observed_s", 0.0), status=n["status"], verdict=n.get("verdict"),
                        probes=n.get("probes", []), errors=list(n.get("errors", [])),
                        visit=n.get("visit", 1) if isinstance(n.get("visit", 1), int) else 1,
                        interrupted=n.get("interrupted", False),
                        reached_from=[str(x) for x in n.get("reached_from") or [] if isinstance(x, str)][:64])
        nodes.append(nr)
        if n["id"] not in lp.spec.nodes or n["status"] == "skipped":
            continue                    # not concluded then, or not in this playbook
        env = _renamed(lp, n["id"], b["evidence"].get(n["id"]) or {})
        nr.focus, notes = focus.resolve(lp.spec.nodes[n["id"]].focus, nodes[:-1], n["id"]), []
        if nr.focus is not None:
            ran = n.get("focus") if isinstance(n.get("focus"), dict) else {}
            ran_tids = ran.get("tids") if isinstance(ran.get("tids"), list) else []
            if ran_tids != nr.focus["tids"]:
                notes.append(f"focus: this playbook aims the node at tids {nr.focus['tids'][:16]}; "
                             f"its evidence was gathered for {ran_tids[:16]}")
            if "cgroup" in nr.focus and ran.get("cgroup") == nr.focus["cgroup"] \
                    and isinstance(ran.get("cgroup_not_used"), str):
                nr.focus["cgroup_not_used"] = ran["cgroup_not_used"][:512]
            elif nr.focus.get("cgroup", "") != ran.get("cgroup", nr.focus.get("cgroup", "")):
                notes.append(f"focus: this playbook aims the node at cgroup {nr.focus.get('cgroup') or 'none'}; "
                             f"its evidence was gathered for {str(ran.get('cgroup') or 'none')[:512]}")
        try:
            c = conclude_node(lp, n["id"], env, probe_records(n), nr.interrupted, nr.focus)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
            # evidence no probe of ours wrote: that node's error, not the replay's end
            nr.status, nr.verdict = "error", None
            nr.errors.append(f"the bundle's evidence of this node is malformed ({type(e).__name__}: {e})")
            continue
        nr.status, nr.verdict, nr.rule, nr.confidence = c.status, c.verdict, c.rule, c.confidence
        nr.summary, nr.about, nr.values, nr.errors = c.summary, c.about, c.evidence, notes + c.errors
        nr.routes = c.routes
        nr.task_cgroups = _task_cgroups(n.get("task_cgroups"))
    return model.build(RunOutcome(lp.name, nodes, old["started_at"], old["duration_s"], old["complete"],
                                  old["kernel"], old.get("interrupted_by"), replayed=True,
                                  variables=dict(lp.spec.vars)))


MAX_TASK_CGROUPS = 64       # a verdict's tasks (finding.MAX_TASKS)
MAX_PATH = 4096             # characters of a cgroup path (the kernel's PATH_MAX)


def _task_cgroups(x: Any) -> dict[int, str]:
    """A bundle node's ``task_cgroups`` (tid -> cgroup path, as the run read them): those of
    the right types, at most MAX_TASK_CGROUPS of them, each path clamped to MAX_PATH."""
    out: dict[int, str] = {}
    for k, v in (x.items() if isinstance(x, dict) else ()):
        if len(out) >= MAX_TASK_CGROUPS:
            break
        if isinstance(k, str) and k.isdigit() and len(k) < 12 and isinstance(v, str):
            out[int(k)] = v[:MAX_PATH]
    return out
