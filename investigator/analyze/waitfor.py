"""Wait-for graphs: "X waits for Y" edges from any source (user-space mutex owners, kernel
lock owners, ...) searched for cycles with networkx.  A cycle is a deadlock candidate;
whether it is one (it persisted and nobody in it ran) is for the caller to say."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_CYCLES = 20


@dataclass(frozen=True)
class Edge:
    waiter: int           # tid
    holder: int           # tid
    lock: str             # the lock's identity, e.g. "pthread_mutex 0x55d5...a0"
    kind: str
    info: tuple[tuple[str, Any], ...] = ()


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
