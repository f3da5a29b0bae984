"""investigator/syscalls.py, the one table of system call numbers, against the kernel's own
headers (linux-libc-dev): x86_64's unistd_64.h and the generic unistd.h aarch64 uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from investigator import syscalls

HEADERS = {"x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
           "aarch64": Path("/usr/include/asm-generic/unistd.h")}


def _numbers(header: Path) -> dict[str, int]:
    """``name -> number`` of every ``#define __NR_name`` (through ``__NR3264_name`` aliases)."""
    macros = dict(re.findall(r"^#define (__NR\w+)\s+(\S+)", header.read_text(), re.M))
    out = {}
    for macro in macros:
        v = macros[macro]
        for _ in range(4):                  # __NR_fcntl -> __NR3264_fcntl -> 25
            v = macros.get(v, v)
        if macro.startswith("__NR_") and v.isdigit():
            out[macro[len("__NR_"):]] = int(v)
    return out


@pytest.mark.parametrize("machine", sorted(HEADERS))
def test_the_table_matches_the_kernel_headers(machine: str) -> None:
    header = HEADERS[machine]
    assert header.exists(), f"{header}: install linux-libc-dev"
    real = _numbers(header)
    assert real.get("futex") == (202 if machine == "x86_64" else 98)     # the parser reads both kinds
    table = syscalls.TABLE[machine]
    assert set(syscalls.FD_FIRST) <= set(table)
    wrong = {n: (v, real.get(n)) for n, v in table.items() if real.get(n) != v}
    assert not wrong, wrong


def test_an_unknown_machine_has_no_numbers() -> None:
    assert syscalls.nr("futex", "riscv64") == -1 and syscalls.numbers(("read",), "riscv64") == frozenset()
