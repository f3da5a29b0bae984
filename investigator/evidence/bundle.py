"""A run bundle: everything one investigation gathered, written so that it can be
attached to a ticket and replayed offline.

    report.json     the report (the stable JSON contract)
    report.md       the same, for people
    report.html     the same as one self-contained page with plots
    evidence.json   every node's evidence as its rules saw it
    events.jsonl    the structured event log (structlog, one JSON object a line)
    playbook.yaml   the playbook as it was run
    imports.json    the files it imported nodes from, if any (path -> text)

Files are written atomically (temp file + rename) and the folder is private to root
(0700): it holds process names and stacks.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

def default_dir(playbook_name: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return Path("investigations") / f"{playbook_name}-{stamp}-{os.getpid()}"


def prepare(path: Path, timeout: float = 3.0) -> Path:
    """Create the bundle folder, private to root.  Made by a child given up after
    ``timeout`` (TimeoutError): on a frozen filesystem mkdir waits for the thaw, and the
    investigation must not wait with it.  OSError when it cannot be made."""
    from ..system.procfs import run_in_child
    run_in_child(["mkdir", "-p", "-m", "700", "--", str(path)], f"creating {path}", timeout)
    os.chmod(path, 0o700)
    return path


def fallback_dir(playbook_name: str) -> Path | None:
    """A fresh bundle folder in a temp dir, for when the one asked for cannot be made; None
    when none can."""
    import tempfile
    name = default_dir(playbook_name).name
    for base in dict.fromkeys((tempfile.gettempdir(), "/dev/shm", "/run")):
        try:
            return prepare(Path(base) / f"investigator-{name}")
        except OSError:
            continue
    return None


def write_atomic(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    mode = "wb" if isinstance(data, bytes) else "w"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, mode) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


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
