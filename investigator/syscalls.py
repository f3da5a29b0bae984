"""System call numbers of the machines the tool runs on: the one table (x86_64 from
arch/x86/entry/syscalls/syscall_64.tbl, aarch64 from the generic include/uapi/asm-generic/
unistd.h).  On another machine every number is unknown (-1) and what reads them says so."""

from __future__ import annotations

import os

TABLE: dict[str, dict[str, int]] = {
    "x86_64": {
        "read": 0, "write": 1, "pread64": 17, "pwrite64": 18, "readv": 19, "writev": 20,
        "sendfile": 40, "fcntl": 72, "flock": 73, "fsync": 74, "fdatasync": 75, "ftruncate": 77,
        "fchmod": 91, "fchown": 93, "futex": 202, "getdents64": 217, "sync_file_range": 277,
        "fallocate": 285, "perf_event_open": 298, "copy_file_range": 326,
    },
    "aarch64": {
        "read": 63, "write": 64, "pread64": 67, "pwrite64": 68, "readv": 65, "writev": 66,
        "sendfile": 71, "fcntl": 25, "flock": 32, "fsync": 82, "fdatasync": 83, "ftruncate": 46,
        "fchmod": 52, "fchown": 55, "futex": 98, "getdents64": 61, "sync_file_range": 84,
        "fallocate": 47, "perf_event_open": 241, "copy_file_range": 285,
    },
}

# system calls whose first argument is a file descriptor the call works on
FD_FIRST = ("read", "write", "pread64", "pwrite64", "readv", "writev", "fsync", "fdatasync", "ftruncate",
            "fallocate", "sync_file_range", "sendfile", "copy_file_range", "getdents64", "fchmod", "fchown")


def nr(name: str, machine: str | None = None) -> int:
    """The number of system call ``name`` on ``machine`` (this one by default), or -1."""
    return TABLE.get(machine or os.uname().machine, {}).get(name, -1)


def numbers(names: tuple[str, ...], machine: str | None = None) -> frozenset[int]:
    """The numbers of those of ``names`` this machine has."""
    return frozenset(n for n in (nr(s, machine) for s in names) if n >= 0)
