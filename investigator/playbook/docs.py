"""The key reference of docs/playbooks.md, generated from the schema's typed classes:
``python -m investigator.playbook.docs``."""

from __future__ import annotations

import dataclasses
import sys
import typing

from . import schema

BEGIN = "<!-- BEGIN generated key reference (python -m investigator.playbook.docs) -->"
END = "<!-- END generated key reference -->"


def _type(tp: typing.Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, __import__("types").UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        null = " or null" if len(args) < len(typing.get_args(tp)) else ""
        return " or ".join(_type(a) for a in args) + null
    if origin is list:
        return f"list of {_type(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"mapping of {_type(typing.get_args(tp)[1])}"
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    names = {schema.Duration: "duration", schema.Expression: "CEL expression",
             schema.Template: "template", str: "string", int: "integer", bool: "boolean",
             typing.Any: "any"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def render() -> str:
    out = [BEGIN, ""]
    for cls in (schema.Playbook, schema.Metadata, schema.Defaults, schema.Import, schema.Node,
                schema.ProbeUse, schema.Observe, schema.Rule, schema.Edges, schema.Route, schema.Focus,
                schema.NodeLibrary):
        hints = typing.get_type_hints(cls)
        out += [f"### {cls.__name__}", "", "| key | type | required | default | meaning |", "|---|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
            default = "" if required or f.default is dataclasses.MISSING else f"`{f.default}`"
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = "empty"
            key = f.metadata.get("key", f.name)
            out.append(f"| `{key}` | {_type(hints[f.name])} | {'yes' if required else ''} | {default} | "
                       f"{f.metadata.get('doc', '')} |")
        out.append("")
    out.append(END)
    return "\n".join(out)


def splice(doc: str) -> str:
    """docs/playbooks.md with its generated section replaced by the current one."""
    a, b = doc.index(BEGIN), doc.index(END) + len(END)
    return doc[:a] + render() + doc[b:]


if __name__ == "__main__":
    from pathlib import Path
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/playbooks.md")
    path.write_text(splice(path.read_text()))
