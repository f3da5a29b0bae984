"""A probe loaded and attached with chosen parameters: hook fallback, load, attach,
collect evidence, detach."""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..bpf import BpfError, BpfObject, num_possible_cpus
from ..bpf import features
from .manifest import TARGET_TYPES, HookAlternative, ProbeManifest
from .units import parse_duration_ns


class ProbeUnavailable(Exception):
    """No hook alternative of this probe works on this kernel; ``attempts`` says why."""

    def __init__(self, probe: str, attempts: list[dict[str, str]]) -> None:
        self.probe = probe
        self.attempts = attempts
        self.why = "; ".join(f"{a['hook']}: {a['reason']}" for a in attempts) or "no hook alternatives"
        super().__init__(f"probe {probe} cannot attach here ({self.why})")


class Collector(Protocol):
    def start(self, inst: ProbeInstance) -> None: ...
    def finish(self, inst: ProbeInstance) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Targets:
    """In-kernel filters passed to a probe (``task_selected()`` in probes/common.h): the
    run's process, command name and cgroup v2 subtree (its root's id and level), and a
    node's focus, a set of TIDs (at most MAX_TARG_TIDS); empty = everything."""
    pid: int = 0
    comm: str = ""
    cgroup_id: int = 0
    cgroup_level: int = 0
    tids: tuple[int, ...] = ()

    def key(self) -> tuple[Any, ...]:
        return (self.pid, self.comm, self.cgroup_id, self.cgroup_level, self.tids)

    def globals(self) -> dict[str, int | bytes]:
        return {"targ_tgid": self.pid,
                "targ_comm": self.comm.encode()[:15].ljust(16, b"\0"),
                "targ_cgroup": self.cgroup_id, "targ_cgroup_level": self.cgroup_level,
                "targ_tids_on": int(bool(self.tids))}

    def in_cgroup(self, cg_id: int, level: int) -> Targets:
        """These targets narrowed to a node's focus on a cgroup subtree (inside the run's)."""
        import dataclasses
        return dataclasses.replace(self, cgroup_id=cg_id, cgroup_level=level, tids=())

    def focused(self, tids: Any) -> Targets:
        """These targets narrowed to a node's focus: ``tids``, sorted, each once, at most
        MAX_TARG_TIDS of them."""
        import dataclasses
        return dataclasses.replace(self, tids=tuple(sorted({int(t) for t in tids if int(t) > 0}))[:MAX_TARG_TIDS])


MAX_TARG_TIDS = 4096        # probes/common.h


def availability(manifest: ProbeManifest) -> tuple[str | None, list[dict[str, str]]]:
    """Which hook alternative this kernel accepts (by feature probes, nothing attached),
    and why the others are refused."""
    old = manifest.too_old()
    if old:
        return None, [{"hook": "any", "reason": old}]
    if manifest.userspace:
        # a procfs hook's programs name the files it reads, each of which must be readable
        import os
        missing = sorted({path for h in manifest.hooks for path in h.programs.values() if not os.access(path, os.R_OK)})
        return ("procfs", []) if not missing else \
            (None, [{"hook": "procfs", "reason": f"{', '.join(missing)} cannot be read here"}])
    if not features.btf():
        return None, [{"hook": "any", "reason": features.btf().reason}]
    refused = []
    for alt in manifest.hooks:
        why = refusal(alt, {})
        if why is None:
            return alt.kind, refused
        refused.append({"hook": alt.kind, "reason": why})
    return None, refused


def ensure_tracefs(notes: list[str]) -> None:
    """Classic tracepoints need tracefs: mount it if it is not, and say so in ``notes``."""
    if features.tracefs() is not None:
        return
    from ..system.mounts import ensure_mounted
    _, msg = ensure_mounted("tracefs")
    notes.append(msg)
    features.tracefs.cache_clear()
    features.tracepoint.cache_clear()


def refusal(alt: HookAlternative, symbols: dict[str, str]) -> str | None:
    """Why this kernel refuses a hook alternative (feature probes), or None.  Targets that
    name a symbol parameter not given (``investigate probes``) are probed generically."""
    for target in sorted(set(alt.targets(symbols).values())):
        if "{" in target:
            target = ""
        s = features.hook(alt.kind, target)
        if not s:
            return f"{target}: {s.reason}"
    return None


def resolve_params(manifest: ProbeManifest, given: dict[str, Any]) -> dict[str, int]:
    """Parameter values as the integers the BPF globals hold (durations in ns)."""
    out: dict[str, int] = {}
    for name, p in manifest.params.items():
        v = given.get(name, p.value_here)
        if p.type in TARGET_TYPES:
            continue
        if p.type == "duration":
            out[name] = parse_duration_ns(v)
        elif p.type == "bool":
            out[name] = int(bool(v))
        else:
            out[name] = int(v or 0) if p.max is None else min(int(v or 0), p.max)
    return out


class Observed:
    """The time a probe observed, for both kinds of probe instance: ``attached_at``
    (monotonic s) to now, or to the moment the overhead guard stopped it (``detached_ns``)."""
    attached_at: float
    detached_ns: int

    def stop_observing(self) -> float:
        """Mark the end of the observation (the guard detaches the probe); its length."""
        self.detached_ns = time.monotonic_ns()
        return self.observed_s()

    def observed_until_ns(self) -> int:
        """The end of what this probe saw (CLOCK_MONOTONIC ns, the clock of bpf_ktime_get_ns):
        now, or the moment the overhead guard detached it -- a share of the window is a share
        of that, and an interval still open then was last seen open then."""
        return self.detached_ns or time.monotonic_ns()

    def observed_s(self) -> float:
        """How long this probe observed: from its attach to ``observed_until_ns``."""
        return max(0.0, self.observed_until_ns() / 1e9 - self.attached_at)


@dataclass
class ProbeInstance(Observed):
    manifest: ProbeManifest
    params: dict[str, Any]
    targets: Targets = field(default_factory=Targets)
    obj: BpfObject | None = None
    hook: str | None = None
    attempts: list[dict[str, str]] = field(default_factory=list)
    attached_at: float = 0.0
    attach_ms: float = 0.0
    links: list[str] = field(default_factory=list)
    collector: Collector | None = None
    values: dict[str, int] = field(default_factory=dict)
    symbols: dict[str, str] = field(default_factory=dict)   # symbol parameters (attach targets)
    notes: list[str] = field(default_factory=list)      # what was done on the way (mounts)
    guard: dict[str, Any] | None = None                 # set when the overhead guard detached it
    detached_ns: int = 0                                # when it did (CLOCK_MONOTONIC, ns)

    @property
    def name(self) -> str:
        return self.manifest.name

    def _open(self, alt_index: int) -> BpfObject:
        m = self.manifest
        obj = BpfObject(m.object_path)
        chosen = m.hooks[alt_index].targets(self.symbols)
        for pname, prog in obj.programs.items():
            prog.autoload = pname in chosen
            if pname in chosen and prog.kind in ("fentry", "fexit") and chosen[pname] != prog.target:
                prog.set_attach_target(chosen[pname])
        for pname, p in m.params.items():
            if p.type not in TARGET_TYPES and not p.collector:
                obj.set_global(p.global_name, self.values[pname])
        present = obj.globals()
        for gname, value in self.targets.globals().items():
            if value and gname in present:
                obj.set_global(gname, value)
        for mname, mp in obj.maps.items():
            if m.maps.get(mname) == "ncpu":
                mp.set_max_entries(num_possible_cpus())
        return obj

    def attach(self) -> None:
        """Load and attach the first hook alternative this kernel accepts."""
        t0 = time.perf_counter()
        self.symbols = {n: str(self.params.get(n, p.default or "")) for n, p in self.manifest.params.items()
                        if p.type in TARGET_TYPES}
        old = self.manifest.too_old(symbols=self.symbols)
        if old:
            self.attempts.append({"hook": "any", "reason": old})
            raise ProbeUnavailable(self.name, self.attempts)
        if self.manifest.userspace:
            return self._start_userspace(t0)
        self.values = resolve_params(self.manifest, self.params)
        if not features.btf():   # every probe of the library is CO-RE
            self.attempts.append({"hook": "any", "reason": features.btf().reason})
            raise ProbeUnavailable(self.name, self.attempts)
        for i, alt in enumerate(self.manifest.hooks):
            if alt.kind == "tracepoint":
                ensure_tracefs(self.notes)
            why = refusal(alt, self.symbols)
            if why is not None:
                self.attempts.append({"hook": alt.kind, "reason": why})
                continue
            obj = None
            try:
                obj = self._open(i)
                obj.load()
                self._fill_focus(obj)
                for pname, target in alt.targets(self.symbols).items():
                    prog = obj.programs[pname]
                    if prog.kind == "iter":
                        link = prog.attach_iter()
                    elif prog.kind in ("kprobe", "kretprobe"):
                        link = prog.attach_kprobe(target, retprobe=prog.kind == "kretprobe")
                    elif prog.kind in ("uprobe", "uretprobe"):
                        binary, _, func = target.rpartition(":")
                        link = prog.attach_uprobe(binary, func, retprobe=prog.kind == "uretprobe")
                    elif prog.kind == "perf_event":
                        # one sampling event per online CPU, at the probe's `freq` (its link
                        # owns the event's fd and closes it on detach)
                        self.links += self._attach_sampling(prog, target)
                        continue
                    else:
                        link = prog.attach()
                    self.links.append(f"{link.kind}:{link.target}")
            except BpfError as e:
                self.attempts.append({"hook": alt.kind, "reason": e.detail()})
                self.links.clear()
                if obj is not None:
                    obj.close()
                continue
            self.obj, self.hook = obj, alt.kind
            self.attached_at = time.monotonic()
            self.attach_ms = (time.perf_counter() - t0) * 1000
            mod = importlib.import_module(f".collectors.{self.manifest.collector}", __package__)
            self.collector = mod.Collector()
            self.collector.start(self)
            return
        raise ProbeUnavailable(self.name, self.attempts)

    def _fill_focus(self, obj: BpfObject) -> None:
        """The node's focus into the object's TID set (before anything is attached)."""
        if not self.targets.tids:
            return
        if "targ_tids" not in obj.maps or "targ_tids_on" not in obj.globals():
            raise BpfError(f"{self.name}: its object has no focus filter (targ_tids, probes/common.h)", 95)
        m = obj.maps["targ_tids"]
        for tid in self.targets.tids:
            m.update(int(tid).to_bytes(4, "little"), b"\1")

    def _attach_sampling(self, prog: Any, target: str) -> list[str]:
        from ..bpf.perf import online_cpus, open_cpu_clock
        if target != "cpu-clock":
            raise BpfError(f"perf_event target {target!r}: only cpu-clock sampling is supported", 22)
        out = []
        for cpu in online_cpus():
            fd = open_cpu_clock(cpu, self.values.get("freq") or 49)
            try:
                link = prog.attach_perf_event(fd, target=f"cpu-clock/cpu{cpu}")
            except BpfError:
                os.close(fd)
                raise
            out.append(f"{link.kind}:{link.target}")
        return out

    def _start_userspace(self, t0: float) -> None:
        self.values = resolve_params(self.manifest, self.params)
        self.hook = "procfs"
        self.attached_at = time.monotonic()
        mod = importlib.import_module(f".collectors.{self.manifest.collector}", __package__)
        self.collector = mod.Collector()
        try:
            self.collector.start(self)
        except OSError as e:
            self.collector = None
            self.attempts.append({"hook": "procfs", "reason": str(e)})
            raise ProbeUnavailable(self.name, self.attempts) from e
        self.attach_ms = (time.perf_counter() - t0) * 1000

    def stats(self) -> dict[str, int]:
        """Events seen and records dropped, summed over CPUs (the overhead guard's input)."""
        if self.obj is None or "probe_stats" not in self.obj.maps:
            return {"events": 0, "drops": 0}
        vals = self.obj.maps["probe_stats"].lookup(0) or []
        ev = dr = 0
        for v in vals if isinstance(vals, list) else [vals]:
            ev += int.from_bytes(v[0:8], "little")
            dr += int.from_bytes(v[8:16], "little")
        return {"events": ev, "drops": dr}

    def pause(self) -> None:
        """Stop observing: every link that runs on events is detached (the probe stops
        costing anything), the maps and an iterator's link stay, so what was gathered can
        still be read and a snapshot still taken."""
        if self.obj is not None:
            self.obj.detach(keep_iterators=True)
        if not self.detached_ns:
            self.stop_observing()

    def detach_for_guard(self, why: dict[str, Any]) -> None:
        """Detach every link (the probe stops costing anything) but keep the maps, so the
        evidence gathered so far can still be read."""
        if self.obj is not None:
            self.obj.detach()
        self.guard = {**why, "after_s": round(self.stop_observing(), 3)}

    def collect(self) -> dict[str, Any]:
        """The evidence gathered since attach, as plain JSON-able data."""
        assert self.collector is not None and (self.obj is not None or self.manifest.userspace)
        ev = self.collector.finish(self)
        ev["probe"] = {"name": self.name, "hook": self.hook, "attempts": list(self.attempts),
                       "observed_s": round(self.observed_s(), 3), **self.stats(),
                       "detached_by_guard": self.guard}
        return ev

    def close(self) -> None:
        if self.obj is not None:
            self.obj.close()
            self.obj = None


def try_attach(manifest: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Attach a library probe for real and detach it at once: the hook the kernel took and
    the alternatives it refused first, or why none attached."""
    inst = ProbeInstance(manifest, params)
    try:
        inst.attach()
        return {"hook": inst.hook, "fallbacks": [a["hook"] for a in inst.attempts]}
    except ProbeUnavailable as e:
        return {"hook": None, "why": e.why}
    except Exception as e:  # noqa: BLE001 - the check says what happened
        return {"hook": None, "why": f"{type(e).__name__}: {e}"}
    finally:
        inst.close()
