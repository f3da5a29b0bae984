"""Probe manifests: one YAML file beside each ``probes/NAME.bpf.c``.

A manifest says which object to load, the hook alternatives in order of preference
(each a set of programs that attach together), the parameters (read-only globals set
before load), the bounded maps, and every evidence field the probe's collector produces,
with type, unit and meaning.  Playbook validation checks rule expressions against those
fields; docs/probes.md is generated from them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)     # libyaml when PyYAML has it

PARAM_TYPES = ("duration", "int", "bool", "symbol", "path")
TARGET_TYPES = ("symbol", "path")
# A "symbol" or "path" parameter is no BPF global: it names what the programs attach to (a
# kernel function; a binary and its function), written "{name}" in the hook targets.

BPFTRACE = "bpftrace"


def bpftrace_manifest() -> ProbeManifest:
    """The pseudo-probe of a node's bpftrace program: no object, free-form evidence."""
    return ProbeManifest(
        name=BPFTRACE, alias="bt", summary="A bpftrace program given in the playbook.",
        description="bpftrace -f json runs the program; its maps (and printf output) are the evidence.",
        object_path=Path(), source_path=Path(), collector=BPFTRACE, mode="bpftrace",
        hooks=(HookAlternative(kind=BPFTRACE, programs={}),), params={}, maps={},
        evidence=(EvidenceField(path="output", type="list", unit="", help="printf lines (up to 1000)."),),
        kernel="bpftrace installed", freeform=True)


def waitfor_manifest() -> ProbeManifest:
    """The pseudo-probe of a node's merged wait-for graph (investigator/analyze/waitfor.py):
    present in every node with a probe that gives wait-for edges."""
    from ..analyze import waitfor
    return ProbeManifest(
        name="waitfor", alias=waitfor.ALIAS, summary="The node's wait-for graph, merged from its probes' edges.",
        description="", object_path=Path(), source_path=Path(), collector="", mode="analyzer",
        hooks=(), params={}, maps={}, kernel="",
        evidence=tuple(EvidenceField(path=p, type=t, unit=u, help=h) for p, t, u, h in waitfor.FIELDS))


def focus_manifest() -> ProbeManifest:
    """The pseudo-probe of a focused node's ``focus``: the finding of the node that aimed it
    (investigator/rules/focus.py), its details free-form."""
    return ProbeManifest(
        name="focus", alias="focus", summary="The finding of the node this one is aimed at.",
        description="", object_path=Path(), source_path=Path(), collector="", mode="analyzer",
        hooks=(), params={}, maps={}, kernel="", freeform=True,
        evidence=tuple(EvidenceField(path=p, type="list", unit="", help=h) for p, h in (
            ("tasks", "Its tasks (tid, pid, comm, role, prio, policy, waits_for, holds, ...)."),
            ("locks", "Its locks (kind, addr, holder_tid, waiter_tid, ...)."), ("cpus", "Its CPUs."),
            ("cgroups", "Its cgroups."), ("files", "Its files."), ("stack", "Its main stack."))))


@dataclass(frozen=True)
class Param:
    name: str
    global_name: str                # "" for a symbol
    type: str
    default: Any
    help: str
    max: int | None = None          # the largest value an "int" parameter accepts
    collector: bool = False         # policy the collector applies (inst.values), no BPF global
    syscall: str = ""               # the default is this system call's number here (syscalls.py)

    @property
    def value_here(self) -> Any:
        """The default on this machine: ``default``, or the number of ``syscall`` (-1 when
        the tool does not know this machine's numbers)."""
        if self.syscall:
            from ..syscalls import nr
            return nr(self.syscall)
        return self.default


@dataclass(frozen=True)
class HookAlternative:
    kind: str                       # tp_btf, raw_tp, tracepoint, fentry, kprobe, iter, ...
    programs: dict[str, str]        # program name -> attach target (tracepoint, function, iter)

    def targets(self, symbols: dict[str, str]) -> dict[str, str]:
        """Program -> target with the symbol parameters filled in ("{function}")."""
        out = {}
        for prog, t in self.programs.items():
            for k, v in symbols.items():
                t = t.replace("{" + k + "}", v)
            out[prog] = t
        return out


@dataclass(frozen=True)
class Budget:
    events_per_s: float = 500_000.0   # the probe is detached above this event rate
    cost_ns: float = 300.0            # estimated CPU time per event (bench/ measures it)


@dataclass(frozen=True)
class EvidenceField:
    path: str                       # relative to the probe's alias: "worst.wait_ms"
    type: str                       # int, float, str, bool, list, object
    unit: str
    help: str


@dataclass(frozen=True)
class ProbeManifest:
    name: str
    alias: str                      # evidence name in rules, the file stem of the probe ("runqlat")
    summary: str
    description: str
    object_path: Path
    source_path: Path
    collector: str
    mode: str                       # "window": aggregate over a window; "snapshot": iterator
    hooks: tuple[HookAlternative, ...]
    params: dict[str, Param]
    maps: dict[str, str]            # map name -> what bounds it
    evidence: tuple[EvidenceField, ...]
    kernel: str = ""                # kernel requirements, in words
    manifest_path: Path = field(default=Path())
    budget: Budget = field(default_factory=Budget)
    freeform: bool = False          # evidence fields are not known statically (bpftrace)
    min_kernel: str = ""            # refuse on older kernels ("6.6"), for min_kernel_reason
    min_kernel_reason: str = ""
    former_aliases: tuple[str, ...] = ()    # earlier evidence names, still accepted with a warning

    def too_old(self, release: str | None = None, symbols: dict[str, str] | None = None) -> str | None:
        """Why this kernel is older than the probe accepts, or None: its ``min_kernel``, and
        the floor of any risky function its hooks patch (probes/risky.py), with the symbol
        parameters (``function``) filled in from ``symbols``."""
        if self.min_kernel and kernel_version(release) < kernel_version(self.min_kernel):
            return f"needs Linux {self.min_kernel} or later: {self.min_kernel_reason}"
        for p in self.params.values():
            if p.syscall and p.value_here < 0:
                import os
                return (f"the number of the {p.syscall} system call on {os.uname().machine} is not known "
                        "to the tool (investigator/syscalls.py)")
        from .risky import FUNCTION_HOOKS, refusal
        for alt in self.hooks:
            if alt.kind in FUNCTION_HOOKS:
                for target in sorted(set(alt.targets(symbols or {}).values())):
                    why = refusal(target, release)
                    if why:
                        return why
        return None

    @property
    def userspace(self) -> bool:
        """Reads /proc instead of loading BPF (hook kind "procfs")."""
        return all(h.kind == "procfs" for h in self.hooks) and bool(self.hooks)

    def field_paths(self) -> frozenset[str]:
        """Every path a rule may name, parents included (worst, worst.victim, worst.victim.tid)."""
        return _field_paths(self.evidence)


@lru_cache(maxsize=256)
def _field_paths(evidence: tuple[EvidenceField, ...]) -> frozenset[str]:
    out: set[str] = set()
    for f in evidence:
        parts = f.path.split(".")
        for i in range(1, len(parts) + 1):
            out.add(".".join(parts[:i]))
    return frozenset(out)


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of a release string ("6.1.0-57-amd64"), the running kernel's by default."""
    rel = release or os.uname().release
    parts = rel.split(".")
    try:
        return int(parts[0]), int("".join(c for c in (parts[1] if len(parts) > 1 else "0").split("-")[0] if c.isdigit()) or 0)
    except ValueError:
        return (0, 0)


class ManifestError(ValueError):
    pass


def probes_dir() -> Path:
    """Where the compiled objects and manifests are: inside the installed package
    (``investigator/_probes``, put there by the wheel build) or the repository's probes/."""
    env = os.environ.get("INVESTIGATOR_PROBES_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_probes"
    if packaged.is_dir():
        return packaged
    return here.parent / "probes"


def _require(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise ManifestError(f"{where}: missing '{key}'")
    return d[key]


def _only_keys(d: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = set(d) - allowed
    if extra:
        raise ManifestError(f"{where}: unknown keys {sorted(extra)} (quote text that holds commas)")


def load_manifest(path: Path) -> ProbeManifest:
    with open(path) as f:
        d = yaml.load(f, Loader=_YAML_LOADER)
    where = str(path)
    hooks = tuple(HookAlternative(kind=h["kind"], programs=dict(h["programs"]))
                  for h in _require(d, "hooks", where))
    # a "procfs" probe reads what the kernel publishes in /proc (no BPF object, no globals)
    userspace = bool(hooks) and all(h.kind == "procfs" for h in hooks)
    params = {}
    for name, p in (d.get("params") or {}).items():
        _only_keys(p, {"global", "type", "default", "help", "max", "collector", "syscall"}, f"{where}: param {name}")
        if p["type"] not in PARAM_TYPES:
            raise ManifestError(f"{where}: param {name}: type must be one of {PARAM_TYPES}")
        collector = p.get("collector") is True
        if collector and ("global" in p or p["type"] in TARGET_TYPES):
            raise ManifestError(f"{where}: param {name}: a collector parameter has no 'global' and is no target")
        if p["type"] not in TARGET_TYPES and "global" not in p and not userspace and not collector:
            raise ManifestError(f"{where}: param {name}: missing 'global' (or 'collector: true')")
        params[name] = Param(name=name, global_name=p.get("global", ""), type=p["type"],
                             default=p.get("default"), help=p.get("help", ""),
                             max=int(p["max"]) if "max" in p else None, collector=collector,
                             syscall=str(p.get("syscall", "")))
    for e in _require(d, "evidence", where):
        _only_keys(e, {"path", "type", "unit", "help"}, f"{where}: evidence {e.get('path')}")
    evidence = tuple(EvidenceField(path=e["path"], type=e["type"], unit=e.get("unit", ""),
                                   help=e.get("help", "")) for e in _require(d, "evidence", where))
    obj = Path() if userspace else path.parent / _require(d, "object", where)
    b = d.get("budget") or {}
    _only_keys(b, {"events_per_s", "cost_ns"}, f"{where}: budget")
    budget = Budget(**{k: float(v) for k, v in b.items()})
    return ProbeManifest(
        name=_require(d, "name", where), alias=_require(d, "alias", where),
        summary=_require(d, "summary", where), description=d.get("description", ""),
        object_path=obj, source_path=obj if userspace else obj.with_suffix(".c"),
        collector=_require(d, "collector", where),
        mode=d.get("mode", "window"), hooks=hooks, params=params, maps=dict(d.get("maps") or {}),
        evidence=evidence, kernel=d.get("kernel", ""), manifest_path=path, budget=budget,
        min_kernel=str((d.get("min_kernel") or {}).get("version", "")),
        min_kernel_reason=str((d.get("min_kernel") or {}).get("reason", "")),
        former_aliases=tuple(str(a) for a in d.get("former_aliases") or ()))


@lru_cache(maxsize=4)
def _registry(directory: str) -> dict[str, ProbeManifest]:
    out = {}
    for p in sorted(Path(directory).glob("*.yaml")):
        m = load_manifest(p)
        out[m.name] = m
    return out


def collectors() -> tuple[str, ...]:
    """The collectors (investigator/probes/collectors/) a custom probe may name: a custom
    probe must produce records one of them decodes, since a playbook never brings code --
    those of the library's BPF probes (a /proc reader decodes no records)."""
    return tuple(sorted({m.collector for m in registry().values() if not m.userspace}))


def registry(directory: Path | None = None) -> dict[str, ProbeManifest]:
    """Every probe manifest by name (``sched.runqlat``)."""
    return _registry(str(directory or probes_dir()))
