"""The playbook as a networkx DiGraph: validation (references, reachability, cycles),
ordering, and rendering (Mermaid, DOT, text)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import networkx as nx

    from .schema import Playbook

START = "(start)"


def build_graph(pb: Playbook) -> nx.DiGraph:
    """Nodes carry their hypothesis; edges carry the outcome or rule that leads there, and
    what they pass to a focused node (the roles of the finding's tasks it is aimed at)."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_node(START, start=True)
    for nid, node in pb.nodes.items():
        g.add_node(nid, hypothesis=node.hypothesis, max_visits=node.max_visits)
    for nid in adjacency(pb)[START]:
        g.add_edge(START, nid, label="start")
    for nid, node in pb.nodes.items():
        for nxt, label in node.successors():
            if nxt in pb.nodes:
                _add(g, nid, nxt, label)
    for nid, node in pb.nodes.items():     # what an edge passes to a focused node
        f = node.focus
        for src in f.sources() if f is not None else []:
            if g.has_edge(src, nid):
                passes = [r.about for r in pb.nodes[src].route if nid in r.next and r.about]
                what = f"{passes[0].strip()}'s" if passes else "its"
                whose = f"the cgroup of {what} {'/'.join(f.tasks)}" if f.cgroup else f"{what} {'/'.join(f.tasks)}"
                g.edges[src, nid]["label"] += f" (focus: {whose})"
    return g


def _add(g: Any, a: str, b: str, label: str) -> None:
    if g.has_edge(a, b):
        labels = g.edges[a, b]["label"].split(", ")
        if label not in labels:
            g.edges[a, b]["label"] = ", ".join(labels + [label])
    else:
        g.add_edge(a, b, label=label)


def adjacency(pb: Playbook) -> dict[str, list[str]]:
    """Each node's successors (known nodes only), START's being the start nodes: what the
    checks below walk, without building the networkx graph (validation on the run path)."""
    adj = {START: [n for n in pb.start if n in pb.nodes]}
    for nid, node in pb.nodes.items():
        adj[nid] = list(dict.fromkeys(nxt for nxt, _ in node.successors() if nxt in pb.nodes))
    return adj


def unreachable(pb: Playbook) -> list[str]:
    adj = adjacency(pb)
    seen, todo = {START}, [START]
    while todo:
        for b in adj[todo.pop()]:
            if b not in seen:
                seen.add(b)
                todo.append(b)
    return [n for n in adj if n not in seen]


def unbounded_cycles(pb: Playbook, limit: int = 20) -> list[list[str]]:
    """Cycles in which no node sets max_visits > 1 (they could never be re-entered, which
    is almost certainly a mistake; a bound makes the loop explicit): the cycles closed by
    the back edges of a depth-first walk among the nodes without a bound -- every such
    cycle contains one, so none is missed, at most ``limit`` reported."""
    free = {n for n, node in pb.nodes.items() if node.max_visits <= 1}
    adj = {n: [b for b in succ if b in free] for n, succ in adjacency(pb).items() if n in free}
    out: list[list[str]] = []
    state: dict[str, int] = {}          # 1: on the walk's path, 2: done
    for root in adj:
        if root in state:
            continue
        path, its = [root], [iter(adj[root])]
        state[root] = 1
        while path and len(out) < limit:
            b = next(its[-1], None)
            if b is None:
                state[path.pop()] = 2
                its.pop()
            elif state.get(b) == 1:
                out.append(path[path.index(b):])
            elif b not in state:
                state[b] = 1
                path.append(b)
                its.append(iter(adj[b]))
    return out


def order(g: nx.DiGraph) -> list[str]:
    """Nodes in the order an investigation would first reach them (breadth-first)."""
    import networkx as nx
    return [n for n in nx.bfs_tree(g, START) if n != START]


def render(g: nx.DiGraph, fmt: str) -> str:
    nodes = [n for n in g.nodes if n != START]
    if fmt == "mermaid":
        ids = {n: f"n{i}" for i, n in enumerate(nodes)}
        ids[START] = "start"
        lines = ["flowchart TD", "  start((start))"]
        for n in nodes:
            hyp = g.nodes[n].get("hypothesis", "").replace('"', "'")
            lines.append(f'  {ids[n]}["{n}<br/><small>{hyp}</small>"]')
        for a, b, d in g.edges(data=True):
            lab = d.get("label", "")
            lines.append(f"  {ids[a]} -->|{lab}| {ids[b]}" if lab and lab != "start" else f"  {ids[a]} --> {ids[b]}")
        return "\n".join(lines) + "\n"
    if fmt == "dot":
        def q(s: str) -> str:
            return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines = ["digraph playbook {", "  rankdir=TB;", f"  {q(START)} [shape=circle];"]
        for n in nodes:
            lines.append(f"  {q(n)} [shape=box, tooltip={q(g.nodes[n].get('hypothesis', ''))}];")
        for a, b, d in g.edges(data=True):
            lines.append(f"  {q(a)} -> {q(b)} [label={q(d.get('label', ''))}];")
        return "\n".join(lines + ["}"]) + "\n"
    # text: an indented tree from the start, each node once
    out: list[str] = []
    seen: set[str] = set()

    def walk(n: str, depth: int, label: str) -> None:
        prefix = "  " * depth + (f"--{label}--> " if label and label != "start" else "")
        if n in seen:
            out.append(f"{prefix}{n} (see above)")
            return
        seen.add(n)
        out.append(f"{prefix}{n}: {g.nodes[n].get('hypothesis', '')}")
        for _, b, d in g.out_edges(n, data=True):
            walk(b, depth + 1, d.get("label", ""))

    for _, b, d in g.out_edges(START, data=True):
        walk(b, 0, "")
    out.append("")
    out.append("order of first visit: " + ", ".join(order(g)))
    return "\n".join(out) + "\n"
