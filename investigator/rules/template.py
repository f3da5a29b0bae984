"""Explanation templates: ``"{runqlat.worst.victim.comm} waited {runqlat.worst.wait_ms} ms"``.

Placeholders are dotted paths into the evidence (list indexes allowed: ``{x.tasks.0.tid}``)
with an optional format spec after a colon (``{runqlat.max_ms:.0f}``).  No expressions, no
attribute access on Python objects: only dict keys and list indexes.  A format spec is
Python's standard one (fill, align, sign, ``#``, ``0``, width, grouping, precision, type)
with width and precision at most MAX_WIDTH: checked when the playbook loads, and again
when it renders (a spec that does not pass shows the value plainly)."""

from __future__ import annotations

import re
from typing import Any

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.]*)(?::([^{}]*))?\}")
_SPEC = re.compile(r"(?:[^{}]?[<>=^])?[-+ ]?z?#?0?(?P<width>[0-9]*)[_,]?(?:\.(?P<prec>[0-9]+))?"
                   r"[bcdeEfFgGnosxX%]?", re.S)
MAX_OUT = 2000
MAX_WIDTH = 64


def spec_problem(spec: str) -> str | None:
    """Why a format spec is refused (None when it is a standard one within MAX_WIDTH)."""
    m = _SPEC.fullmatch(spec)
    if m is None:
        return f"format spec '{spec}' is not a standard one ([[fill]align][sign][#][0][width][,][.precision][type])"
    for what in ("width", "prec"):
        digits = m.group(what)
        if digits and (len(digits) > 3 or int(digits) > MAX_WIDTH):
            return (f"format spec '{spec}': {'precision' if what == 'prec' else 'width'} "
                    f"{digits} is over {MAX_WIDTH}")
    return None


def spec_problems(template: str) -> list[tuple[str, str]]:
    """The refused format specs of a template: (the spec, why)."""
    return [(m.group(2), why) for m in _PLACEHOLDER.finditer(template)
            if m.group(2) and (why := spec_problem(m.group(2))) is not None]


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
        if spec and spec_problem(spec) is None:
            try:
                return format(v, spec)
            except (ValueError, TypeError):
                pass
        return _text(v)
    return _PLACEHOLDER.sub(sub, template)[:MAX_OUT]


def _text(v: Any) -> str:
    """A value as a sentence shows it: 0.25 not 0.250000, a list of scalars as "1, 2"."""
    if isinstance(v, float):
        return f"{v:g}" if abs(v) < 1e6 else f"{v:.0f}"
    if isinstance(v, list) and all(isinstance(x, (str, int, float)) for x in v):
        return ", ".join(_text(x) for x in v[:50]) or "(none)"
    return str(v)
