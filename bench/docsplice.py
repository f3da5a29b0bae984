"""Replace the generated part of a doc page: the text between two marker comments."""

from __future__ import annotations

from pathlib import Path


def splice(path: Path, name: str, text: str) -> None:
    """Put ``text`` between ``<!-- name -->`` and ``<!-- /name -->`` in ``path`` (the markers
    are appended when the page has none yet); the rest of the page is kept."""
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    doc = path.read_text() if path.exists() else ""
    if begin not in doc:
        doc += f"\n{begin}\n{end}\n"
    head, rest = doc.split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{begin}\n\n{text}{end}{tail}")
