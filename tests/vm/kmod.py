"""Load and unload a kernel module without kmod (finit_module/delete_module), for the
second-kernel stage's fault modules (tests/vm/faults/)."""

from __future__ import annotations

import ctypes as C
import os

SYS_finit_module, SYS_delete_module = 313, 176       # x86_64
O_NONBLOCK = os.O_NONBLOCK
_libc = C.CDLL(None, use_errno=True)


def load(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.syscall(C.c_long(SYS_finit_module), C.c_int(fd), C.c_char_p(b""), C.c_int(0)) != 0:
            err = C.get_errno()
            if err != 17:                 # EEXIST: already loaded
                raise OSError(err, f"finit_module {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def unload(name: str) -> None:
    if _libc.syscall(C.c_long(SYS_delete_module), C.c_char_p(name.encode()), C.c_int(O_NONBLOCK)) != 0:
        err = C.get_errno()
        if err != 2:                      # ENOENT: not loaded
            raise OSError(err, f"delete_module {name}: {os.strerror(err)}")
