"""YAML -> plain Python data plus the position of every value and key.

Built on PyYAML's composer (the C one when available): nodes keep their marks, so every
later error can point at ``file:line:col``.  Bounded against hostile input: file size,
nesting depth and the number of nodes after alias expansion (YAML bombs).

Numbers are YAML 1.2's where YAML 1.1 differs dangerously: a sexagesimal scalar
(``1:59:59``, base 60 in YAML 1.1) is never read as a number -- PyYAML's conversion of
one is quadratic in its length -- and is refused unless quoted; an integer must fit in 64
bits (signed or unsigned), checked before it is converted, so that no rule or JSON writer
later meets a number it cannot hold.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from .diagnostics import Diagnostic, PlaybookError

Path = tuple[Any, ...]
MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000

INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1     # int64 to uint64
_INT_CHARS = 80                                  # 0b + 64 binary digits + separators
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_INT_TAG, _FLOAT_TAG, _STR_TAG = ("tag:yaml.org,2002:" + t for t in ("int", "float", "str"))

try:
    _Base: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Base = yaml.SafeLoader


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """PyYAML's safe loader with implicit int and float resolvers that do not read a
    sexagesimal scalar as a number (it stays a string, refused by ``Located._scalar``)."""


# PyYAML's own int and float patterns, without their base-60 alternatives
_NUMBER_PATTERNS = {
    _INT_TAG: re.compile(r"""^(?:[-+]?0b[0-1_]+
                             |[-+]?0[0-7_]+
                             |[-+]?(?:0|[1-9][0-9_]*)
                             |[-+]?0x[0-9a-fA-F_]+)$""", re.X),
    _FLOAT_TAG: re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                               |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                               |[-+]?\.(?:inf|Inf|INF)
                               |\.(?:nan|NaN|NAN))$""", re.X),
}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, _NUMBER_PATTERNS.get(tag, rx)) for tag, rx in resolvers]
    for first, resolvers in _Base.yaml_implicit_resolvers.items()}


class Located:
    """The data of a YAML document with positions: ``pos[path]`` for values,
    ``keypos[path]`` for mapping keys (path of the value they introduce)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.pos: dict[Path, tuple[int, int]] = {}
        self.keypos: dict[Path, tuple[int, int]] = {}
        self.diagnostics: list[Diagnostic] = []
        self._nodes = 0

    def at(self, path: Path, key: bool = False) -> tuple[int, int]:
        """Position of the value (or key) at path, else of its nearest located parent."""
        table = self.keypos if key else self.pos
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if not key and p in self.keypos:
                return self.keypos[p]
            p = p[:-1]
        return self.pos.get((), (1, 1))

    def _refuse(self, node: yaml.Node, message: str) -> None:
        self.diagnostics.append(Diagnostic(self.file, node.start_mark.line + 1, node.start_mark.column + 1,
                                           message))

    def error(self, path: Path, message: str, key: bool = False, severity: str = "error") -> None:
        line, col = self.at(path, key)
        self.diagnostics.append(Diagnostic(self.file, line, col, message, severity))

    def _convert(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _TooBig(node, f"more than {MAX_NODES} YAML nodes (alias expansion?)")
        if depth > MAX_DEPTH:
            raise _TooBig(node, f"nested deeper than {MAX_DEPTH} levels")
        self.pos[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                if knode.tag == "tag:yaml.org,2002:merge":
                    raise _TooBig(knode, "YAML merge keys (<<) are not supported in playbooks")
                key = self._scalar(knode)
                if not isinstance(key, (str, int, float, bool)) or isinstance(knode, (yaml.MappingNode, yaml.SequenceNode)):
                    raise _TooBig(knode, "mapping keys must be plain scalars")
                kpath = path + (key,)
                if key in out:
                    self.keypos[kpath] = (knode.start_mark.line + 1, knode.start_mark.column + 1)
                    self.error(kpath, f"duplicate key '{key}'", key=True)
                    continue
                self.keypos[kpath] = (knode.start_mark.line + 1, knode.start_mark.column + 1)
                out[key] = self._convert(vnode, kpath, depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(v, path + (i,), depth + 1) for i, v in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return node  # reported by the caller
        number = node.tag in (_INT_TAG, _FLOAT_TAG)
        if (number or (node.tag == _STR_TAG and not node.style)) and _SEXAGESIMAL.fullmatch(node.value):
            self._refuse(node, f"'{node.value[:40]}' is a YAML 1.1 base-60 number: write it in decimal, "
                               "or quote it if it is text")
            return node.value
        if node.tag == _INT_TAG:
            digits = node.value.replace("_", "").lstrip("+-")
            value = None if len(digits) > _INT_CHARS else _construct(node)
            if not isinstance(value, int) or not INT_MIN <= value <= INT_MAX:
                self._refuse(node, f"integer {node.value[:40]}{'...' if len(node.value) > 40 else ''} "
                                   "does not fit in 64 bits")
                return 0
            return value
        # YAML 1.2 booleans: only true/false (YAML 1.1's on/off/yes/no would turn the
        # edge key `on:` into True)
        if node.tag == "tag:yaml.org,2002:bool" and node.value.lower() not in ("true", "false"):
            return node.value
        return _Loader.construct_scalar_value(node) if hasattr(_Loader, "construct_scalar_value") \
            else _construct(node)


class _TooBig(Exception):
    def __init__(self, node: yaml.Node, msg: str) -> None:
        self.node, self.msg = node, msg


_constructor = yaml.SafeLoader("")  # only its construct_object, for scalars


def _construct(node: yaml.ScalarNode) -> Any:
    return _constructor.construct_object(node, deep=False)


def load(text: str | bytes, file: str) -> tuple[Any, Located]:
    """Parse one YAML document; raise PlaybookError with a located message on bad YAML."""
    loc = Located(file)
    if len(text) > MAX_BYTES:
        raise PlaybookError([Diagnostic(file, 1, 1, f"file is larger than {MAX_BYTES} bytes")])
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PlaybookError([Diagnostic(file, 1, e.start + 1, "not UTF-8 text")]) from None
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise PlaybookError([Diagnostic(file, line, 1, "binary data (NUL byte) in a playbook")])
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        line, col = (m.line + 1, m.column + 1) if m else (1, 1)
        msg = f"YAML syntax: {e.problem or e.context}"
        raise PlaybookError([Diagnostic(file, line, col, msg)]) from None
    except yaml.YAMLError as e:
        raise PlaybookError([Diagnostic(file, 1, 1, f"YAML: {e}")]) from None
    except RecursionError:
        raise PlaybookError([Diagnostic(file, 1, 1, "YAML nested too deeply")]) from None
    if node is None:
        raise PlaybookError([Diagnostic(file, 1, 1, "empty document")])
    try:
        data = loc._convert(node, (), 0)
    except _TooBig as e:
        raise PlaybookError([Diagnostic(file, e.node.start_mark.line + 1, e.node.start_mark.column + 1,
                                        e.msg)]) from None
    except (yaml.YAMLError, ValueError, TypeError) as e:
        raise PlaybookError([Diagnostic(file, 1, 1, f"YAML: {e}")]) from None
    return data, loc
