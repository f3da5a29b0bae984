"""Safe rule expressions: CEL (the Common Expression Language Kubernetes uses for
validation rules), never Python eval.

Implementation: PyPI ``common-expression-language`` (Rust ``cel-interpreter`` behind
PyO3).  Chosen over the pure-Python ``cel-python`` for evaluation speed, parse errors with
positions, and static listing of referenced variables.  Its package ``__init__`` also
imports an interactive CLI (prompt_toolkit, typer: ~115 ms); we load only the compiled
extension module (~10 ms) and fall back to the package import if that fails.

Bounds.  CEL has no loops, but its list macros (``all``, ``exists``, ``exists_one``,
``map``, ``filter``) iterate, and nested they multiply: this library takes ~1 µs per inner
step of a nest and copies ``map``'s result on every step (one ``map`` over 10,000 entries:
4 s), so depth 3 over a 4096-entry list would run for hours.  The library offers no parse
tree, and ``execute`` holds the GIL for its whole run: it cannot be interrupted, and a
thread running it stops the rest of the process too.  Hence, in this order:

- the source is read by one lexer (``tokens``: CEL's strings -- raw, triple-quoted, bytes
  --, ``//`` comments, numbers, identifiers, operators) and its brackets parsed into a
  tree (``shape``), on which macro depth is counted exactly (at most MAX_MACRO_DEPTH) and
  from which ``references`` come; integer literals beyond 64 bits are refused there;
- each evaluation sees only the evidence names the expression reads, with every list or
  map in them cut to LIST_CAP entries (``bounded_env``; the cuts are returned so that the
  node can say "rule N saw the first K of M entries of X");
- the cost is estimated before running: tokens x L**(depth + 1) steps, L the largest
  collection the expression can reach (after the cuts) -- an upper bound for this
  library's behaviour (an inner step may touch a whole list: ``x in list``, ``map``'s
  copy).  Over MAX_STEPS the rule is refused without running; up to INLINE_STEPS (well
  under a second) it runs in this thread; in between it runs in a forked child given a
  wall-clock budget (and a CPU-time and memory limit, killed with this process), killed
  when over it.  A rule over budget is that rule's error: the node goes on to its next
  rule, and the run goes on.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

MAX_LEN = 2000
MAX_MACRO_DEPTH = 3     # list macros nested deeper than this could cost len(list)**depth
MACROS = ("all", "exists", "exists_one", "map", "filter")
LIST_CAP = 1024         # entries of any one list or map handed to CEL
INLINE_STEPS = 2_000_000        # estimated steps run in this thread (~0.2 s at worst)
MAX_STEPS = 20_000_000_000      # estimated steps refused without running
BUDGET_S = 2.0                  # wall-clock budget of one evaluation in a child
CHILD_MEMORY = 512 << 20        # address space a child may add to ours
MAX_RESULT = 16 << 20           # bytes of a child's result
INT64_MIN, UINT64_MAX = -(1 << 63), (1 << 64) - 1


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


# --------------------------------------------------------------------------- lexer

@dataclass(frozen=True)
class Token:
    """One lexical token of CEL: ``kind`` is ident, int, uint, float, string, bytes or op;
    ``pos`` its 0-based offset in the source."""
    kind: str
    text: str
    pos: int


_SKIP = re.compile(r"(?:[ \t\n\r\f]+|//[^\n]*)+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+[uU]?|(?:[0-9]+\.[0-9]+|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?[uU]?")
_PREFIX = re.compile(r"(?:[rR][bB]?|[bB][rR]?)?(?=['\"])")
_OPS = ("==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*", "/", "%", "?", ":",
        ".", ",", "(", ")", "[", "]", "{", "}")


def _string_end(source: str, i: int, raw: bool) -> int:
    """Offset just past the string literal whose opening quote is at ``i``."""
    quote = source[i:i + 3] if source[i:i + 3] in ('"""', "'''") else source[i]
    j = i + len(quote)
    while j < len(source):
        if not raw and source[j] == "\\":
            j += 2
            continue
        if source.startswith(quote, j):
            return j + len(quote)
        if len(quote) == 1 and source[j] == "\n":
            break
        j += 1
    raise ExprError("unterminated string", i + 1)


_LEX = re.compile("|".join((
    r"(?P<skip>" + _SKIP.pattern + ")",
    r"(?P<prefix>" + _PREFIX.pattern + ")",
    r"(?P<number>" + _NUMBER.pattern + ")",
    r"(?P<ident>" + _IDENT.pattern + ")",
    r"(?P<op>" + "|".join(re.escape(o) for o in _OPS) + ")")))


def tokens(source: str) -> list[Token]:
    """The tokens of a CEL expression, comments and whitespace left out (CEL's lexical
    grammar: a string may be prefixed r (raw), b (bytes) or both, and triple-quoted)."""
    out: list[Token] = []
    i, n = 0, len(source)
    while i < n:
        m = _LEX.match(source, i)
        if m is None:
            raise ExprError(f"unexpected character {source[i]!r}", i + 1)
        kind = m.lastgroup
        if kind == "skip":
            i = m.end()
        elif kind == "prefix":
            pre = m.group().lower()
            end = _string_end(source, m.end(), raw="r" in pre)
            out.append(Token("bytes" if "b" in pre else "string", source[i:end], i))
            i = end
        elif kind == "number":
            text = m.group()
            kind = "float" if not text[:2].lower() == "0x" and any(c in text for c in ".eE") else \
                "uint" if text[-1] in "uU" else "int"
            if kind != "float":
                digits = text.rstrip("uU")
                value = int(digits, 16) if digits[:2].lower() == "0x" else int(digits)
                # -9223372036854775808 is the negation of 2**63, written as a literal
                if value > (UINT64_MAX if kind == "uint" else -INT64_MIN):
                    raise ExprError(f"integer literal {text} does not fit in 64 bits", i + 1)
            out.append(Token(kind, text, i))
            i = m.end()
        else:
            out.append(Token(str(kind), m.group(), i))
            i = m.end()
    return out


# --------------------------------------------------------------------------- bracket tree

_CLOSE = {"(": ")", "[": "]", "{": "}"}
_KEYWORDS = {"true", "false", "null", "in", "has", "size", "int", "uint", "double", "string",
             "bool", "bytes", "type", "dyn", "duration", "timestamp", "matches", "max", "min"}


@dataclass
class Shape:
    """What the loader and the evaluator need of an expression's structure."""
    tokens: list[Token]
    macros: list[tuple[str, int, int]] = field(default_factory=list)   # (name, depth, 1-based col)
    refs: list[tuple[str, int]] = field(default_factory=list)          # (dotted path, 1-based col)
    literal: int = 0                  # entries of the largest list or map literal

    @property
    def depth(self) -> int:
        """How deeply list macros nest (0: none)."""
        return max((d for _, d, _ in self.macros), default=0)

    def steps(self, largest: int) -> int:
        """Estimated evaluation steps when no collection it reaches is longer than
        ``largest`` (see the module's docstring)."""
        return len(self.tokens) * max(largest, self.literal, 1) ** (self.depth + 1)


def shape(source: str) -> Shape:
    """Tokenize and parse the bracket structure: which calls are list macros and how they
    nest, which names each macro binds and where, and the evidence paths read."""
    toks = tokens(source)
    sh = Shape(toks)
    # open brackets: (closing text, macro?, name the macro binds, entries so far, position)
    stack: list[tuple[str, bool, str | None, int, int]] = []
    depth = 0
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "op" and t.text in _CLOSE:
            is_macro = (t.text == "(" and i >= 2 and toks[i - 1].kind == "ident"
                        and toks[i - 1].text in MACROS and toks[i - 2].text == ".")
            bound = None
            if is_macro and i + 2 < len(toks) and toks[i + 1].kind == "ident" and toks[i + 2].text == ",":
                bound = toks[i + 1].text
            depth += is_macro
            if is_macro:
                sh.macros.append((toks[i - 1].text, depth, toks[i - 1].pos + 1))
            stack.append((_CLOSE[t.text], is_macro, bound, 0, t.pos))
        elif t.kind == "op" and t.text in _CLOSE.values():
            if not stack or stack[-1][0] != t.text:
                raise ExprError(f"unbalanced '{t.text}'", t.pos + 1)
            close, is_macro, _, entries, _ = stack.pop()
            depth -= is_macro
            if close in "]}" and toks[i - 1].text not in "[{":
                sh.literal = max(sh.literal, entries + 1)
        elif t.kind == "op" and t.text == "," and stack:
            stack[-1] = stack[-1][:3] + (stack[-1][3] + 1, stack[-1][4])
        elif t.kind == "ident" and not (i and toks[i - 1].text == "."):
            i = _path(toks, i, {b for _, _, b, _, _ in stack if b}, sh)
            continue
        i += 1
    if stack:
        raise ExprError(f"'{source[stack[-1][4]]}' is never closed", stack[-1][4] + 1)
    return sh


def _path(toks: list[Token], i: int, bound: set[str], sh: Shape) -> int:
    """Read the dotted path starting at token ``i`` into ``sh.refs`` (unless it is a name a
    macro binds here, a keyword or a function); the index of the token after it."""
    parts = [toks[i].text]
    j = i + 1
    while j + 1 < len(toks) and toks[j].text == "." and toks[j + 1].kind == "ident":
        parts.append(toks[j + 1].text)
        j += 2
    if j < len(toks) and toks[j].text == "(":      # f(...) or x.method(...)
        parts = parts[:-1]
    if parts and parts[0] not in bound and parts[0] not in _KEYWORDS:
        sh.refs.append((".".join(parts), toks[i].pos + 1))
    return j


def references(source: str) -> list[tuple[str, int]]:
    """Dotted evidence paths an expression reads, with their 1-based column."""
    return shape(source).refs


def macro_depth(source: str) -> int:
    """How deeply list macros nest, counted on the parse (strings and comments skipped)."""
    return shape(source).depth


# --------------------------------------------------------------------------- evaluation

_POS = re.compile(r"<input>:(\d+):(\d+): (.*?)(?:\n|$)")


class Expr:
    """A compiled CEL expression."""

    def __init__(self, source: str) -> None:
        if len(source) > MAX_LEN:
            raise ExprError(f"expression longer than {MAX_LEN} characters")
        self.shape = shape(source)
        depth = self.shape.depth
        if depth > MAX_MACRO_DEPTH:
            col = next(c for _, d, c in self.shape.macros if d == depth)
            raise ExprError(f"list macros ({', '.join(MACROS)}) nested {depth} deep; at most "
                            f"{MAX_MACRO_DEPTH}, so that evaluation stays cheap", col)
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
        try:
            self._names = set(self._prog.variables())
        except BaseException as e:  # pragma: no cover - the library always lists them
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            self._names = {r.split(".")[0] for r, _ in self.shape.refs}

    def evaluate(self, env: dict[str, Any], budget_s: float = BUDGET_S) -> Any:
        """The value of the expression over ``env`` (bounded as the module docstring says:
        lists cut to LIST_CAP, refused over MAX_STEPS, in a child with ``budget_s`` above
        INLINE_STEPS); ExprError when it cannot be evaluated or is over budget."""
        return self.run(bounded_env({k: v for k, v in env.items() if k in self._names})[0], budget_s)

    def run(self, env: dict[str, Any], budget_s: float = BUDGET_S) -> Any:
        """``evaluate`` over an env already cut by ``bounded_env``."""
        env = {k: v for k, v in env.items() if k in self._names}
        steps = self.shape.steps(_largest(env))
        if steps > MAX_STEPS:
            raise ExprError(f"over budget: about {steps:.1e} steps (macros nested {self.shape.depth} "
                            f"deep over lists of up to {_largest(env)} entries); not evaluated")
        try:
            if steps <= INLINE_STEPS:
                return self._prog.execute(env)
            return _in_child(self._prog, env, budget_s)
        except ExprError as e:
            raise ExprError(f"cannot evaluate '{self.source}': {e}") from None
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise ExprError(f"cannot evaluate '{self.source}': {type(e).__name__}: {e}") from None
        except BaseException as e:
            if isinstance(e, (KeyboardInterrupt, SystemExit)) or type(e).__name__ == "Interrupted":
                raise
            raise ExprError(f"cannot evaluate '{self.source}': {e}") from None

    def references(self) -> list[tuple[str, int]]:
        """Dotted evidence paths the expression reads, with their 1-based column:
        ``runqlat.worst.victim.tid`` -> [("runqlat.worst.victim.tid", col)].  Method calls and
        names bound by macros (``tasks.exists(t, t.stuck)``) are left out."""
        return self.shape.refs


def bounded_env(env: dict[str, Any], cap: int = LIST_CAP) -> tuple[dict[str, Any], list[tuple[str, int, int]]]:
    """``env`` with every list and map inside it cut to its first ``cap`` entries, and the
    cuts made: (dotted path, entries kept, entries there were)."""
    cuts: list[tuple[str, int, int]] = []

    def cut(v: Any, path: str) -> Any:
        if isinstance(v, list):
            if len(v) > cap:
                cuts.append((path, cap, len(v)))
            return [cut(x, f"{path}.{i}") for i, x in enumerate(v[:cap])]
        if isinstance(v, dict):
            items = list(v.items())
            if len(items) > cap:
                cuts.append((path, cap, len(items)))
            return {k: cut(x, f"{path}.{k}") for k, x in items[:cap]}
        return v
    return {k: cut(v, k) for k, v in env.items()}, cuts


def _largest(v: Any) -> int:
    """Entries of the largest list or map in ``v`` (itself included)."""
    best = 0
    todo = [v]
    while todo:
        x = todo.pop()
        if isinstance(x, dict):
            best = max(best, len(x))
            todo.extend(x.values())
        elif isinstance(x, list):
            best = max(best, len(x))
            todo.extend(x)
    return best


def _in_child(prog: Any, env: dict[str, Any], budget_s: float) -> Any:
    """``prog.execute(env)`` in a forked child killed after ``budget_s`` seconds.  The
    child holds no descriptor of ours but its pipe (no BPF object outlives us through it),
    dies with us (PR_SET_PDEATHSIG), may use CHILD_MEMORY more than we do and a CPU time
    just over the budget, and ignores nothing: Ctrl-C ends it with us."""
    import ctypes
    import pickle
    import resource
    import select
    import signal
    import warnings
    libc = ctypes.CDLL(None, use_errno=True)
    vsize = _vsize()
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # fork with threads: the child
        pid = os.fork()                                        # only evaluates and exits
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            libc.prctl(1, signal.SIGKILL)                      # PR_SET_PDEATHSIG
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)                                   # an allocation failure's message
            os.closerange(3, w)
            os.closerange(w + 1, 1 << 20)
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(s, signal.SIG_DFL)
            cpu = int(budget_s) + 2
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
            if vsize:
                resource.setrlimit(resource.RLIMIT_AS, (vsize + CHILD_MEMORY, vsize + CHILD_MEMORY))
            try:
                out = pickle.dumps(("ok", prog.execute(env)))
            except BaseException as e:
                out = pickle.dumps(("error", type(e).__name__, str(e)[:1000]))
            view = memoryview(out)
            while view:
                view = view[os.write(w, view):]
        finally:
            os._exit(0)
    os.close(w)
    data = bytearray()
    deadline = time.monotonic() + budget_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                raise ExprError(f"over its time budget of {budget_s:g} s; stopped")
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_RESULT:
                raise ExprError(f"its value is larger than {MAX_RESULT >> 20} MiB")
    finally:
        os.close(r)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # pragma: no cover
            pass
        _, status = os.waitpid(pid, 0)
    if not data:
        why = f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else "no value"
        raise ExprError(f"the evaluation failed ({why}: over its memory limit of "
                        f"{CHILD_MEMORY >> 20} MiB, or its CPU time)")
    res = pickle.loads(bytes(data))     # written by our own child, from plain values
    if res[0] == "ok":
        return res[1]
    raise ExprError(f"{res[1]}: {res[2]}")


def _vsize() -> int:
    """This process's virtual size in bytes (0 when unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def truthy(value: Any) -> bool:
    """A rule holds only on a real boolean true (CEL is typed: 1 is not true)."""
    return value is True


if __name__ == "__main__":  # pragma: no cover
    print(Expr(sys.argv[1]).evaluate({}))
