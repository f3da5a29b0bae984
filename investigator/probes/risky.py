"""Kernel functions that are risky to patch, on the kernels where they are: the one table.

Attaching to a function (fentry/fexit trampolines, kprobes) rewrites its first
instructions while every CPU may be running it.  For the functions below that went wrong
in testing (docs/kernels.md, the second-kernel stage), kernels older than the entry's
floor are refused: for a library probe whose hooks name them (``lock.hold``), for
``kernel.func`` whatever its ``function`` parameter, and for a bpftrace program's
``kprobe:``/``kretprobe:``/``fentry:``/``fexit:`` attach points, globs included.  The
check runs on the targets a probe really attaches to, at attach time
(ProbeManifest.too_old, BpftraceInstance.attach); validation warns where a playbook
names one.

bpftrace's attach points are read by :func:`attach_points`, a best-effort parse of the
probe headers: comments and preprocessor lines are skipped, the bodies (``{ ... }``) left
out, and every ``provider:target`` token of a header kept.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from functools import lru_cache

from .manifest import kernel_version


@dataclass(frozen=True)
class RiskyFunction:
    pattern: str        # a function name, or a glob of names (fnmatch-style * and ?)
    floor: str          # the first release where patching it is accepted ("6.6")
    reason: str


_MUTEX_61 = ("with mutex_lock*, mutex_trylock and mutex_unlock patched, Debian 6.1 crashed in 2 of 7 "
             "second-kernel runs (a call into mutex_lock jumped to address 0); 6.12 never did in 6")

RISKY: tuple[RiskyFunction, ...] = (
    RiskyFunction("mutex_lock*", "6.6", _MUTEX_61),
    RiskyFunction("mutex_trylock", "6.6", _MUTEX_61),
    RiskyFunction("mutex_unlock", "6.6", _MUTEX_61),
)

FUNCTION_HOOKS = frozenset({"kprobe", "kretprobe", "fentry", "fexit"})

running_release = platform.release
"""The run's target kernel (tests replace it to stand for another kernel)."""


def globs_intersect(a: str, b: str) -> bool:
    """Whether some name matches both globs (``*`` any run, ``?`` one character)."""
    if len(a) * len(b) > 1 << 20:       # names are short; a longer one is treated as matching
        return True

    @lru_cache(maxsize=None)
    def at(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*" and (at(i + 1, j) or (j < len(b) and b[j] != "*" and at(i, j + 1))):
            return True
        if j < len(b) and b[j] == "*" and (at(i, j + 1) or (i < len(a) and a[i] != "*" and at(i + 1, j))):
            return True
        if i < len(a) and j < len(b) and "*" not in (a[i], b[j]):
            return (a[i] == b[j] or "?" in (a[i], b[j])) and at(i + 1, j + 1)
        return False
    try:
        return at(0, 0)
    finally:
        at.cache_clear()


def risky(target: str) -> RiskyFunction | None:
    """The table's entry for a function name or glob (``mutex_*`` reaches mutex_lock), or None."""
    return next((r for r in RISKY if globs_intersect(target, r.pattern)), None)


def refusal(target: str, release: str | None = None) -> str | None:
    """Why patching ``target`` (a function or a glob) is refused on ``release`` (the
    running kernel by default), or None.  Targets still holding a ``{param}`` are skipped."""
    r = risky(target) if "{" not in target else None
    if r is None or kernel_version(release or running_release()) >= kernel_version(r.floor):
        return None
    return f"patching {target} needs Linux {r.floor} or later: {r.reason}"


def warning(target: str) -> str | None:
    """What validation says about a risky target a playbook names, or None."""
    r = risky(target)
    if r is None:
        return None
    here = running_release()
    this = f"; this kernel ({here}) is one, a run here refuses it" if refusal(target, here) else ""
    return (f"{target} is risky to patch: refused on kernels before {r.floor} ({r.reason}){this}")


@dataclass(frozen=True)
class AttachPoint:
    spec: str           # as written: kprobe:mutex_*
    provider: str       # the long name: kprobe, kretprobe, fentry, fexit, tracepoint, ...
    target: str         # the function (or glob) for function providers, else the rest


PROVIDERS = {"k": "kprobe", "kr": "kretprobe", "f": "fentry", "fr": "fexit", "kfunc": "fentry",
             "kretfunc": "fexit", "t": "tracepoint", "rt": "rawtracepoint", "u": "uprobe",
             "ur": "uretprobe", "p": "profile", "i": "interval", "s": "software", "h": "hardware",
             "U": "usdt", "w": "watchpoint", "it": "iter"}
_TOKEN = re.compile(r"([A-Za-z_]+):(\S*)")
MAX_POINTS = 1000


def _headers(program: str) -> list[str]:
    """The text between probe bodies, outside comments; string quotes dropped."""
    out: list[str] = []
    cur: list[str] = []
    depth, i, n = 0, 0, len(program)
    at_line_start = True
    while i < n:
        c = program[i]
        if at_line_start and depth == 0 and program.startswith("#", i):   # #include, #define
            j = program.find("\n", i)
            i = n if j < 0 else j
            continue
        at_line_start = c == "\n" or (at_line_start and c in " \t")
        if program.startswith("//", i):
            j = program.find("\n", i)
            i = n if j < 0 else j
            continue
        if program.startswith("/*", i):
            j = program.find("*/", i + 2)
            i = n if j < 0 else j + 2
            cur.append(" ")
            continue
        if c == '"':
            j = i + 1
            while j < n and program[j] != '"':
                j += 2 if program[j] == "\\" else 1
            if depth == 0:
                cur.append(program[i + 1:j])
            i = j + 1
            continue
        if c == "{":
            if depth == 0:
                out.append("".join(cur))
                cur = []
            depth += 1
        elif c == "}":
            depth = max(0, depth - 1)
            if depth == 0:
                cur.append(" ")
        elif depth == 0:
            cur.append(c)
        i += 1
    if "".join(cur).strip():
        out.append("".join(cur))
    return out


def attach_points(program: str) -> list[AttachPoint]:
    """Every ``provider:target`` of a bpftrace program's probe headers (at most MAX_POINTS).
    A function provider's target is the function or glob (module and +offset dropped)."""
    points: list[AttachPoint] = []
    for header in _headers(program):
        for tok in re.split(r"[\s,]+", header):
            m = _TOKEN.fullmatch(tok)
            if m is None:
                continue
            provider = PROVIDERS.get(m.group(1), m.group(1))
            target = m.group(2)
            if provider in FUNCTION_HOOKS:
                target = target.rsplit(":", 1)[-1].split("+", 1)[0] or "*"
            points.append(AttachPoint(tok, provider, target))
            if len(points) >= MAX_POINTS:
                return points
    return points


def bpftrace_refusal(program: str, release: str | None = None) -> str | None:
    """Why a bpftrace program may not run on ``release`` (a risky function target), or None."""
    for p in attach_points(program):
        if p.provider in FUNCTION_HOOKS:
            why = refusal(p.target, release)
            if why:
                return f"{p.spec}: {why}"
    return None
