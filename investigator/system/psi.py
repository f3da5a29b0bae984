"""Pressure stall information: the share of time tasks were stalled on a CPU, on memory or
on I/O, system-wide (/proc/pressure/RESOURCE) and per cgroup v2 (RESOURCE.pressure).

A file holds a ``some`` line (at least one task stalled) and, except for the system-wide
cpu file on kernels before 5.13, a ``full`` line (every non-idle task stalled), each with
running averages over 10, 60 and 300 s and ``total``, the stalled time in microseconds
since boot.  Two reads' totals give the share of the time between them exactly.  A kernel
built without CONFIG_PSI, booted with psi=0, or built with CONFIG_PSI_DEFAULT_DISABLED and
booted without psi=1 has no /proc/pressure, and its cgroups have no pressure files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .cgroups import read_file

RESOURCES = ("cpu", "memory", "io")
PROC = "/proc/pressure"


@dataclass(frozen=True)
class Line:
    avg10: float
    avg60: float
    total_us: int


def parse(text: str) -> dict[str, Line]:
    """{"some": Line, "full": Line} from a pressure file's text (lines it lacks left out)."""
    out = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        vals = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
        try:
            out[kind] = Line(float(vals["avg10"]), float(vals["avg60"]), int(vals["total"]))
        except (KeyError, ValueError):
            continue
    return out


def read(path: str) -> dict[str, Line] | None:
    """One pressure file; None when it cannot be read (gone, or PSI off)."""
    text = read_file(path, 4096)
    return None if text is None else parse(text)


def system() -> dict[str, dict[str, Line]]:
    """The system-wide files that can be read, by resource."""
    return {r: v for r in RESOURCES for v in [read(f"{PROC}/{r}")] if v}


def why_unavailable() -> str:
    """Why system-wide PSI cannot be read here, or "" when it can."""
    if not os.path.isdir(PROC):
        return "the kernel has no pressure stall information (CONFIG_PSI off, or PSI off at boot: boot with psi=1)"
    try:
        with open(f"{PROC}/cpu") as f:
            f.read()
    except OSError as e:
        return f"{PROC}/cpu cannot be read: {e.strerror} (PSI disabled at boot: boot with psi=1)"
    return ""


def share(before: Line | None, after: Line | None, seconds: float) -> float:
    """Percent of ``seconds`` stalled between two reads of one line."""
    if before is None or after is None or seconds <= 0:
        return 0.0
    return round(min(100.0, max(0.0, (after.total_us - before.total_us) / (seconds * 1e4))), 2)
