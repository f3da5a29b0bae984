"""perf_event_open(2), for BPF programs that sample on a timer (perf_event attach)."""

from __future__ import annotations

import ctypes as C
import os

from .. import syscalls
from .errors import BpfError
from .structs import PerfEventAttr

PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_CPU_CLOCK = 0
ATTR_FLAG_FREQ = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
SYS_perf_event_open = syscalls.nr("perf_event_open")

_libc = C.CDLL(None, use_errno=True)
_libc.syscall.restype = C.c_long


def open_cpu_clock(cpu: int, freq_hz: int = 49) -> int:
    """A software cpu-clock sampling event on one CPU (all tasks) at ``freq_hz``; returns its fd."""
    attr = PerfEventAttr(type=PERF_TYPE_SOFTWARE, size=C.sizeof(PerfEventAttr),
                         config=PERF_COUNT_SW_CPU_CLOCK, sample_period_or_freq=freq_hz,
                         flags=ATTR_FLAG_FREQ)
    fd = _libc.syscall(C.c_long(SYS_perf_event_open), C.byref(attr), C.c_int(-1), C.c_int(cpu),
                       C.c_int(-1), C.c_ulong(PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        raise BpfError(f"perf_event_open cpu-clock cpu{cpu}", C.get_errno())
    return int(fd)


def online_cpus() -> list[int]:
    """The CPUs online now (/sys/devices/system/cpu/online: "0-3,6")."""
    try:
        with open("/sys/devices/system/cpu/online") as f:
            text = f.read().strip()
    except OSError:
        return list(range(os.cpu_count() or 1))
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if lo.strip():
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out
