"""The import table of docs/architecture.md, from the code.

Reads every module of investigator/ with ``ast`` (imports at any depth, function-level ones
included; those under ``if TYPE_CHECKING:`` are left out: they never run) and groups them by
unit: a package of investigator/ (``probes`` with its ``collectors``) or a top-level module
(``result``, ``cli``).  The page's table between the ``imports:begin`` and ``imports:end``
markers has a hand-written column "may import" (the rule: unit names, or "—" for nothing of
the project, "all" for anything) and a generated one "imports" (what the code does).

    python scripts/imports.py            print the table as the code makes it
    python scripts/imports.py --write    rewrite the page's generated column
    python scripts/imports.py --check    exit 1 when an import crosses the page's rule, a
                                         cycle joins two units, or the column is stale
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "investigator"
PAGE = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- imports:begin -->", "<!-- imports:end -->"
NOTHING = "—"


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports_of(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The modules of the project ``module`` imports (absolute names)."""
    out: set[str] = set()
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _type_checking(node.test):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == PACKAGE:
                out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names)   # from pkg import module
        todo.extend(ast.iter_child_nodes(node))
    return out


def unit_of(module: str, units: set[str]) -> str | None:
    """The unit of a module name (investigator.probes.collectors.lock -> probes)."""
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    return parts[1] if parts[1] in units else None


def module_imports(src: Path) -> dict[str, set[str]]:
    """Every module of the package under ``src`` -> the project modules it imports."""
    out: dict[str, set[str]] = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        name = _module_name(path, src)
        tree = ast.parse(path.read_text(), str(path))
        out[name] = _imports_of(tree, name, path.name == "__init__.py")
    return out


def unit_imports(src: Path = ROOT) -> dict[str, dict[str, set[str]]]:
    """unit -> imported unit -> the importing modules (relative to the package)."""
    mods = module_imports(src)
    units = {m.split(".")[1] for m in mods if "." in m}
    out: dict[str, dict[str, set[str]]] = {u: {} for u in sorted(units)}
    for mod, targets in mods.items():
        u = unit_of(mod, units)
        if u is None:
            continue
        for t in targets:
            v = unit_of(t, units)
            if v is not None and v != u:
                out[u].setdefault(v, set()).add(mod.split(".", 1)[1])
    return out


def read_rules(page: str) -> dict[str, set[str] | None]:
    """The page's "may import" column: unit -> allowed units (None: all)."""
    rules: dict[str, set[str] | None] = {}
    for line in _table(page)[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        unit, may = cells[0].strip("`"), cells[1]
        rules[unit] = None if may == "all" else \
            set() if may == NOTHING else {u.strip().strip("`") for u in may.split(",")}
    return rules


def _table(page: str) -> list[str]:
    if BEGIN not in page or END not in page:
        raise SystemExit(f"{PAGE}: no {BEGIN} ... {END} table")
    return [ln for ln in page.split(BEGIN, 1)[1].split(END, 1)[0].splitlines() if ln.startswith("|")]


def problems(imports: dict[str, dict[str, set[str]]], rules: dict[str, set[str] | None]) -> list[str]:
    """Each import that crosses a rule, each unit without a rule, each cycle of units."""
    out = []
    for unit, targets in imports.items():
        if unit not in rules:
            out.append(f"{unit}: no row in the table of {PAGE.name}")
            continue
        allowed = rules[unit]
        for target, by in sorted(targets.items()):
            if allowed is not None and target not in allowed:
                out.append(f"{unit} imports {target} ({', '.join(sorted(by))}); the page allows "
                           f"{', '.join(sorted(allowed)) or 'nothing of the project'}")
    g = nx.DiGraph((u, v) for u, ts in imports.items() for v in ts)
    for cycle in sorted(nx.simple_cycles(g)):
        i = cycle.index(min(cycle))         # each cycle from its first unit by name
        cycle = cycle[i:] + cycle[:i]
        out.append("import cycle: " + " -> ".join([*cycle, cycle[0]]))
    return out


def render(imports: dict[str, dict[str, set[str]]], rules: dict[str, set[str] | None]) -> str:
    """The table, the rule column as the page has it (empty for a unit it lacks)."""
    lines = ["| unit | may import | imports |", "|---|---|---|"]
    for unit in sorted(set(imports) | set(rules)):
        allowed = rules.get(unit, set())
        may = "all" if allowed is None else ", ".join(f"`{u}`" for u in sorted(allowed)) or NOTHING
        does = ", ".join(f"`{u}`" for u in sorted(imports.get(unit, {}))) or NOTHING
        lines.append(f"| `{unit}` | {may} | {does} |")
    return "\n".join(lines)


def with_table(page: str, table: str) -> str:
    head, rest = page.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str]) -> int:
    page = PAGE.read_text()
    rules = read_rules(page)
    imports = unit_imports()
    table = render(imports, rules)
    if "--write" in argv:
        PAGE.write_text(with_table(page, table))
        return 0
    if "--check" in argv:
        found = problems(imports, rules)
        if with_table(page, table) != page:
            found.append(f"{PAGE}: the imports column is stale (python scripts/imports.py --write)")
        for p in found:
            print(p, file=sys.stderr)
        return 1 if found else 0
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
