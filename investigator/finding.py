"""What a probe found, as one type: the tasks involved (each with its role), the locks, CPUs,
cgroups and files, the main stack, and the probe's own details.

A collector builds its ``worst`` (the finding a rule points at with ``about:``) as a
:class:`Finding` and stores ``to_dict()`` in the evidence; the report and replay read a rule's
``about`` back with :meth:`Finding.from_dict`, and a follow-up node takes its targets (the
culprit task, the lock, the CPU, the cgroup) from the same fields.  ``to_dict()`` is the
evidence contract: ``details`` first, then ``tasks``, ``locks``, ``cpus``, ``cgroups``,
``files`` and ``stack``.  :func:`workload` names what a task's cgroup path says of it (its
systemd unit, container, pod).  ``from_dict()`` reads untrusted input (a bundle): it never raises,
keeps only values of the right type and bounds every list and string.

This module imports nothing of the project.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

ROLES = ("victim", "culprit", "waiter", "holder", "bystander")
"""The roles a task plays in a finding."""

ENTITY_KEYS = ("tasks", "locks", "cpus", "cgroups", "files", "stack")
"""The keys of a finding's dict that are its entities; every other key is a detail."""

MAX_TASKS = 64          # tasks, locks, cpus, cgroups, files read from one finding
MAX_FRAMES = 32         # frames of a stack read from one finding
MAX_STR = 256           # characters of a string read from one finding
MAX_EXTRA = 16          # extra scalar keys of a task or a lock read from one finding


def _int(x: Any, default: int = 0) -> int:
    """An integer as given (a bool is no integer), else ``default``."""
    return x if type(x) is int else default


def _str(x: Any) -> str:
    """A string as given, clamped; "" for anything else."""
    return x[:MAX_STR] if isinstance(x, str) else ""


def _frames(x: Any) -> list[str]:
    """A stack: its string frames, at most MAX_FRAMES of them."""
    return [_str(f) for f in x[:MAX_FRAMES] if isinstance(f, str)] if isinstance(x, list) else []


def _extra(d: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """The scalar keys of ``d`` beyond ``known`` (bounded), as found: a bundle's finding may
    carry keys that a later version added."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if len(out) >= MAX_EXTRA:
            break
        if not isinstance(k, str) or k in known:
            continue
        if isinstance(v, str):
            out[k[:MAX_STR]] = _str(v)
        elif v is None or isinstance(v, (bool, int, float)):
            out[k[:MAX_STR]] = v
    return out


def rt_priority(prio: int) -> int:
    """The SCHED_FIFO/RR priority of a kernel priority (0 for a task that is not real-time)."""
    return 99 - prio if 0 <= prio < 100 else 0


@dataclass
class Task:
    """A task of a finding: who (``tid``, ``pid``, ``comm``), its ``role`` (one of ROLES), and
    what the probe knows of it: scheduler priority and policy, state letter, wait channel,
    kernel stack, cgroup, the lock it waits for and the one it holds (a wait-for cycle's or
    chain's task).  Fields left at None (or empty) are not in the dict."""

    tid: int
    pid: int
    comm: str
    role: str = "bystander"
    prio: int | None = None
    policy: str | None = None
    state: str | None = None
    wchan: str | None = None
    stack: list[str] | None = None
    cgroup: str | None = None
    waits_for: str | None = None
    holds: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    _KNOWN = ("tid", "pid", "comm", "role", "prio", "rt_priority", "policy", "state", "wchan", "stack",
              "cgroup", "waits_for", "holds")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"tid": self.tid, "pid": self.pid, "comm": self.comm}
        if self.prio is not None:
            d["prio"] = self.prio
            d["rt_priority"] = rt_priority(self.prio)
        if self.policy is not None:
            d["policy"] = self.policy
        d["role"] = self.role
        for k in ("waits_for", "holds", "state", "wchan", "cgroup"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        if self.stack is not None:
            d["stack"] = self.stack
        d.update(self.extra)
        return d

    @classmethod
    def of(cls, entity: dict[str, Any], role: str) -> Task:
        """The task a collector's entity dict names (its ``tid``, ``pid``, ``comm``), in a role."""
        return cls(entity["tid"], entity["pid"], entity["comm"], role)

    @classmethod
    def from_dict(cls, d: Any) -> Task | None:
        """A task from a finding's dict; None when it is no dict.  A missing or malformed
        tid or pid reads as 0, a role outside ROLES as its string (bounded)."""
        if not isinstance(d, dict):
            return None

        def opt(k: str) -> str | None:
            return _str(d[k]) if isinstance(d.get(k), str) else None

        return cls(tid=_int(d.get("tid")), pid=_int(d.get("pid")), comm=_str(d.get("comm")),
                   role=_str(d.get("role")) or "bystander",
                   prio=d["prio"] if type(d.get("prio")) is int else None, policy=opt("policy"),
                   state=opt("state"), wchan=opt("wchan"),
                   stack=_frames(d["stack"]) if isinstance(d.get("stack"), list) else None,
                   cgroup=opt("cgroup"), waits_for=opt("waits_for"), holds=opt("holds"),
                   extra=_extra(d, cls._KNOWN))


@dataclass
class Lock:
    """A lock of a finding: its ``kind`` (mutex, rwsem, futex, flock, ...), address (hex, or a
    probe's own key), symbol name when static, and the tids of its holder and of the waiter
    the finding is about (0: not known); ``extra`` keeps what a probe adds (its source, the
    wait-for edge's label)."""

    kind: str
    addr: str
    name: str = ""
    holder_tid: int = 0
    waiter_tid: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    _KNOWN = ("kind", "addr", "name", "holder_tid", "waiter_tid")

    def to_dict(self) -> dict[str, Any]:
        return {"addr": self.addr, "kind": self.kind, "name": self.name, "holder_tid": self.holder_tid,
                "waiter_tid": self.waiter_tid, **self.extra}

    @classmethod
    def from_dict(cls, d: Any) -> Lock | None:
        if not isinstance(d, dict):
            return None
        return cls(kind=_str(d.get("kind")), addr=_str(d.get("addr")), name=_str(d.get("name")),
                   holder_tid=_int(d.get("holder_tid")), waiter_tid=_int(d.get("waiter_tid")),
                   extra=_extra(d, cls._KNOWN))


@dataclass
class Finding:
    """One finding of a probe (or of the wait-for analysis): its entities and its
    ``details`` -- the probe's own fields (durations as the probe names them:
    ``blocked_s``, ``wait_ms``, ``delay_ms``; the victim and culprit as plain entities;
    counts), which rules read by name."""

    tasks: list[Task] = field(default_factory=list)
    locks: list[Lock] = field(default_factory=list)
    cpus: list[int] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    stack: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def empty(cls, **details: Any) -> Finding:
        """No finding: no entities, and the probe's details at their zero values (so that a
        rule reading ``worst.blocked_s`` on a quiet machine reads 0, never a missing key)."""
        return cls(details=details)

    def task(self, role: str) -> Task | None:
        """The first task of a role (the victim, the culprit, the holder), or None."""
        return next((t for t in self.tasks if t.role == role), None)

    def to_dict(self) -> dict[str, Any]:
        return {**self.details, "tasks": [t.to_dict() for t in self.tasks],
                "locks": [lk.to_dict() for lk in self.locks], "cpus": list(self.cpus),
                "cgroups": list(self.cgroups), "files": list(self.files), "stack": list(self.stack)}

    @classmethod
    def from_dict(cls, d: Any) -> Finding:
        """A finding from its dict (a rule's ``about``, a bundle's evidence): entities of the
        wrong type are left out, lists are cut at MAX_TASKS, stacks at MAX_FRAMES; the keys
        that are no entity are the details, as given.  Anything but a dict is no finding."""
        if not isinstance(d, dict):
            return cls()

        def items(k: str) -> list[Any]:
            v = d.get(k)
            return v[:MAX_TASKS] if isinstance(v, list) else []

        return cls(tasks=[t for t in map(Task.from_dict, items("tasks")) if t],
                   locks=[lk for lk in map(Lock.from_dict, items("locks")) if lk],
                   cpus=[c for c in items("cpus") if type(c) is int and c >= 0],
                   cgroups=[_str(c) for c in items("cgroups") if isinstance(c, str)],
                   files=[_str(f) for f in items("files") if isinstance(f, str)],
                   stack=_frames(d.get("stack")),
                   details={k: v for k, v in d.items() if k not in ENTITY_KEYS})


MAX_DEPTH = 64           # folders of a cgroup path looked at
_ID = re.compile(r"[0-9a-f]{64}")
# systemd scopes that container runtimes create, by prefix: the container is the rest
# (CRI's container id); "-conmon-" scopes hold the runtime's monitor, not the container
_RUNTIME_SCOPES = (("docker-", "docker"), ("cri-containerd-", "containerd"), ("crio-", "cri-o"),
                   ("libpod-", "podman"))
_POD = re.compile(r"(?:kubepods-(?:besteffort-|burstable-|guaranteed-)?)?pod([0-9a-f_-]{32,36})(?:\.slice)?")


def _container(p: str, parent: str, depth: int) -> str | None:
    """The container one folder of a cgroup path names, if it names one."""
    name = p[:-len(".scope")] if p.endswith(".scope") else p
    for prefix, runtime in _RUNTIME_SCOPES:
        if name.startswith(prefix) and _ID.fullmatch(name[len(prefix):]):
            return f"{runtime}://{name[len(prefix):]}"
    if _ID.fullmatch(p) and depth:              # cgroupfs drivers: the id under its runtime's folder
        runtime = {"docker": "docker", "libpod_parent": "podman"}.get(parent)
        return f"{runtime}://{p}" if runtime else p
    if p.startswith("lxc.payload.") and len(p) > len("lxc.payload."):
        return f"lxc://{p[len('lxc.payload.'):]}"
    if parent == "lxc" and depth == 1:
        return f"lxc://{p}"
    if parent == "machine.slice" and p.startswith("machine-") and p.endswith(".scope"):
        return f"machine://{p[len('machine-'):-len('.scope')]}"
    if p.startswith("systemd-nspawn@") and p.endswith(".service"):
        return f"machine://{p[len('systemd-nspawn@'):-len('.service')]}"
    return None


def workload(path: str) -> dict[str, str]:
    """What a cgroup path says of the workload that runs in it, where it says so: the
    systemd ``unit`` (the innermost .service or .scope), the ``container`` (RUNTIME://ID as
    Kubernetes names container ids; an LXC or systemd-nspawn container by its name), the
    Kubernetes ``pod`` (its UID).  Read from the path alone, in the layouts of systemd,
    docker, containerd, CRI-O, podman, the kubelet with either cgroup driver, LXC and
    machined: a folder named like theirs says the same."""
    out: dict[str, str] = {}
    parts = [p for p in (path or "").split("/") if p][:MAX_DEPTH]
    for i in range(len(parts) - 1, -1, -1):
        p, parent = parts[i], parts[i - 1] if i else ""
        if "unit" not in out and p.endswith((".service", ".scope")):
            out["unit"] = p
        if "container" not in out:
            c = _container(p, parent, i)
            if c:
                out["container"] = c
        if "pod" not in out and any(x.startswith("kubepods") for x in parts[:i]):
            m = _POD.fullmatch(p)
            if m:
                out["pod"] = m.group(1).replace("_", "-")
    return out
