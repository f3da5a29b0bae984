"""Pseudo filesystems the tool may need (tracefs for classic tracepoints), mounted on
demand -- and the mount is reported, never silent."""

from __future__ import annotations

import ctypes as C
import os

MOUNTS = {
    "tracefs": ("/sys/kernel/tracing", "tracefs"),
    "debugfs": ("/sys/kernel/debug", "debugfs"),
    "securityfs": ("/sys/kernel/security", "securityfs"),
    "bpffs": ("/sys/fs/bpf", "bpf"),
}


def mounted_types() -> dict[str, str]:
    """mount point -> fs type, from /proc/self/mounts."""
    out = {}
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    out[parts[1]] = parts[2]
    except OSError:
        pass
    return out


def is_mounted(name: str) -> bool:
    path, fstype = MOUNTS[name]
    return mounted_types().get(path) == fstype


def ensure_mounted(name: str) -> tuple[bool, str]:
    """Mount ``name`` at its usual place if it is not; returns (ok, what was done or why not)."""
    path, fstype = MOUNTS[name]
    if is_mounted(name):
        return True, f"{fstype} already mounted at {path}"
    libc = C.CDLL(None, use_errno=True)
    libc.mount.argtypes = [C.c_char_p, C.c_char_p, C.c_char_p, C.c_ulong, C.c_void_p]
    if libc.mount(b"nodev", path.encode(), fstype.encode(), 0, None) != 0:
        err = C.get_errno()
        return False, f"cannot mount {fstype} at {path}: {os.strerror(err)}"
    return True, f"mounted {fstype} at {path}"
