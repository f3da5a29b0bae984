"""Wait-for graphs: "X waits for Y" edges from every probe that sees waits (user-space mutex
owners, kernel lock owners, file-lock holders, FUSE daemons) merged into one graph and
searched for cycles and chains.  A cycle is a deadlock candidate; whether it is one (it
persisted and nobody in it ran) is what each edge's ``stuck`` says.

A probe that sees waits gives, in its evidence, every edge it found (``edges``: nothing cut
for display), the waits it saw but could not give as edges (``edges_dropped``: beyond a
snapshot's record limit, a full map, a scan cap) and a task table (``wait_tasks``: each
task of its edges as tid, pid, comm, state, wchan, stack).  The analysis reads only those."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..finding import Finding, Lock, Task

MAX_CYCLES = 20                 # cycles listed; every cycle of the graph is counted
MAX_CYCLES_PER_SCC = 64         # cycles enumerated in one strongly connected component
MAX_CHAIN = 32                  # waits followed along one chain
STACK_FRAMES = 16
EDGES = "edges"
DROPPED = "edges_dropped"
TASKS = "wait_tasks"


@dataclass(frozen=True)
class Edge:
    """One wait: ``waiter`` (tid) waits for ``holder`` (tid) to release ``lock``."""
    waiter: int
    holder: int
    lock: str               # the lock's identity as shown: kind and address, "pthread_mutex 0x55d5...a0"
    kind: str               # pthread_mutex, pthread_rwlock, pi_futex, mutex, rwsem-read, flock, fuse, ...
    addr: str = ""          # the lock's address (hex), or what stands for one (a file's path)
    waited_s: float = 0.0   # how long the waiter has waited (or not run), as far as its probe saw
    stuck: bool = False     # the wait lasted the whole window without the waiter running
    source: str = ""        # the evidence alias of the probe that saw it

    def evidence(self) -> dict[str, Any]:
        """The edge as a probe's evidence lists it."""
        return {"waiter": self.waiter, "holder": self.holder, "lock": self.lock, "kind": self.kind,
                "addr": self.addr, "stuck": self.stuck, "waited_s": round(self.waited_s, 3)}

    @classmethod
    def from_evidence(cls, d: Any, source: str, waiters: dict[int, Any] | None = None) -> Edge | None:
        """An edge read back from evidence (a bundle's: nothing in it is trusted), None when it
        is not one.  ``waiters``: the source's waiter list by tid, whose ``stuck`` and
        ``blocked_s`` stand in for an edge's own in bundles recorded before edges had them."""
        if not isinstance(d, dict):
            return None
        waiter, holder = d.get("waiter"), d.get("holder")
        if type(waiter) is not int or type(holder) is not int or waiter <= 0 or holder <= 0:
            return None
        stuck, waited = d.get("stuck"), d.get("waited_s")
        if stuck is None and waiters and isinstance(waiters.get(waiter), dict):
            stuck, waited = waiters[waiter].get("stuck"), waiters[waiter].get("blocked_s")
        lock, kind, addr = (str(d.get(k) or "") for k in ("lock", "kind", "addr"))
        try:
            waited_s = float(waited or 0.0)
        except (TypeError, ValueError, OverflowError):
            waited_s = 0.0
        return cls(waiter, holder, lock, kind, addr or (lock.split()[-1] if lock else ""),
                   waited_s if waited_s == waited_s else 0.0, bool(stuck), source)


def task_row(tid: int, pid: int, comm: str, state: str = "", wchan: str = "",
             stack: list[str] | None = None, prio: int | None = None, policy: str | None = None) -> dict[str, Any]:
    """A task of a probe's ``wait_tasks`` table (its kernel priority and policy when the
    probe read them: a priority inversion compares the waiter's with its holder's)."""
    row: dict[str, Any] = {"tid": tid, "pid": pid, "comm": comm}
    if prio is not None:
        row["prio"], row["policy"] = prio, policy
    if state:
        row["state"] = state
    if wchan:
        row["wchan"] = wchan
    if stack:
        row["stack"] = stack[:STACK_FRAMES]
    return row


def wait_tasks(rows: Any, edges: list[Edge]) -> list[dict[str, Any]]:
    """The task table of a probe's edges: the rows of the tasks its edges name, each tid
    once (the first row of a tid wins, later ones fill what it lacks)."""
    named = {t for e in edges for t in (e.waiter, e.holder)}
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        if isinstance(r, dict) and r.get("tid") in named:
            _merge(r, out)
    return list(out.values())


def cycles(edges: list[Edge]) -> list[list[Edge]]:
    """The elementary cycles of the wait-for graph, each as the list of its edges in order
    starting from its smallest tid (at most MAX_CYCLES_PER_SCC of each strongly connected
    component: a component's cycles can be exponentially many).  Between two tasks, a stuck
    edge stands for the pair."""
    waiters = {e.waiter for e in edges if e.waiter != e.holder}
    if not any(e.holder in waiters for e in edges if e.waiter != e.holder):
        return []           # no task both waits and is waited for: no cycle (and no networkx)
    import networkx as nx

    g = nx.DiGraph()
    by_pair: dict[tuple[int, int], Edge] = {}
    for e in edges:
        if e.waiter == e.holder:
            continue
        g.add_edge(e.waiter, e.holder)
        cur = by_pair.get((e.waiter, e.holder))
        if cur is None or (e.stuck and not cur.stuck):
            by_pair[(e.waiter, e.holder)] = e
    out = []
    for scc in nx.strongly_connected_components(g):
        if len(scc) < 2:
            continue
        for n, cyc in enumerate(nx.simple_cycles(g.subgraph(scc))):
            if n >= MAX_CYCLES_PER_SCC:
                break
            i = cyc.index(min(cyc))
            cyc = cyc[i:] + cyc[:i]
            out.append([by_pair[(cyc[k], cyc[(k + 1) % len(cyc)])] for k in range(len(cyc))])
    out.sort(key=lambda c: (len(c), [e.waiter for e in c]))
    return out


# --- the node's wait-for graph, across probes ------------------------------------------
# Every probe whose evidence has ``edges`` (user.futex: pthread mutex owners, lock.contention:
# kernel lock owners, sched.blocked: task->blocker owners, file.locks: flock/POSIX holders,
# fuse.requests: the daemon threads a client waits for) contributes its edges; rules see the
# merged graph as ``waitfor.*``.  Cycles may cross layers (a flock holder waiting on a mutex
# held by the flock waiter).

ALIAS = "waitfor"
FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("edges_count", "int", "", "Wait-for edges from every probe of the node."),
    ("edges_dropped", "int", "", "Waits the probes saw but could not give as edges (beyond a snapshot's record limit, a scan cap): when nonzero, the graph may lack a cycle."),
    ("sources", "list", "", "The evidence names (probes) that gave edges."),
    ("cycles_count", "int", "", "Cycles in the merged graph."),
    ("stuck_cycles_count", "int", "", "Cycles whose every wait was stuck through the window (deadlocks)."),
    ("cycles", "list", "", "Up to 20 cycles, stuck ones first: size, stuck, tasks, locks, cycle (tids)."),
    ("deadlock.size", "int", "", "Tasks in the first stuck cycle (0: none)."),
    ("deadlock.stuck", "bool", "", "Every wait of it was stuck."),
    ("deadlock.blocked_s", "float", "s", "The shortest time any of its waits was seen stuck."),
    ("deadlock.tasks", "list", "", "Its tasks (tid, pid, comm, role waiter, waits_for and holds: lock names, stack when recorded)."),
    ("deadlock.locks", "list", "", "Its locks in cycle order: lock, addr, kind, source, waiter_tid, waiter_comm, holder_tid, holder_comm."),
    ("deadlock.cycle", "list", "", "Its tids in cycle order."),
    ("deadlock.cpus", "list", "", "Empty (a deadlock is not tied to a CPU)."),
    ("chain.length", "int", "", "Waits in the longest stuck chain that is not a cycle (0: none)."),
    ("chain.tasks", "list", "", "Its tasks, first waiter to the last holder (role waiter/holder, waits_for, holds, stack)."),
    ("chain.locks", "list", "", "Its locks in order, as in deadlock.locks."),
    ("chain.terminal.tid", "int", "", "The task at the end of the chain, which waits for nothing traced."),
    ("chain.terminal.comm", "str", "", "Its name."),
    ("chain.terminal.wchan", "str", "", "Where it sleeps, when a probe of the node listed it (else empty)."),
    ("chain.terminal.state", "str", "", "Its state letter (R, S, D, T), when a probe of the node listed it."),
    ("chain.terminal.doing", "str", "", "What it does, in words: \"sleeping in pipe_write\", \"running\", \"stopped (state T)\"."),
    ("chain.cpus", "list", "", "Empty."),
)


def _merge(obj: dict[str, Any], out: dict[int, dict[str, Any]]) -> None:
    """A task-like dict into the tid -> {tid, pid, comm, state, wchan, prio, policy, stack} table: the
    first dict of a tid names it, later ones fill what it lacks (only values of the right
    type are taken: the dict may come from a bundle)."""
    tid = obj.get("tid")
    if type(tid) is not int or tid <= 0 or not obj.get("comm"):
        return
    pid = obj.get("pid")
    cur = out.setdefault(tid, {"tid": tid, "pid": pid if type(pid) is int else tid, "comm": str(obj["comm"])})
    for k in ("state", "wchan", "policy"):
        if obj.get(k) and isinstance(obj[k], str) and k not in cur:
            cur[k] = obj[k]
    if type(obj.get("prio")) is int and "prio" not in cur:
        cur["prio"] = obj["prio"]
    st = obj.get("stack")
    if st and isinstance(st, list) and all(isinstance(f, str) for f in st[:STACK_FRAMES]) and "stack" not in cur:
        cur["stack"] = st[:STACK_FRAMES]


def _entities(obj: Any, out: dict[int, dict[str, Any]], depth: int = 0) -> None:
    """Every task-like dict of the evidence into the task table (a bounded walk): for bundles
    recorded before the probes gave a ``wait_tasks`` table."""
    if depth > 6:
        return
    if isinstance(obj, dict):
        _merge(obj, out)
        for v in obj.values():
            if isinstance(v, (dict, list)):
                _entities(v, out, depth + 1)
    elif isinstance(obj, list):
        for v in obj[:500]:
            _entities(v, out, depth + 1)


def _doing(t: dict[str, Any]) -> str:
    """What a task at the end of a chain is doing, in words, from what the probes saw."""
    state, wchan = t.get("state", ""), t.get("wchan", "")
    if state == "R":
        return "running"
    if state in ("T", "t"):
        return "stopped (state T)"
    if wchan:
        return f"sleeping in {wchan}" + (" (D state)" if state == "D" else "")
    if state == "Z":
        return "a zombie"
    return "doing nothing any probe of the node saw"


def _lock(e: Edge, who: dict[int, dict[str, Any]]) -> Lock:
    """An edge's lock: its waiter and holder, with the edge's label and source probe."""
    return Lock(e.kind, e.addr, holder_tid=e.holder, waiter_tid=e.waiter,
                extra={"lock": e.lock, "source": e.source, "waiter_comm": who.get(e.waiter, {}).get("comm", ""),
                       "holder_comm": who.get(e.holder, {}).get("comm", "")})


def _task(tid: int, who: dict[int, dict[str, Any]], role: str, waits_for: str = "", holds: str = "") -> Task:
    """A task of a cycle or chain: who, the lock it waits for and the one it holds (the
    lock the previous task waits for), and its stack when a probe recorded one."""
    w = who.get(tid, {})
    return Task(tid, w.get("pid", tid), w.get("comm", ""), role, waits_for=waits_for, holds=holds,
                prio=w["prio"] if type(w.get("prio")) is int else None,
                policy=w["policy"] if isinstance(w.get("policy"), str) else None,
                stack=w["stack"] if w.get("stack") else None)


def empty_analysis() -> dict[str, Any]:
    return {"edges_count": 0, "edges_dropped": 0, "sources": [], "cycles_count": 0, "stuck_cycles_count": 0,
            "cycles": [],
            "deadlock": Finding.empty(size=0, stuck=False, blocked_s=0.0, cycle=[]).to_dict(),
            "chain": Finding.empty(length=0, terminal={"tid": 0, "comm": "", "wchan": "", "state": "",
                                                       "doing": ""}).to_dict()}


def _gather(env: dict[str, Any]) -> tuple[list[Edge], int, list[str], dict[int, dict[str, Any]]]:
    """Every probe's edges, the waits they dropped, the probes that gave edges, and the task
    table: the probes' ``wait_tasks``, or (a bundle recorded before them) every task-like
    dict of the evidence."""
    edges: list[Edge] = []
    dropped, sources, tables = 0, [], []
    for alias, ev in env.items():
        if alias == ALIAS or not isinstance(ev, dict) or not isinstance(ev.get(EDGES), list):
            continue
        sources.append(alias)
        waiters = {w["tid"]: w for w in ev.get("waiters") or [] if isinstance(w, dict) and type(w.get("tid")) is int}
        edges += [e for e in (Edge.from_evidence(d, alias, waiters) for d in ev[EDGES]) if e]
        n = ev.get(DROPPED)
        dropped += n if type(n) is int and n > 0 else 0
        if isinstance(ev.get(TASKS), list):
            tables.append(ev[TASKS])
    who: dict[int, dict[str, Any]] = {}
    if tables:
        for rows in tables:
            for r in rows:
                if isinstance(r, dict):
                    _merge(r, who)
    else:
        _entities(env, who)
    return edges, dropped, sources, who


def _chain(edges: list[Edge], in_cycle: set[int]) -> list[Edge]:
    """The longest stuck chain: from each stuck waiter not in a cycle, the stuck edges
    followed while they lead somewhere new (MAX_CHAIN at the most); the first longest one
    by waiter tid."""
    nxt = {e.waiter: e for e in edges if e.stuck}
    best: list[Edge] = []
    for start in sorted(nxt):
        if start in in_cycle:
            continue
        path, seen, cur = [], {start}, start
        while cur in nxt and len(path) < MAX_CHAIN:
            e = nxt[cur]
            path.append(e)
            cur = e.holder
            if cur in seen:
                break
            seen.add(cur)
        if len(path) > len(best):
            best = path
            if len(best) >= MAX_CHAIN:
                break
    return best


def has_edges(env: dict[str, Any]) -> bool:
    """Whether a probe of the node's evidence gives wait-for edges (then ``waitfor`` is in it)."""
    return any(isinstance(ev, dict) and EDGES in ev for a, ev in env.items() if a != ALIAS)


def analyze(env: dict[str, Any]) -> dict[str, Any]:
    """The merged wait-for graph of a node's evidence: cycles (deadlock when stuck) and the
    longest stuck chain ending in a task that waits for nothing traced."""
    out = empty_analysis()
    edges, out["edges_dropped"], out["sources"], who = _gather(env)
    out["edges_count"] = len(edges)
    found = []
    for cyc in cycles(edges):
        found.append(Finding(tasks=[_task(w.waiter, who, "waiter", w.lock, cyc[i - 1].lock)
                                    for i, w in enumerate(cyc)],
                             locks=[_lock(w, who) for w in cyc],
                             details={"size": len(cyc), "stuck": all(w.stuck for w in cyc),
                                      "blocked_s": min(w.waited_s for w in cyc),
                                      "cycle": [w.waiter for w in cyc]}).to_dict())
    found.sort(key=lambda c: (not c["stuck"], -c["blocked_s"]))
    out["cycles"] = found[:MAX_CYCLES]
    out["cycles_count"] = len(found)
    out["stuck_cycles_count"] = sum(1 for c in found if c["stuck"])
    if found and found[0]["stuck"]:
        out["deadlock"] = found[0]
    best = _chain(edges, {t for c in found for t in c["cycle"]})
    if best:
        tids = [e.waiter for e in best] + [best[-1].holder]
        term = who.get(tids[-1], {})
        out["chain"] = Finding(
            tasks=[_task(t, who, "waiter", best[i].lock, best[i - 1].lock if i else "")
                   for i, t in enumerate(tids[:-1])] + [_task(tids[-1], who, "holder", "", best[-1].lock)],
            locks=[_lock(e, who) for e in best],
            details={"length": len(best),
                     "terminal": {"tid": tids[-1], "comm": term.get("comm", ""), "wchan": term.get("wchan", ""),
                                  "state": term.get("state", ""), "doing": _doing(term)}}).to_dict()
    return out
