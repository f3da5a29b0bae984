"""A run bundle: everything one investigation gathered, written so that it can be
attached to a ticket and replayed offline.

    report.json     the report (the stable JSON contract)
    report.md       the same, for people
    report.html     the same as one self-contained page with plots
    evidence.json   every node's evidence as its rules saw it
    events.jsonl    the structured event log (structlog, one JSON object a line)
    playbook.yaml   the playbook as it was run
    imports.json    the files it imported nodes from, if any (path -> text)

The folder is made fresh and private to root (0700: it holds process names and stacks),
every file opened in it with O_EXCL|O_NOFOLLOW (0600) and written whole or not at all, by a
child process the tool never waits for longer than a bound: see evidence/writer.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

DEFAULT_PARENT = "investigations"


def folder_name(playbook_name: str) -> str:
    """NAME-STAMP-PID: the default bundle folder's name (the playbook's name is a slug,
    checked when the playbook is loaded)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{playbook_name}-{stamp}-{os.getpid()}"


def writer_for(out: Path | None, playbook_name: str) -> Any:
    """The writer of this run's bundle (evidence/writer.py): into ``out`` when given (made
    fresh: a new name if it exists), else ./investigations/NAME-STAMP-PID."""
    from .writer import BundleWriter
    return BundleWriter(out, DEFAULT_PARENT, folder_name(playbook_name), f"investigator-{playbook_name}-")


def files_of(result: Any, rep: dict[str, Any], evidence: dict[str, Any]) -> dict[str, bytes]:
    """The bundle's files but the event log, as bytes; one that cannot be rendered is left
    out (the report says what it can)."""
    from ..report.html import render_html
    from ..report.text import render_markdown
    makers: dict[str, Any] = {
        "report.json": lambda: _json(rep),
        "evidence.json": lambda: _json(evidence),
        "report.md": lambda: render_markdown(rep),
        "report.html": lambda: render_html(rep, evidence),
        "playbook.yaml": lambda: result.playbook.text,
    }
    if result.playbook.imported:
        makers["imports.json"] = lambda: _json(result.playbook.imported)
    out: dict[str, bytes] = {}
    for name, make in makers.items():
        try:
            out[name] = make().encode(errors="replace")
        except (ValueError, TypeError, RecursionError, OverflowError):
            continue
    return out


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"


def read(path: Path) -> dict[str, Any]:
    """Load a bundle's report, evidence and playbook text."""
    out: dict[str, Any] = {}
    with open(path / "report.json") as f:
        out["report"] = json.load(f)
    with open(path / "evidence.json") as f:
        out["evidence"] = json.load(f)
    out["playbook_text"] = (path / "playbook.yaml").read_text()
    imports = path / "imports.json"
    out["imports"] = json.loads(imports.read_text()) if imports.exists() else {}
    return out
