"""Kernel symbolization from /proc/kallsyms (root sees real addresses)."""

from __future__ import annotations

import bisect
from functools import lru_cache


class Kallsyms:
    def __init__(self, path: str = "/proc/kallsyms") -> None:
        syms: list[tuple[int, str]] = []
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or parts[1] in ("a", "A", "U"):
                    continue
                addr = int(parts[0], 16)
                if addr:
                    syms.append((addr, parts[2]))
        syms.sort()
        self._addrs = [a for a, _ in syms]
        self._names = [n for _, n in syms]

    @property
    def readable(self) -> bool:
        """False when kptr_restrict hides addresses (all zero) from this process."""
        return bool(self._addrs)

    def name(self, addr: int) -> str:
        """``function+0xoff`` for an address, or the hex address when unknown."""
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0 or not self._addrs:
            return hex(addr)
        return f"{self._names[i]}+0x{addr - self._addrs[i]:x}"

    def function(self, addr: int) -> str:
        return self.name(addr).split("+", 1)[0]

    def ranges(self, names: dict[str, int]) -> list[tuple[int, int, int]]:
        """(start, end, tag) of every function whose name -- without a compiler suffix such as
        .constprop.0 -- is in ``names`` (name -> tag); a function ends where the next symbol
        begins."""
        out = []
        for i, n in enumerate(self._names):
            tag = names.get(n.split(".", 1)[0])
            if tag is not None and i + 1 < len(self._addrs):
                out.append((self._addrs[i], self._addrs[i + 1], tag))
        return out


@lru_cache(maxsize=1)
def kallsyms() -> Kallsyms:
    return Kallsyms()


def symbolize(addrs: list[int]) -> list[str]:
    ks = kallsyms()
    return [ks.name(a) for a in addrs]
