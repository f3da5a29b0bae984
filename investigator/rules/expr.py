"""Safe rule expressions: CEL (the Common Expression Language Kubernetes uses for
validation rules), never Python eval.

Implementation: PyPI ``common-expression-language`` (Rust ``cel-interpreter`` behind
PyO3).  Chosen over the pure-Python ``cel-python`` for evaluation speed, parse errors with
positions, and static listing of referenced variables.  Its package ``__init__`` also
imports an interactive CLI (prompt_toolkit, typer: ~115 ms); we load only the compiled
extension module (~10 ms) and fall back to the package import if that fails.

CEL has no loops or side effects and every expression here runs over bounded evidence,
so evaluation is bounded; expressions longer than MAX_LEN are refused.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
from functools import lru_cache
from typing import Any

MAX_LEN = 2000
MAX_MACRO_DEPTH = 3     # list macros nested deeper than this could cost len(list)**depth
MACROS = ("all", "exists", "exists_one", "map", "filter")


class ExprError(ValueError):
    """An expression does not parse or cannot be evaluated; ``col`` is 1-based when known."""

    def __init__(self, message: str, col: int | None = None) -> None:
        super().__init__(message)
        self.col = col


@lru_cache(maxsize=1)
def _cel() -> Any:
    spec = importlib.util.find_spec("cel")
    if spec is not None and spec.submodule_search_locations:
        for d in spec.submodule_search_locations:
            import glob
            for so in glob.glob(f"{d}/cel.*.so"):
                try:
                    loader = importlib.machinery.ExtensionFileLoader("cel.cel", so)
                    s = importlib.util.spec_from_file_location("cel.cel", so, loader=loader)
                    assert s is not None
                    mod = importlib.util.module_from_spec(s)
                    loader.exec_module(mod)
                    return mod
                except (ImportError, AssertionError):
                    break
    import cel  # pragma: no cover - fallback
    return cel


_POS = re.compile(r"<input>:(\d+):(\d+): (.*?)(?:\n|$)")


class Expr:
    """A compiled CEL expression."""

    def __init__(self, source: str) -> None:
        if len(source) > MAX_LEN:
            raise ExprError(f"expression longer than {MAX_LEN} characters")
        depth = macro_depth(source)
        if depth > MAX_MACRO_DEPTH:
            raise ExprError(f"list macros ({', '.join(MACROS)}) nested {depth} deep; at most "
                            f"{MAX_MACRO_DEPTH}, so that evaluation stays cheap")
        self.source = source
        try:
            self._prog = _cel().compile(source)
        except (ValueError, RuntimeError) as e:
            m = _POS.search(str(e))
            if m:
                raise ExprError(f"expression does not parse: {m.group(3)}", int(m.group(2))) from None
            raise ExprError(f"expression does not parse: {e}") from None
        except BaseException as e:  # pyo3 panics surface as PanicException (BaseException)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            raise ExprError(f"expression does not parse: {e}") from None

    def evaluate(self, env: dict[str, Any]) -> Any:
        try:
            return self._prog.execute(env)
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise ExprError(f"cannot evaluate '{self.source}': {type(e).__name__}: {e}") from None
        except BaseException as e:
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            raise ExprError(f"cannot evaluate '{self.source}': {e}") from None

    def references(self) -> list[tuple[str, int]]:
        """Dotted evidence paths the expression reads, with their 1-based column:
        ``runq.worst.victim.tid`` -> [("runq.worst.victim.tid", col)].  Method calls and
        names bound by macros (``tasks.exists(t, t.stuck)``) are left out."""
        return references(self.source)


_TOKEN = re.compile(r"""
    (?P<str>[rRbB]*("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'))
  | (?P<path>(?<![\w.])[A-Za-z_]\w*(?:\s*\.\s*[A-Za-z_]\w*)*)
  | (?P<other>.)
""", re.X | re.S)
_BOUND = re.compile(r"\.\s*(?:" + "|".join(MACROS) + r")\s*\(\s*([A-Za-z_]\w*)\s*,")
_KEYWORDS = {"true", "false", "null", "in", "has", "size", "int", "uint", "double", "string",
             "bool", "bytes", "type", "dyn", "duration", "timestamp", "matches", "max", "min"}


def references(source: str) -> list[tuple[str, int]]:
    bound = set(_BOUND.findall(source))
    out = []
    for m in _TOKEN.finditer(source):
        path = m.group("path")
        if not path:
            continue
        parts = [p.strip() for p in path.split(".")]
        rest = source[m.end():].lstrip()
        if rest.startswith("("):          # f(...) or x.method(...)
            parts = parts[:-1]
        if not parts or parts[0] in bound or parts[0] in _KEYWORDS:
            continue
        out.append((".".join(parts), m.start() + 1))
    return out


_MACRO_CALL = re.compile(r"\.\s*(?:" + "|".join(MACROS) + r")\s*\(\Z")


def macro_depth(source: str) -> int:
    """How deeply list macros nest (strings skipped)."""
    stack: list[bool] = []
    depth = best = 0
    i = 0
    while i < len(source):
        ch = source[i]
        if ch in "\"'":
            j = i + 1
            while j < len(source) and source[j] != ch:
                j += 2 if source[j] == "\\" else 1
            i = j + 1
            continue
        if ch == "(":
            is_macro = bool(_MACRO_CALL.search(source[max(0, i - 40):i + 1]))
            stack.append(is_macro)
            depth += is_macro
            best = max(best, depth)
        elif ch == ")" and stack:
            depth -= stack.pop()
        i += 1
    return best


def truthy(value: Any) -> bool:
    """A rule holds only on a real boolean true (CEL is typed: 1 is not true)."""
    return value is True


if __name__ == "__main__":  # pragma: no cover
    print(Expr(sys.argv[1]).evaluate({}))
