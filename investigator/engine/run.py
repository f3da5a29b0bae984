"""Walk a playbook's graph.

Nodes start as soon as they are ready: their probes are attached (each distinct probe +
parameters + targets once, shared by every running node that needs it), they observe for
their own window, and conclude when it closes; their successors start right then while
other nodes keep observing.  A probe is detached when the last node using it concludes,
and everything is detached on every exit path.

Interrupts (SIGINT, SIGTERM, SIGHUP) end the run early: nodes still observing are
concluded on what they gathered so far, marked interrupted, and the report says
``complete: false``.
"""

from __future__ import annotations

import os
import platform
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from ..evidence.events import EventLog
from ..playbook.load import LoadedPlaybook
from ..probes.instance import ProbeInstance, ProbeUnavailable, Targets
from ..result import NodeResult, RunOutcome
from ..rules import focus
from .guard import DEFAULT_MAX_OVERHEAD_PERCENT, OverheadGuard


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class RunOptions:
    window_s: float | None = None      # every node's window (a node's own shorter one stays)
    max_time_s: float = 600.0          # total budget for the run
    targets: Targets = field(default_factory=Targets)
    bundle: Any = None                 # evidence.writer.BundleWriter: takes the event log
    btf: str | None = None             # a BTF file of the running kernel (--btf), absolute
    max_overhead_percent: float = DEFAULT_MAX_OVERHEAD_PERCENT
    on_event: Callable[[str, dict[str, Any]], None] | None = None
    # the CLI keeps SIGINT/SIGTERM/SIGHUP ignored after the run: the report and the bundle
    # that follow must not be cut by a second signal
    restore_signals: bool = True


@dataclass
class NodeRun(NodeResult):
    """A node while the engine runs it: its result so far (status ``pending``, then
    ``observing``), its probe instances and monotonic times; ``result()`` is what the
    report reads."""

    started_at: float = 0.0
    ended_at: float = 0.0
    next: list[str] = field(default_factory=list)
    insts: list[tuple[str, ProbeInstance]] = field(default_factory=list, repr=False)

    def result(self) -> NodeResult:
        observed = max(0.0, self.ended_at - self.started_at) if self.started_at else 0.0
        return NodeResult(**{**{f.name: getattr(self, f.name) for f in fields(NodeResult)}, "observed_s": observed})


def kernel_info() -> dict[str, Any]:
    from ..bpf import features, version
    info: dict[str, Any] = {"release": platform.release(), "machine": platform.machine(),
                            "btf": bool(features.btf())}
    try:
        info["libbpf"] = version()
    except Exception as e:  # pragma: no cover - reported, not fatal
        info["libbpf"] = f"unavailable: {e}"
    return info


SLOW_ATTACH_S = 5.0     # a probe still loading after this long is reported, with where it waits


def _load_cost(manifest: Any) -> int:
    """What loading a probe's object costs, roughly (its size: the verifier's work grows
    with the instructions it holds), to start the costliest first."""
    try:
        return manifest.object_path.stat().st_size
    except OSError:
        return 0


class _Pool:
    """Probe instances keyed by (probe, parameters, targets): each attached once, shared by
    every running node that needs it, detached when the last of them concludes."""

    def __init__(self, events: EventLog, targets: Targets) -> None:
        self.events = events
        self.targets = targets
        self.instances: dict[tuple[Any, ...], ProbeInstance] = {}
        self.users: dict[tuple[Any, ...], set[str]] = {}
        self._ready: dict[tuple[Any, ...], tuple[ProbeInstance, ProbeInstance | Exception]] = {}
        self.loading: list[str] = []      # probes whose load or attach is under way
        self._announced: set[tuple[Any, ...]] = set()   # ready, and told so (probe_ready)

    @staticmethod
    def key(name: str, params: dict[str, Any], targets: Targets) -> tuple[Any, ...]:
        return (name, tuple(sorted((k, str(v)) for k, v in params.items())), targets.key())

    def acquire(self, manifest: Any, use: Any, node: str,
                targets: Targets | None = None) -> ProbeInstance | ProbeUnavailable:
        """The probe instance of a node's probe entry, with the run's targets or a focused
        node's own (``targets``): shared with the running nodes that have the same."""
        params = use.with_
        targets = targets or self.targets
        if use.bpftrace is not None:     # a program of this node's own: never shared
            return self._acquire_bpftrace(manifest, use.bpftrace, node)
        k = self.key(manifest.name, params, targets)
        if k in self.instances:
            inst = self.instances[k]
            self.events.emit("probe_shared", node=node, probe=manifest.name, hook=inst.hook,
                             with_nodes=sorted(self.users[k]))
            self.users[k].add(node)
            return inst
        self.events.emit("probe_attaching", node=node, probe=manifest.name)
        try:
            if k in self._ready:
                inst, res = self._ready.pop(k)
                if isinstance(res, Exception):
                    raise res
            else:
                inst = ProbeInstance(manifest, params, targets)
                inst.attach()
        except ProbeUnavailable as e:
            self.events.emit("probe_unavailable", node=node, probe=manifest.name, reason=str(e),
                             attempts=e.attempts)
            return e
        except (OSError, ValueError, KeyError) as e:
            inst.close()
            err = ProbeUnavailable(manifest.name, inst.attempts + [{"hook": inst.hook or "?", "reason": str(e)}])
            self.events.emit("probe_unavailable", node=node, probe=manifest.name, reason=str(err))
            return err
        self.events.emit("probe_attached", node=node, probe=manifest.name, hook=inst.hook,
                         links=inst.links, attach_ms=round(inst.attach_ms, 2), fallbacks=inst.attempts,
                         notes=inst.notes, announced=k in self._announced)
        self._announced.discard(k)
        self.instances[k] = inst
        self.users[k] = {node}
        return inst

    def _acquire_bpftrace(self, manifest: Any, program: str, node: str) -> Any:
        from ..probes.bpftrace import BpftraceInstance
        inst = BpftraceInstance(manifest, program, node)
        self.events.emit("probe_attaching", node=node, probe="bpftrace")
        try:
            inst.attach()
        except ProbeUnavailable as e:
            self.events.emit("probe_unavailable", node=node, probe="bpftrace", reason=str(e), attempts=e.attempts)
            return e
        self.events.emit("probe_attached", node=node, probe="bpftrace", hook="bpftrace", links=inst.links,
                         attach_ms=round(inst.attach_ms, 2), fallbacks=[], notes=inst.notes)
        k = ("bpftrace", node, program)
        self.instances[k] = inst  # type: ignore[assignment]
        self.users[k] = {node}
        return inst

    def preattach(self, wanted: list[tuple[Any, ...]]) -> None:
        """Load and attach the distinct library probes that ready nodes are about to
        acquire, each announced (``probe_ready``) the moment it is attached.  BPF objects
        load in parallel threads, the costliest first (most of a load is the kernel
        verifier, which runs with the GIL released: two objects verify at once on two
        CPUs); the /proc readers start after them, in this thread.  Results wait in
        ``_ready`` for ``acquire``.  The threads are daemons, waited for only here: an
        interrupt while the kernel holds a load (it cannot be cancelled) leaves that thread
        behind and goes on to the partial report."""
        todo: dict[tuple[Any, ...], ProbeInstance] = {}
        first_node: dict[tuple[Any, ...], str] = {}
        for manifest, use, targets, nid in wanted:
            if use.bpftrace is not None:
                continue
            k = self.key(manifest.name, use.with_, targets)
            if k not in self.instances and k not in self._ready and k not in todo:
                todo[k] = ProbeInstance(manifest, use.with_, targets)
                first_node[k] = nid
        if not todo:
            return
        threads: dict[tuple[Any, ...], int] = {}
        results: dict[tuple[Any, ...], ProbeInstance | Exception] = {}
        queue = sorted((k for k in todo if not todo[k].manifest.userspace),
                       key=lambda k: -_load_cost(todo[k].manifest))
        lock = threading.Lock()
        done = threading.Condition(lock)

        def attach(k: tuple[Any, ...]) -> ProbeInstance | Exception:
            inst = todo[k]
            try:
                inst.attach()
                return inst
            except (ProbeUnavailable, OSError, ValueError, KeyError) as e:
                inst.close()
                return e
            except BaseException as e:     # never lose a result: the waiter would wait on
                return RuntimeError(f"{type(e).__name__}: {e}")

        def worker() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    k = queue.pop(0)
                    threads[k] = threading.get_native_id()
                res = attach(k)
                with lock:
                    results[k] = res
                    done.notify_all()
        for _ in range(min(len(queue), os.cpu_count() or 2)):
            threading.Thread(target=worker, name="attach", daemon=True).start()
        self.loading = [i.name for i in todo.values()]
        announced: set[tuple[Any, ...]] = set()
        self._watch_slow(results, threads, todo, done,
                         lambda k: self._announce(k, results[k], first_node[k], announced),
                         [k for k in todo if todo[k].manifest.userspace])
        # the /proc readers last: each takes its first reading when it starts, and the loads'
        # own CPU (seconds of it on a slow machine) must not fall inside what they measure
        for k in todo:
            if todo[k].manifest.userspace:
                results[k] = attach(k)
                self._announce(k, results[k], first_node[k], announced)
        self.loading = []
        for k in todo:
            self._ready[k] = (todo[k], results[k])
        from ..bpf._lib import trim_heap
        trim_heap()

    def _announce(self, k: tuple[Any, ...], res: ProbeInstance | Exception, node: str,
                  announced: set[tuple[Any, ...]]) -> None:
        if k in announced:
            return
        announced.add(k)
        if isinstance(res, ProbeInstance):
            self._announced.add(k)
            self.events.emit("probe_ready", node=node, probe=res.name, hook=res.hook,
                             attach_ms=round(res.attach_ms, 2), fallbacks=res.attempts)

    def _watch_slow(self, results: dict[tuple[Any, ...], Any], threads: dict[tuple[Any, ...], int],
                    todo: dict[tuple[Any, ...], ProbeInstance], done: threading.Condition,
                    arrived: Any, later: list[tuple[Any, ...]]) -> None:
        """Wait for the loads, handing each result to ``arrived`` as it comes; one the
        kernel holds for SLOW_ATTACH_S is reported with where the kernel holds its thread
        (a load or attach cannot be cancelled, but the person waiting learns why:
        synchronize_rcu in expand_files was the one met)."""
        from ..system.procfs import kernel_stack, status
        t0, told = time.monotonic(), set()
        while True:
            with done:
                pending = [k for k in todo if k not in results and k not in later]
                if pending:
                    done.wait(timeout=0.5)
                came = list(results)
                pending = [k for k in todo if k not in results and k not in later]
                running = {k: threads[k] for k in pending if k in threads}
            for k in came:
                arrived(k)
            if not pending:
                return
            self.loading = [todo[k].name for k in pending]
            waited = time.monotonic() - t0
            if waited < SLOW_ATTACH_S:
                continue
            for k in pending:
                if k not in told and k in running:
                    told.add(k)
                    state = status(running[k]).get("State", "").split(" ")[0]
                    self.events.emit("probe_attach_slow", probe=todo[k].name, after_s=round(waited, 1),
                                     state=state, kernel_stack=kernel_stack(running[k], 8))

    def release(self, inst: ProbeInstance, node: str) -> None:
        for k, i in list(self.instances.items()):
            if i is inst:
                self.users[k].discard(node)
                if not self.users[k]:
                    inst.close()
                    del self.instances[k], self.users[k]
                    self.events.emit("probe_detached", probe=inst.name, last_node=node)
                return

    def pause_all(self) -> None:
        """Every attached probe stops observing (``ProbeInstance.pause``)."""
        for inst in self.instances.values():
            inst.pause()
        for inst, _ in self._ready.values():
            inst.close()
        self._ready.clear()

    def close_all(self) -> None:
        for inst in self.instances.values():
            inst.close()
        for inst, _ in self._ready.values():
            inst.close()
        self.instances.clear()
        self.users.clear()
        self._ready.clear()


class _Walk:
    """One investigation's walk of the graph (see the module's docstring)."""

    def __init__(self, lp: LoadedPlaybook, opts: RunOptions, events: EventLog) -> None:
        self.lp, self.opts, self.events = lp, opts, events
        self.t_start = time.monotonic()
        self.deadline = self.t_start + opts.max_time_s
        self.pool = _Pool(events, opts.targets)
        self.done: list[NodeRun] = []
        self.active: list[NodeRun] = []
        self.visits: dict[str, int] = {}
        self.ready: list[str] = list(dict.fromkeys(lp.spec.start))
        self.reached: dict[str, list[str]] = {}     # node -> the nodes whose outcomes started it
        self.deferred: list[str] = []   # focused nodes reached before a source could aim them
        self.timings: dict[str, float] = {}
        self.guard = OverheadGuard(opts.max_overhead_percent)

    def run(self) -> None:
        while True:
            while self.ready or self.active:
                self._preattach()
                while self.ready:
                    self._start(self.ready.pop(0))
                if "attached_s" not in self.timings and self.active:
                    self._first_attached()
                if not self.active:
                    continue
                nr = min(self.active, key=lambda n: n.started_at + n.window_s)
                self._observe_until(nr.started_at + nr.window_s)
                self.active.remove(nr)
                self._conclude(nr)
            # reached while the nodes that could aim them were still at work, which then did
            # not lead there: started (or skipped for want of a finding) now
            late = [nid for nid in self.deferred if not self.visits.get(nid)]
            self.deferred.clear()
            if not late:
                return
            self.ready.extend(late)

    def _preattach(self) -> None:
        wanted = []
        for nid in self.ready:
            node = self.lp.spec.nodes[nid]
            if any(n.id == nid for n in self.active) or self.visits.get(nid, 0) >= node.max_visits:
                continue
            targets = self.pool.targets
            if node.focus is not None:      # aimed as _start will aim it, from the same nodes
                f = focus.resolve(node.focus, list(self.done), nid)
                if not f or not f["tids"]:
                    continue
                targets, _ = self._aim(f)
            for use in node.probes:
                alias = use.as_ or self.lp.alias_of(nid, use.use)
                wanted.append((self.lp.probes[nid][alias], use, targets, nid))
        self.pool.preattach(wanted)

    def _observe_until(self, t: float) -> None:
        """Sleep until t, letting the overhead guard look at the probes meanwhile."""
        while True:
            self.guard.check(list(self.pool.instances.values()), self.events.emit)
            left = t - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))

    def _first_attached(self) -> None:
        from ..system.procfs import seconds_since_exec
        self.timings["attached_s"] = round(time.monotonic() - self.t_start, 4)
        self.timings["launch_to_attached_s"] = round(seconds_since_exec(), 3)
        self.events.emit("first_attached", nodes=[n.id for n in self.active],
                         since_launch_s=self.timings["launch_to_attached_s"])
        if self.opts.bundle is not None:
            self.events.start_sink(self.opts.bundle.event_line)

    def _start(self, nid: str) -> None:
        lp = self.lp
        node = lp.spec.nodes[nid]
        if any(n.id == nid for n in self.active):
            return  # already observing: its conclusion serves both paths
        if node.focus is not None and self.visits.get(nid, 0) < node.max_visits:
            f = focus.resolve(node.focus, list(self.done), nid)
            if not f["tids"] and focus.pending(node.focus, [n.id for n in self.active] + self.ready):
                if nid not in self.deferred:    # a source still at work may aim it
                    self.deferred.append(nid)
                return
        self.visits[nid] = self.visits.get(nid, 0) + 1
        if self.visits[nid] > node.max_visits:
            self.events.emit("node_skipped", node=nid, reason=f"already visited {node.max_visits} time(s) "
                                                              "(max_visits)")
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.done.append(NodeRun(nid, node.hypothesis, 0, status="skipped", visit=self.visits[nid],
                                     errors=["the run's time budget (--max-time) was used up"]))
            self.events.emit("node_skipped", node=nid, reason="max-time")
            return
        win = lp.window_ns(node) / 1e9
        if self.opts.window_s is not None:     # a node's own shorter window (a first look) stays
            win = min(win, self.opts.window_s) if node.observe.window is not None else self.opts.window_s
        nr = NodeRun(nid, node.hypothesis, max(0.0, min(win, left)), visit=self.visits[nid],
                     reached_from=self.reached.pop(nid, []))
        targets = self.pool.targets
        if node.focus is not None:
            nr.focus = focus.resolve(node.focus, list(self.done), nid)
            if not nr.focus["tids"]:
                nr.status, nr.errors = "skipped", [focus.unresolved(nr.focus)]
                self.done.append(nr)
                self.events.emit("node_skipped", node=nid, reason=nr.errors[0])
                return
            targets, why = self._aim(nr.focus)
            if why:
                nr.focus["cgroup_not_used"] = why
        self.events.emit("node_started", node=nid, hypothesis=nr.hypothesis, window_s=nr.window_s,
                         visit=nr.visit, reached_from=nr.reached_from,
                         focus=nr.focus["tids"][:32] if nr.focus else None,
                         **({"focus_cgroup": nr.focus["cgroup"]} if nr.focus and nr.focus.get("cgroup") else {}))
        for use in node.probes:
            alias = use.as_ or lp.alias_of(nid, use.use)
            m = lp.probes[nid][alias]
            inst = self.pool.acquire(m, use, nid, targets)
            if isinstance(inst, ProbeUnavailable):
                nr.probes.append({"probe": m.name, "as": alias, "hook": None, "error": str(inst),
                                  "attempts": inst.attempts, "optional": use.optional})
            else:
                nr.insts.append((alias, inst))
                nr.probes.append({"probe": m.name, "as": alias, "hook": inst.hook,
                                  "attach_ms": round(inst.attach_ms, 2), "attempts": inst.attempts,
                                  "links": inst.links, "notes": inst.notes})
        nr.started_at = time.monotonic()
        from ..rules.conclude import attach_errors
        nr.errors, unobservable = attach_errors(lp, nid, nr.probes)
        if unobservable:
            self._release(nr)
            nr.ended_at = nr.started_at
            _conclude(lp, nr, self.events)
            self.done.append(nr)
            self._follow(nr)
            return
        nr.status = "observing"
        self.active.append(nr)

    def _aim(self, f: dict[str, Any]) -> tuple[Targets, str | None]:
        """The targets of a node aimed at a focus (rules/focus.py): its tasks, or for a focus on
        their cgroup that cgroup's subtree -- when it is a cgroup v2 folder inside the run's
        --cgroup; else the tasks, and why not the cgroup."""
        base = self.pool.targets
        if "cgroup" not in f:
            return base.focused(f["tids"]), None
        if not f["cgroup"]:
            return base.focused(f["tids"]), "none of the focus's tasks has a known cgroup"
        from ..system.procfs import cgroup2_subtree
        try:
            cg_id, level = cgroup2_subtree(f["cgroup"], (base.cgroup_id, base.cgroup_level))
        except (ValueError, OSError) as e:
            return base.focused(f["tids"]), f"watching the tasks, not cgroup {f['cgroup']}: {e}"
        return base.in_cgroup(cg_id, level), None

    def _release(self, nr: NodeRun) -> None:
        for _, inst in nr.insts:
            self.pool.release(inst, nr.id)
        nr.insts.clear()

    def _conclude(self, nr: NodeRun, interrupted: bool = False) -> None:
        nr.interrupted = interrupted
        try:
            _conclude(self.lp, nr, self.events)
        finally:
            self._release(nr)
        self.done.append(nr)
        if not interrupted:
            self._follow(nr)

    def _follow(self, nr: NodeRun) -> None:
        for nxt in nr.next:
            if nr.id not in self.reached.setdefault(nxt, []):
                self.reached[nxt].append(nr.id)
            if nxt not in self.ready:
                self.ready.append(nxt)

    def interrupt(self, signal_at: float, signal_name: str) -> None:
        """Stop at once: every probe's event hooks first (nothing keeps costing the machine
        while the nodes conclude and the report is written), then each running node
        concludes on what its probes gathered until then."""
        self.pool.pause_all()
        self.timings["detached_s"] = round(time.monotonic() - self.t_start, 4)
        self.events.emit("interrupted", signal=signal_name)
        self.events.emit("probes_detached", probes=sorted({i.name for i in self.pool.instances.values()}),
                         after_signal_ms=round((time.monotonic() - signal_at) * 1000, 1))
        for nr in list(self.active):
            self.active.remove(nr)
            self._conclude(nr, interrupted=True)
        loading = ", ".join(self.pool.loading)
        waiting = self.ready + [n for n in self.deferred if not self.visits.get(n)]
        self.deferred.clear()
        for nid in dict.fromkeys(waiting):      # ready, but interrupted before they started
            why = "interrupted before its probes were attached" + (f" ({loading} still loading)" if loading else "")
            self.done.append(NodeRun(nid, self.lp.spec.nodes[nid].hypothesis, 0, status="skipped",
                                     interrupted=True, errors=[why]))
        self.ready.clear()


def run_playbook(lp: LoadedPlaybook, opts: RunOptions, events: EventLog | None = None) -> RunOutcome:
    if lp.custom and not lp.custom_allowed:     # loaded to be read (replay, test), not to run
        raise PermissionError(f"{lp.custom[0]}: a bpftrace program runs only with --allow-custom-probes")
    events = events or EventLog()
    if opts.on_event:
        events.listeners.append(opts.on_event)
    if opts.btf:
        from ..bpf import features
        features.use_custom_btf(opts.btf)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    interrupted_by: str | None = None
    kernel = kernel_info()

    raising = [True]        # a signal raises Interrupted only while the walk runs

    signal_at = [0.0]

    def on_signal(signum: int, _frame: Any) -> None:
        if raising[0]:
            signal_at[0] = time.monotonic()
            raise Interrupted(signum)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, on_signal) for s in signals}
    walk = _Walk(lp, opts, events)
    try:
        events.emit("run_started", playbook=lp.name, start=list(walk.ready), kernel=kernel)
        try:
            walk.run()
        except Interrupted as e:
            raising[0] = False  # a second signal while concluding must not lose the partial report
            interrupted_by = str(e)
            walk.interrupt(signal_at[0] or time.monotonic(), interrupted_by)
    finally:
        raising[0] = False
        for s in signals:
            signal.signal(s, signal.SIG_IGN)
        walk.pool.close_all()
        walk.timings.setdefault("detached_s", round(time.monotonic() - walk.t_start, 4))
        from ..system import mounts
        made = mounts.undo()
        if opts.restore_signals:
            for s, h in old.items():
                signal.signal(s, h)
    duration = time.monotonic() - walk.t_start
    for m in made:
        events.emit("unmounted" if m["unmounted"] else "unmount_failed", **m)
    events.emit("run_finished", duration_s=round(duration, 3), complete=interrupted_by is None)
    return RunOutcome(lp.name, [n.result() for n in walk.done], started_at, duration, interrupted_by is None,
                      kernel, interrupted_by, walk.timings, walk.guard.tripped, dict(lp.spec.vars), made)


def _conclude(lp: LoadedPlaybook, nr: NodeRun, events: EventLog) -> None:
    """Read the node's probes into its evidence (each failure recorded on its probe's
    record), then conclude it through rules/conclude.py's ``conclude_node``, as replay does."""
    from ..rules.conclude import conclude_node

    env: dict[str, Any] = {}
    records = {r["as"]: r for r in nr.probes if r.get("error") is None}
    if nr.insts:
        for alias, inst in nr.insts:
            rec = records[alias]
            rec["read_error"], rec["guard"] = None, dict(inst.guard) if inst.guard else None
            try:
                env[alias] = inst.collect()
            except Exception as e:  # a probe that cannot be read degrades the node, not the run
                rec["read_error"] = f"{type(e).__name__}: {e}"
        nr.ended_at = time.monotonic()
        events.emit("window_closed", node=nr.id, observed_s=round(nr.ended_at - nr.started_at, 3),
                    probes={a: e.get("probe") for a, e in env.items()})
    nr.evidence = env
    c = conclude_node(lp, nr.id, env, nr.probes, nr.interrupted, nr.focus)
    nr.status, nr.verdict, nr.rule, nr.confidence = c.status, c.verdict, c.rule, c.confidence
    nr.summary, nr.about, nr.values, nr.next, nr.errors = c.summary, c.about, c.evidence, c.next, c.errors
    nr.routes = c.routes
    nr.task_cgroups = task_cgroups(c.about, *(r.get("about") for r in c.routes))
    if c.status == "unobservable":
        events.emit("node_concluded", node=nr.id, status="unobservable", reason="; ".join(nr.errors))
        return
    if c.status == "error" and c.verdict is None:
        events.emit("node_concluded", node=nr.id, status="error", errors=nr.errors)
        return
    if c.rule is not None:
        events.emit("rule_fired", node=nr.id, rule=c.rule, verdict=c.verdict, values=c.evidence)
    events.emit("node_concluded", node=nr.id, status=nr.status, verdict=nr.verdict,
                summary=nr.summary, interrupted=nr.interrupted)


def task_cgroups(*findings: Any) -> dict[int, str]:
    """The cgroups of findings' tasks (a verdict's, a route's) that they do not name
    themselves, read from /proc/TID/cgroup now (a task gone by then has none); at most
    finding.MAX_TASKS of them."""
    from ..finding import MAX_TASKS, Finding
    from ..system.cgroups import task_cgroup
    out: dict[int, str] = {}
    for about in findings:
        for t in Finding.from_dict(about).tasks:
            if len(out) >= MAX_TASKS:
                return out
            if t.tid > 0 and not t.cgroup and t.tid not in out:
                path = task_cgroup(t.tid)
                if path is not None:
                    out[t.tid] = path
    return out
