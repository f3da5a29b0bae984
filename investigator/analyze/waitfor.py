"""Wait-for graphs: "X waits for Y" edges from any source (user-space mutex owners, kernel
lock owners, ...) searched for cycles with networkx.  A cycle is a deadlock candidate;
whether it is one (it persisted and nobody in it ran) is for the caller to say."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_CYCLES = 20
STACK_FRAMES = 16


@dataclass(frozen=True)
class Edge:
    waiter: int           # tid
    holder: int           # tid
    lock: str             # the lock's identity, e.g. "pthread_mutex 0x55d5...a0"
    kind: str


def cycles(edges: list[Edge]) -> list[list[Edge]]:
    """Every elementary cycle of the wait-for graph (at most MAX_CYCLES), each as the list of
    its edges in order, starting from its smallest tid (a stable order)."""
    import networkx as nx

    g = nx.DiGraph()
    by_pair: dict[tuple[int, int], Edge] = {}
    for e in edges:
        if e.waiter == e.holder:
            continue
        g.add_edge(e.waiter, e.holder)
        by_pair.setdefault((e.waiter, e.holder), e)
    out = []
    for cyc in nx.simple_cycles(g):
        i = cyc.index(min(cyc))
        cyc = cyc[i:] + cyc[:i]
        out.append([by_pair[(cyc[k], cyc[(k + 1) % len(cyc)])] for k in range(len(cyc))])
        if len(out) >= MAX_CYCLES:
            break
    out.sort(key=lambda c: (len(c), [e.waiter for e in c]))
    return out


# --- the node's wait-for graph, across probes ------------------------------------------
# Every probe whose evidence has ``edges`` (user.futex: pthread mutex owners, lock.contention:
# kernel lock owners, sched.blocked: task->blocker owners, file.locks: flock/POSIX holders)
# contributes "waiter waits for holder" edges; rules see the merged graph as ``waitfor.*``.
# Cycles may cross layers (a flock holder waiting on a mutex held by the flock waiter).

ALIAS = "waitfor"
FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("edges_count", "int", "", "Wait-for edges from every probe of the node."),
    ("sources", "list", "", "The evidence names (probes) that gave edges."),
    ("cycles_count", "int", "", "Cycles in the merged graph."),
    ("stuck_cycles_count", "int", "", "Cycles whose every wait was stuck through the window (deadlocks)."),
    ("cycles", "list", "", "Up to 20 cycles: size, stuck, tasks, locks, cycle (tids)."),
    ("deadlock.size", "int", "", "Tasks in the first stuck cycle (0: none)."),
    ("deadlock.stuck", "bool", "", "Every wait of it was stuck."),
    ("deadlock.blocked_s", "float", "s", "The shortest time any of its waits was seen stuck."),
    ("deadlock.tasks", "list", "", "Its tasks (tid, pid, comm, role waiter, waits_for and holds: lock names, stack when recorded)."),
    ("deadlock.locks", "list", "", "Its locks in cycle order: lock, kind, source, waiter_tid, waiter_comm, holder_tid, holder_comm."),
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


def _entities(obj: Any, out: dict[int, dict[str, Any]], depth: int = 0) -> None:
    """tid -> {tid, pid, comm, ...} from every task-like dict in the evidence (bounded walk)."""
    if depth > 6:
        return
    if isinstance(obj, dict):
        tid = obj.get("tid")
        if isinstance(tid, int) and tid > 0 and obj.get("comm"):
            cur = out.setdefault(tid, {"tid": tid, "pid": obj.get("pid", tid), "comm": obj["comm"]})
            for k in ("state", "wchan"):
                if obj.get(k) and k not in cur:
                    cur[k] = obj[k]
            st = obj.get("stack")
            if st and isinstance(st, list) and all(isinstance(f, str) for f in st[:1]) and "stack" not in cur:
                cur["stack"] = st[:STACK_FRAMES]
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


def _lock_row(e: dict[str, Any], who: dict[int, dict[str, Any]]) -> dict[str, Any]:
    return {"lock": e["lock"], "addr": e["lock"].split()[-1] if e["lock"] else "", "kind": e.get("kind", ""),
            "source": e["source"],
            "waiter_tid": e["waiter"], "waiter_comm": who.get(e["waiter"], {}).get("comm", ""),
            "holder_tid": e["holder"], "holder_comm": who.get(e["holder"], {}).get("comm", "")}


def _ent(tid: int, who: dict[int, dict[str, Any]], role: str, waits_for: str = "",
         holds: str = "") -> dict[str, Any]:
    """A task of a cycle or chain: who, the lock it waits for and the one it holds (the
    lock the previous task waits for), and its stack when a probe recorded one."""
    w = who.get(tid, {})
    e = {"tid": tid, "pid": w.get("pid", tid), "comm": w.get("comm", ""), "role": role,
         "waits_for": waits_for, "holds": holds}
    if w.get("stack"):
        e["stack"] = w["stack"]
    return e


def empty_analysis() -> dict[str, Any]:
    return {"edges_count": 0, "sources": [], "cycles_count": 0, "stuck_cycles_count": 0, "cycles": [],
            "deadlock": {"size": 0, "stuck": False, "blocked_s": 0.0, "tasks": [], "locks": [], "cycle": [],
                         "cpus": []},
            "chain": {"length": 0, "tasks": [], "locks": [], "terminal": {"tid": 0, "comm": "", "wchan": "", "state": "", "doing": ""},
                      "cpus": []}}


def analyze(env: dict[str, Any]) -> dict[str, Any]:
    """The merged wait-for graph of a node's evidence: cycles (deadlock when stuck) and the
    longest stuck chain ending in a task that waits for nothing traced."""
    out = empty_analysis()
    raw: list[dict[str, Any]] = []
    for alias, ev in env.items():
        if alias == ALIAS or not isinstance(ev, dict) or not isinstance(ev.get("edges"), list):
            continue
        out["sources"].append(alias)
        # bundles recorded before edges carried "stuck": the source's waiter says it
        waiters = {w["tid"]: w for w in ev.get("waiters") or [] if isinstance(w, dict) and isinstance(w.get("tid"), int)}
        for e in ev["edges"]:
            if isinstance(e, dict) and isinstance(e.get("waiter"), int) and isinstance(e.get("holder"), int):
                if "stuck" not in e and e["waiter"] in waiters:
                    w = waiters[e["waiter"]]
                    e = {**e, "stuck": bool(w.get("stuck")), "waited_s": w.get("blocked_s", 0.0)}
                raw.append({**e, "source": alias, "stuck": bool(e.get("stuck")),
                            "waited_s": float(e.get("waited_s") or 0.0)})
    who: dict[int, dict[str, Any]] = {}
    _entities(env, who)
    out["edges_count"] = len(raw)
    edges = [Edge(e["waiter"], e["holder"], e.get("lock", ""), e.get("kind", "")) for e in raw]
    by_pair = {(e["waiter"], e["holder"]): e for e in raw}
    found = []
    for cyc in cycles(edges):
        waits = [by_pair[(e.waiter, e.holder)] for e in cyc]
        found.append({"size": len(cyc), "stuck": all(w["stuck"] for w in waits),
                      "blocked_s": min(w["waited_s"] for w in waits),
                      "tasks": [_ent(w["waiter"], who, "waiter", w["lock"], waits[i - 1]["lock"])
                                for i, w in enumerate(waits)],
                      "locks": [_lock_row(w, who) for w in waits],
                      "cycle": [w["waiter"] for w in waits], "cpus": []})
    found.sort(key=lambda c: (not c["stuck"], -c["blocked_s"]))
    out["cycles"] = found
    out["cycles_count"] = len(found)
    out["stuck_cycles_count"] = sum(1 for c in found if c["stuck"])
    if found and found[0]["stuck"]:
        out["deadlock"] = found[0]
    # chains: from each stuck waiter, follow stuck edges while they lead somewhere new
    nxt = {e["waiter"]: e for e in raw if e["stuck"]}
    in_cycle = {t for c in found for t in c["cycle"]}
    best: list[dict[str, Any]] = []
    for start in sorted(nxt):
        if start in in_cycle:
            continue
        path, seen, cur = [], {start}, start
        while cur in nxt and len(path) < 32:
            e = nxt[cur]
            path.append(e)
            cur = e["holder"]
            if cur in seen:
                break
            seen.add(cur)
        if len(path) > len(best):
            best = path
    if best:
        tids = [e["waiter"] for e in best] + [best[-1]["holder"]]
        term = who.get(tids[-1], {})
        out["chain"] = {"length": len(best),
                        "tasks": [_ent(t, who, "waiter", best[i]["lock"], best[i - 1]["lock"] if i else "")
                                  for i, t in enumerate(tids[:-1])] +
                                 [_ent(tids[-1], who, "holder", "", best[-1]["lock"])],
                        "locks": [_lock_row(e, who) for e in best],
                        "terminal": {"tid": tids[-1], "comm": term.get("comm", ""), "wchan": term.get("wchan", ""),
                                     "state": term.get("state", ""), "doing": _doing(term)},
                        "cpus": []}
    return out

