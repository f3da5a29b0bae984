"""Kernel symbolization from /proc/kallsyms (root sees real addresses).

The file is kept as the kernel printed it and searched in place: the core kernel's symbols
come first, in address order (the kernel's own lookups binary-search that table), so an
address is found by bisecting byte offsets -- no table of 100k+ Python objects (24 MiB and
100 ms to build; this is 5 MiB, the file's size, and a read).  The modules' symbols
follow, in each module's own order: those few are parsed and sorted.
"""

from __future__ import annotations

import bisect
import re
from functools import lru_cache

MAX_BYTES = 64 << 20            # the largest /proc/kallsyms read (a big distribution kernel: ~20 MiB)
_SKIP = frozenset(b"aAU")
MAX_CACHED = 1 << 16            # addresses whose names are remembered       # absolute and undefined symbols name no code or data


class Kallsyms:
    def __init__(self, path: str = "/proc/kallsyms") -> None:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES)
        self._w = data.find(b" ") if data else 0         # address width: 16 hex digits on 64-bit
        mod = data.find(b"\t[")
        cut = data.rfind(b"\n", 0, mod) + 1 if mod >= 0 else len(data)
        self._core = data[:cut]
        mods: list[tuple[int, str]] = []
        for line in data[cut:].split(b"\n"):
            parts = line.split()
            if len(parts) >= 3 and parts[1][0] not in _SKIP and (a := int(parts[0], 16)):
                mods.append((a, parts[2].decode(errors="replace")))
        mods.sort()
        self._maddrs = [a for a, _ in mods]
        self._mnames = [n for _, n in mods]
        nonzero = re.compile(rb"^(?!0+ )[0-9a-f]+ ", re.M)
        self._readable = bool(mods) or nonzero.search(self._core) is not None
        self._names: dict[int, str] = {}

    @property
    def readable(self) -> bool:
        """False when kptr_restrict hides addresses (all zero) from this process."""
        return self._readable

    def _addr(self, s: int) -> int:
        return int(self._core[s:s + self._w], 16)

    def _next_line(self, s: int) -> int:
        e = self._core.find(b"\n", s)
        return len(self._core) if e < 0 else e + 1

    def _core_at(self, addr: int) -> tuple[int, str] | None:
        """The core symbol at or before ``addr``: (its address, its name)."""
        core, key = self._core, f"{addr:0{self._w}x}".encode()
        if len(key) != self._w:
            return None
        lo, hi, best = 0, len(core), -1
        while lo < hi:                      # the last line whose address <= key
            s = core.rfind(b"\n", 0, (lo + hi) // 2) + 1
            if s < lo:
                s = lo
            if core[s:s + self._w] <= key:
                best, lo = s, self._next_line(s)
            else:
                hi = s
        while best >= 0:
            line = core[best:self._next_line(best)].split()
            if len(line) >= 3 and line[1][0] not in _SKIP and int(line[0], 16):
                return int(line[0], 16), line[2].decode(errors="replace")
            best = core.rfind(b"\n", 0, max(0, best - 1)) + 1 if best else -1
        return None

    def name(self, addr: int) -> str:
        """``function+0xoff`` for an address, or the hex address when unknown (remembered:
        the stacks of a run share most of their frames)."""
        got = self._names.get(addr)
        if got is None:
            got = self._name(addr)
            if len(self._names) < MAX_CACHED:
                self._names[addr] = got
        return got

    def _name(self, addr: int) -> str:
        if not self._readable:
            return hex(addr)
        i = bisect.bisect_right(self._maddrs, addr) - 1
        core = self._core_at(addr)
        if i >= 0 and (core is None or self._maddrs[i] > core[0]):
            base, name = self._maddrs[i], self._mnames[i]
        elif core is not None:
            base, name = core
        else:
            return hex(addr)
        return f"{name}+0x{addr - base:x}"

    def function(self, addr: int) -> str:
        return self.name(addr).split("+", 1)[0]

    def ranges(self, names: dict[str, int]) -> list[tuple[int, int, int]]:
        """(start, end, tag) of every core kernel function whose name -- without a compiler
        suffix such as .constprop.0 -- is in ``names`` (name -> tag); a function ends where
        the next symbol at a higher address begins."""
        if not names or not self._readable:
            return []
        alt = b"|".join(re.escape(n.encode()) for n in sorted(names))
        rx = re.compile(rb"^([0-9a-f]+) [tTwW] (" + alt + rb")(?:\.\S*)?$", re.M)
        out = []
        for m in rx.finditer(self._core):
            start = int(m.group(1), 16)
            s = self._next_line(m.start())
            while s < len(self._core) and self._addr(s) <= start:
                s = self._next_line(s)
            if s < len(self._core):
                out.append((start, self._addr(s), names[m.group(2).decode()]))
        return out


@lru_cache(maxsize=1)
def kallsyms() -> Kallsyms:
    return Kallsyms()


def symbolize(addrs: list[int]) -> list[str]:
    ks = kallsyms()
    return [ks.name(a) for a in addrs]
