"""Durations as playbooks and manifests write them: ``250us``, ``10ms``, ``5s``, ``2m``."""

from __future__ import annotations

import re

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "min": 60_000_000_000, "h": 3_600_000_000_000}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zµ]+)\s*$")


def parse_duration_ns(value: object) -> int:
    """``"10ms"`` -> 10_000_000.  Bare numbers are refused: a unit must be written."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"expected a duration such as 10ms or 5s, got {value!r}")
    m = _RE.match(value)
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"expected a duration such as 10ms or 5s (units: ns, us, ms, s, m, h), got {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def format_ns(ns: int) -> str:
    for unit, div in (("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)):
        if ns >= div and ns % div == 0:
            return f"{ns // div}{unit}"
    return f"{ns}ns"
