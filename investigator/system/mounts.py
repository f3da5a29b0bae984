"""Pseudo filesystems the tool may need (tracefs for classic tracepoints, securityfs for
the lockdown mode), mounted on demand -- and the mount is reported, never silent, and
undone (``undo``) when the tool mounted it itself."""

from __future__ import annotations

import ctypes as C
import os

MOUNTS = {
    "tracefs": ("/sys/kernel/tracing", "tracefs"),
    "debugfs": ("/sys/kernel/debug", "debugfs"),
    "securityfs": ("/sys/kernel/security", "securityfs"),
    "bpffs": ("/sys/fs/bpf", "bpf"),
}


_made: list[tuple[str, str]] = []       # (fs type, mount point) this process mounted
MNT_DETACH = 2


def mount_table() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, options) of every mount, from /proc/self/mounts."""
    out = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 4:
                    out.append((parts[1], parts[2], set(parts[3].split(","))))
    except OSError:
        pass
    return out


def mounted_types() -> dict[str, str]:
    """mount point -> fs type, from /proc/self/mounts."""
    return {point: fstype for point, fstype, _ in mount_table()}


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
    _made.append((fstype, path))
    return True, f"mounted {fstype} at {path}"


def undo() -> list[dict[str, object]]:
    """Unmount what this process mounted (lazily: MNT_DETACH, so a user of it that is still
    on its way out is not cut off); one record a mount, for the report."""
    out: list[dict[str, object]] = []
    libc = C.CDLL(None, use_errno=True)
    libc.umount2.argtypes = [C.c_char_p, C.c_int]
    while _made:
        fstype, path = _made.pop()
        rec: dict[str, object] = {"fs": fstype, "path": path, "unmounted": True}
        if libc.umount2(path.encode(), MNT_DETACH) != 0:
            rec.update(unmounted=False, error=os.strerror(C.get_errno()))
        out.append(rec)
    return out
