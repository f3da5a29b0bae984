"""The ctypes mirrors of libbpf's option structs match the installed C headers: a C
program compiled against <bpf/libbpf.h> prints sizeof and offsetof of every field."""

from __future__ import annotations

import ctypes as C
import shutil
import subprocess
from pathlib import Path

import pytest

from investigator.bpf.structs import CHECKED


def _c_program() -> str:
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <linux/bpf.h>",
             "#include <linux/btf.h>", "#include <linux/perf_event.h>", "#include <bpf/bpf.h>",
             "#include <bpf/libbpf.h>", "int main(void) {"]
    for cname, cls, _ in CHECKED:
        lines.append(f'printf("{cname} __sizeof__ %zu\\n", sizeof(struct {cname}));')
        names = getattr(cls, "_c_names_", {})
        skip = getattr(cls, "_c_skip_", ())
        for fname, _t in cls._fields_:
            if fname in skip:
                continue
            c = names.get(fname, fname)
            lines.append(f'printf("{cname} {fname} %zu\\n", offsetof(struct {cname}, {c}));')
    lines += ["return 0;", "}"]
    return "\n".join(lines)


def test_struct_layouts_match_libbpf_headers(tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not Path("/usr/include/bpf/libbpf.h").exists():
        pytest.fail("the test needs a C compiler and libbpf-dev (scripts/setup.sh test installs them)")
    src = tmp_path / "layout.c"
    src.write_text(_c_program())
    exe = tmp_path / "layout"
    subprocess.run([cc, str(src), "-o", str(exe)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    c_side = {}
    for line in out.splitlines():
        sname, field, value = line.split()
        c_side[(sname, field)] = int(value)
    checked = 0
    for cname, cls, _ in CHECKED:
        assert C.sizeof(cls) == c_side[(cname, "__sizeof__")], f"sizeof(struct {cname})"
        for fname, _t in cls._fields_:
            if fname in getattr(cls, "_c_skip_", ()):
                continue
            assert getattr(cls, fname).offset == c_side[(cname, fname)], f"{cname}.{fname}"
            checked += 1
    assert checked > 50
