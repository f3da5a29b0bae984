"""A run bundle: everything one investigation gathered, written so that it can be
attached to a ticket and replayed offline.

    report.json     the report (the stable JSON contract)
    report.md       the same, for people
    report.html     the same as one self-contained page with plots
    evidence.json   every node's evidence as its rules saw it
    events.jsonl    the structured event log (one JSON object a line)
    playbook.yaml   the playbook as it was run
    imports.json    the files it imported nodes from, if any (path -> text)

The folder is made fresh and private to root (0700: it holds process names and stacks),
every file opened in it with O_EXCL|O_NOFOLLOW (0600) and written whole or not at all, by a
child process the tool never waits for longer than a bound: see evidence/writer.py.
"""

from __future__ import annotations

import errno
import json
import os
import stat
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


def files_of(lp: Any, rep: dict[str, Any], evidence: dict[str, Any]) -> dict[str, bytes]:
    """The bundle's files but the event log, as bytes, for the run of the loaded playbook
    ``lp``; one that cannot be rendered is left out (the report says what it can)."""
    from ..report.html import render_html
    from ..report.text import render_markdown
    makers: dict[str, Any] = {
        "report.json": lambda: _json(rep),
        "evidence.json": lambda: _json(evidence),
        "report.md": lambda: render_markdown(rep),
        "report.html": lambda: render_html(rep, evidence),
        "playbook.yaml": lambda: lp.text,
    }
    if lp.imported:
        makers["imports.json"] = lambda: _json(lp.imported)
    out: dict[str, bytes] = {}
    for name, make in makers.items():
        try:
            out[name] = make().encode(errors="replace")
        except (ValueError, TypeError, RecursionError, OverflowError):
            continue
    return out


def finish(writer: Any, lp: Any, rep: dict[str, Any], evidence: dict[str, Any]) -> tuple[list[str], str | None]:
    """Hand the run's files to its writer (evidence/writer.py, bounded in time) and say how
    it went: the lines for stderr (notes, what is missing), and the line naming the bundle
    when it was written whole (None otherwise)."""
    res = writer.finish(files_of(lp, rep, evidence))
    lines = [f"note: {note}" for note in res.notes]
    if res.path is None:
        lines.append("the bundle was not written; the report above is all there is of this run")
    elif res.failed:
        from .writer import by_reason
        lines.append(f"the bundle in {res.path} is incomplete: " + "; ".join(by_reason(res.failed)))
    else:
        return lines, f"bundle: {res.path} ({', '.join(sorted(res.written))})"
    return lines, None


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"


MiB = 1 << 20
READ_LIMITS = {"report.json": 16 * MiB, "evidence.json": 64 * MiB, "playbook.yaml": MiB,
               "imports.json": 16 * MiB, "expect.yaml": MiB}
"""The largest file of each name the bundle reader accepts (evidence is the big one: 4096
records per snapshot, top lists; a real one is tens of KiB)."""
MAX_JSON_DEPTH = 64
"""Deepest nesting accepted in a bundle's JSON (real bundles nest about 7 levels)."""
EVIDENCE_FILES = ("report.json", "evidence.json")
"""What replay needs with a playbook given, and what a fixture holds (beside expect.yaml)."""
RUN_FILES = (*EVIDENCE_FILES, "playbook.yaml")
"""The files ``read`` needs in a run's bundle (imports.json is optional)."""


class BundleError(ValueError):
    """A bundle (or fixture) that cannot be read as one: the message is one line naming the
    file and what is wrong with it, never its content."""


def open_folder(path: Path) -> int:
    """A descriptor of the bundle folder, itself not a symbolic link; BundleError otherwise."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BundleError(f"{path}: no such folder") from None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = "a symbolic link" if os.path.islink(path) else "not a folder"
            raise BundleError(f"{path}: {kind}; a bundle is a folder") from None
        raise BundleError(f"{path}: cannot open: {e.strerror}") from None


def read_file(folder_fd: int, name: str, where: Path, limit: int | None = None) -> bytes | None:
    """The bytes of the regular file ``name`` in the folder ``folder_fd`` (``where`` names it
    in messages), None when there is none.  Never follows a symbolic link, never opens a FIFO
    or a device for reading, never reads more than ``limit`` (READ_LIMITS of the name)."""
    limit = READ_LIMITS.get(name, MiB) if limit is None else limit
    shown = where / name
    try:
        st = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BundleError(f"{shown}: cannot read: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{shown}: {_kind(st.st_mode)}, not a regular file; refused")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY,
                     dir_fd=folder_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        what = "a symbolic link" if e.errno == errno.ELOOP else f"cannot read: {e.strerror}"
        raise BundleError(f"{shown}: {what}; refused") from None
    try:
        st = os.fstat(fd)                       # what was opened, should it have been swapped
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{shown}: {_kind(st.st_mode)}, not a regular file; refused")
        if st.st_size > limit:
            raise BundleError(f"{shown}: {st.st_size} bytes, larger than the {limit} accepted")
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, MiB))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise BundleError(f"{shown}: grew past the {limit} bytes accepted while being read")
        return data
    except OSError as e:
        raise BundleError(f"{shown}: cannot read: {e.strerror}") from None
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a regular file"


def parse_json(data: bytes, where: Path) -> Any:
    """A bundle's JSON document, nested at most MAX_JSON_DEPTH deep; BundleError otherwise."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BundleError(f"{where}: not UTF-8 (byte {e.start})") from None
    except RecursionError:
        raise BundleError(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as e:                 # JSONDecodeError, or an integer of too many digits
        raise BundleError(f"{where}: not JSON: {str(e).splitlines()[0][:200]}") from None
    todo: list[tuple[Any, int]] = [(doc, 1)]
    while todo:
        x, depth = todo.pop()
        if isinstance(x, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise BundleError(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels")
            todo.extend((v, depth + 1) for v in (x.values() if isinstance(x, dict) else x))
    return doc


def read(path: Path, files: tuple[str, ...] = RUN_FILES) -> dict[str, Any]:
    """Load a bundle's report, evidence and playbook text (and its imports), or those of
    ``files`` there are (a fixture has no playbook): each file read with ``read_file``, each
    checked for the shape replay needs.  BundleError, one line, for anything else."""
    fd = open_folder(path)
    try:
        raw = {name: read_file(fd, name, path) for name in (*files, "imports.json")}
    finally:
        os.close(fd)
    for name in files:
        if raw[name] is None:
            raise BundleError(f"{path / name}: missing; a bundle holds {', '.join(files)}")
    out: dict[str, Any] = {"imports": {}, "playbook_text": ""}
    if raw.get("report.json") is not None:
        out["report"] = check_report(parse_json(raw["report.json"], path / "report.json"), path / "report.json")
    if raw.get("evidence.json") is not None:
        out["evidence"] = check_evidence(parse_json(raw["evidence.json"], path / "evidence.json"),
                                         path / "evidence.json")
    text = raw.get("playbook.yaml")
    if text is not None:
        try:
            out["playbook_text"] = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BundleError(f"{path / 'playbook.yaml'}: not UTF-8 (byte {e.start})") from None
    if raw["imports.json"] is not None:
        out["imports"] = check_imports(parse_json(raw["imports.json"], path / "imports.json"),
                                       path / "imports.json")
    return out


def _need(cond: bool, where: Path, what: str) -> None:
    if not cond:
        raise BundleError(f"{where}: {what}")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_report(rep: Any, where: Path) -> dict[str, Any]:
    """``rep`` when it has the keys and types of a report (model.py) that replay reads."""
    _need(isinstance(rep, dict), where, "a report is a JSON object")
    for key, ok, what in (("nodes", lambda x: isinstance(x, list), "a list"),
                          ("complete", lambda x: isinstance(x, bool), "true or false"),
                          ("started_at", lambda x: isinstance(x, str), "a string"),
                          ("duration_s", _number, "a number"),
                          ("kernel", lambda x: isinstance(x, dict), "an object")):
        _need(key in rep, where, f"no '{key}'")
        _need(ok(rep[key]), where, f"'{key}' is not {what}")
    _need(isinstance(rep.get("vars", {}), dict), where, "'vars' is not an object")
    _need(rep.get("interrupted_by") is None or isinstance(rep["interrupted_by"], str), where,
          "'interrupted_by' is not a string")
    for i, n in enumerate(rep["nodes"]):
        at = f"nodes[{i}]"
        _need(isinstance(n, dict), where, f"{at} is not an object")
        for key in ("id", "status"):
            _need(isinstance(n.get(key), str), where, f"{at}.{key} is missing or not a string")
        for key, ok, what in (("hypothesis", lambda x: isinstance(x, str), "a string"),
                              ("verdict", lambda x: x is None or isinstance(x, str), "a string or null"),
                              ("window_s", _number, "a number"), ("observed_s", _number, "a number"),
                              ("interrupted", lambda x: isinstance(x, bool), "true or false"),
                              ("errors", lambda x: isinstance(x, list) and all(isinstance(e, str) for e in x),
                               "a list of strings"),
                              ("probes", lambda x: isinstance(x, list) and all(
                                  isinstance(p, dict) and isinstance(p.get("probe"), str)
                                  and (p.get("hook") is None or isinstance(p["hook"], str)) for p in x),
                               "a list of {probe, hook}")):
            _need(key not in n or ok(n[key]), where, f"{at}.{key} is not {what}")
    return rep


def check_evidence(ev: Any, where: Path) -> dict[str, Any]:
    """``ev`` when it maps node ids to their evidence (alias -> object), or to null."""
    _need(isinstance(ev, dict), where, "evidence is a JSON object of node ids")
    for nid, env in ev.items():
        _need(env is None or isinstance(env, dict), where, f"'{nid[:80]}' is not an object")
    return ev


def check_imports(imports: Any, where: Path) -> dict[str, str]:
    """``imports`` when it maps relative paths to the texts of imported files."""
    _need(isinstance(imports, dict) and all(isinstance(v, str) for v in imports.values()), where,
          "imports are a JSON object of file -> text")
    return imports
