"""The one place that loads libbpf.so and declares the C prototypes this package calls.

Only the stable libbpf 1.x API is used (Debian 12's libbpf1 is 1.1.2).  Set
``INVESTIGATOR_LIBBPF=/path/to/libbpf.so`` to use another build (a newer libbpf only
adds functions; the option structs start with their size).
"""

from __future__ import annotations

import ctypes as C
import os
import threading
from typing import Any

from .errors import LibbpfMissing
from .structs import (BtfType, IterAttachOpts, KprobeOpts, MapBatchOpts, ObjectOpenOpts,
                      ProgLoadOpts, UprobeOpts)

vp, cp, i32, u32, u64, sz, boolean = (C.c_void_p, C.c_char_p, C.c_int, C.c_uint32, C.c_uint64,
                                      C.c_size_t, C.c_bool)

LIBBPF_PATH = os.environ.get("INVESTIGATOR_LIBBPF", "libbpf.so.1")

PRINT_FN = C.CFUNCTYPE(i32, i32, cp, vp)        # libbpf_print_fn_t(level, fmt, va_list)
RB_SAMPLE_FN = C.CFUNCTYPE(i32, vp, vp, sz)     # ring_buffer_sample_fn(ctx, data, size)

_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "libbpf_version_string": (cp, []),
    "libbpf_num_possible_cpus": (i32, []),
    "libbpf_set_print": (vp, [PRINT_FN]),
    "libbpf_probe_bpf_prog_type": (i32, [i32, vp]),
    "libbpf_probe_bpf_map_type": (i32, [i32, vp]),
    "libbpf_find_vmlinux_btf_id": (i32, [cp, i32]),
    "bpf_object__open_file": (vp, [cp, C.POINTER(ObjectOpenOpts)]),
    "bpf_object__load": (i32, [vp]),
    "bpf_object__close": (None, [vp]),
    "bpf_object__next_map": (vp, [vp, vp]),
    "bpf_object__next_program": (vp, [vp, vp]),
    "bpf_object__btf": (vp, [vp]),
    "bpf_map__name": (cp, [vp]),
    "bpf_map__fd": (i32, [vp]),
    "bpf_map__type": (i32, [vp]),
    "bpf_map__key_size": (u32, [vp]),
    "bpf_map__value_size": (u32, [vp]),
    "bpf_map__max_entries": (u32, [vp]),
    "bpf_map__set_max_entries": (i32, [vp, u32]),
    "bpf_map__initial_value": (vp, [vp, C.POINTER(sz)]),
    "bpf_program__name": (cp, [vp]),
    "bpf_program__section_name": (cp, [vp]),
    "bpf_program__fd": (i32, [vp]),
    "bpf_program__type": (i32, [vp]),
    "bpf_program__set_autoload": (i32, [vp, boolean]),
    "bpf_program__autoload": (boolean, [vp]),
    "bpf_program__set_log_buf": (i32, [vp, vp, sz]),
    "bpf_program__set_log_level": (i32, [vp, u32]),
    "bpf_program__attach": (vp, [vp]),
    "bpf_program__attach_tracepoint": (vp, [vp, cp, cp]),
    "bpf_program__attach_raw_tracepoint": (vp, [vp, cp]),
    "bpf_program__attach_trace": (vp, [vp]),
    "bpf_program__set_attach_target": (i32, [vp, i32, cp]),
    "bpf_program__attach_kprobe_opts": (vp, [vp, cp, C.POINTER(KprobeOpts)]),
    "bpf_program__attach_uprobe_opts": (vp, [vp, i32, cp, sz, C.POINTER(UprobeOpts)]),
    "bpf_program__attach_perf_event": (vp, [vp, i32]),
    "bpf_program__attach_iter": (vp, [vp, C.POINTER(IterAttachOpts)]),
    "bpf_link__fd": (i32, [vp]),
    "bpf_link__destroy": (i32, [vp]),
    "bpf_iter_create": (i32, [i32]),
    "bpf_prog_load": (i32, [i32, cp, cp, vp, sz, C.POINTER(ProgLoadOpts)]),
    "bpf_map_lookup_elem": (i32, [i32, vp, vp]),
    "bpf_map_update_elem": (i32, [i32, vp, vp, u64]),
    "bpf_map_delete_elem": (i32, [i32, vp]),
    "bpf_map_get_next_key": (i32, [i32, vp, vp]),
    "bpf_map_lookup_batch": (i32, [i32, vp, vp, vp, vp, C.POINTER(u32), C.POINTER(MapBatchOpts)]),
    "btf__find_by_name_kind": (i32, [vp, cp, u32]),
    "btf__type_by_id": (C.POINTER(BtfType), [vp, u32]),
    "btf__name_by_offset": (cp, [vp, u32]),
    "ring_buffer__new": (vp, [i32, RB_SAMPLE_FN, vp, vp]),
    "ring_buffer__poll": (i32, [vp, i32]),
    "ring_buffer__consume": (i32, [vp]),
    "ring_buffer__free": (None, [vp]),
}


class _Lib:
    """libbpf's functions as attributes, declared lazily on first use."""

    def __init__(self) -> None:
        try:
            self._dll = C.CDLL(LIBBPF_PATH, use_errno=True)
        except OSError as e:  # pragma: no cover - depends on the machine
            raise LibbpfMissing(
                f"cannot load {LIBBPF_PATH}: {e}. Install it (Debian/Ubuntu: apt-get install libbpf1)"
            ) from e

    def __getattr__(self, name: str) -> Any:
        restype, argtypes = _PROTOTYPES[name]
        f = getattr(self._dll, name)
        f.restype, f.argtypes = restype, argtypes
        setattr(self, name, f)
        return f


_libc = C.CDLL(None, use_errno=True)
_libc.vsnprintf.argtypes = [cp, sz, cp, vp]
_libc.vsnprintf.restype = i32


def trim_heap() -> None:
    """Give the C heap's free memory back to the kernel (glibc's ``malloc_trim``): loading
    objects parses the kernel's BTF once per object, in the loading threads' own arenas,
    and frees it -- tens of MiB that would otherwise stay resident for the whole run."""
    trim = getattr(_libc, "malloc_trim", None)
    if trim is not None:
        trim.argtypes, trim.restype = [sz], i32
        trim(0)


class LibbpfLog:
    """Everything libbpf prints, captured as strings instead of going to stderr.

    ``mark()`` returns a position; ``since(mark)`` the text printed after it, so an error
    can carry exactly the messages of the call that failed.  The buffer is bounded.
    """

    MAX_LINES = 4000

    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []
        self._base = 0  # number of lines dropped from the front
        self._lock = threading.Lock()
        self.echo_level = int(os.environ.get("INVESTIGATOR_LIBBPF_DEBUG", "-1"))

    def add(self, level: int, msg: str) -> None:
        with self._lock:
            self.lines.append((level, msg))
            if len(self.lines) > self.MAX_LINES:
                drop = len(self.lines) - self.MAX_LINES
                del self.lines[:drop]
                self._base += drop
        if level <= self.echo_level:
            os.write(2, f"libbpf: {msg}".encode())

    def mark(self) -> int:
        return self._base + len(self.lines)

    def since(self, mark: int) -> str:
        with self._lock:
            start = max(0, mark - self._base)
            return "".join(m for lvl, m in self.lines[start:] if lvl <= 1)


LOG = LibbpfLog()


@PRINT_FN
def _print_cb(level: int, fmt: bytes, ap: int) -> int:
    saved = C.get_errno()          # a ctypes call in here must not clobber the caller's errno
    buf = C.create_string_buffer(4096)
    _libc.vsnprintf(buf, 4096, fmt, ap)
    LOG.add(level, buf.value.decode(errors="replace"))
    C.set_errno(saved)
    return 0


_lib: _Lib | None = None


def lib() -> _Lib:
    """The loaded libbpf (loaded once, on first use, with its print callback installed)."""
    global _lib
    if _lib is None:
        _lib = _Lib()
        _lib.libbpf_set_print(_print_cb)
    return _lib


def version() -> str:
    return lib().libbpf_version_string().decode()


def num_possible_cpus() -> int:
    n = lib().libbpf_num_possible_cpus()
    if n <= 0:
        raise OSError(-n, "libbpf_num_possible_cpus failed")
    return n
