"""Explanation templates: ``"{runq.worst.victim.comm} waited {runq.worst.wait_ms} ms"``.

Placeholders are dotted paths into the evidence (list indexes allowed: ``{x.tasks.0.tid}``)
with an optional format spec after a colon (``{runq.max_ms:.0f}``).  No expressions, no
attribute access on Python objects: only dict keys and list indexes."""

from __future__ import annotations

import re
from typing import Any

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.]*)(?::([^{}]*))?\}")
MAX_OUT = 2000


def placeholders(template: str) -> list[tuple[str, int]]:
    return [(m.group(1), m.start() + 2) for m in _PLACEHOLDER.finditer(template)]


def lookup(env: dict[str, Any], path: str) -> Any:
    cur: Any = env
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise KeyError(path)
    return cur


def render(template: str, env: dict[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        try:
            v = lookup(env, m.group(1))
        except KeyError:
            return "{" + m.group(1) + "?}"
        spec = m.group(2)
        if spec:
            try:
                return format(v, spec)
            except (ValueError, TypeError):
                return str(v)
        return _text(v)
    return _PLACEHOLDER.sub(sub, template)[:MAX_OUT]


def _text(v: Any) -> str:
    """A value as a sentence shows it: 0.25 not 0.250000, a list of scalars as "1, 2"."""
    if isinstance(v, float):
        return f"{v:g}" if abs(v) < 1e6 else f"{v:.0f}"
    if isinstance(v, list) and all(isinstance(x, (str, int, float)) for x in v):
        return ", ".join(_text(x) for x in v[:50]) or "(none)"
    return str(v)
