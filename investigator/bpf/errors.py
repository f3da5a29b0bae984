"""Errors raised by the BPF layer: an OSError that also carries libbpf's and the verifier's log."""

from __future__ import annotations

import os


class BpfError(OSError):
    """A libbpf or bpf() call failed.

    ``errno`` is the kernel's (or libbpf's) error number, ``what`` names the operation,
    ``log`` holds what libbpf printed while doing it and ``verifier_log`` the kernel
    verifier's output when a program load was refused.
    """

    def __init__(self, what: str, err: int, log: str = "", verifier_log: str = "") -> None:
        super().__init__(err, f"{what}: {os.strerror(err)}")
        self.what = what
        self.log = log
        self.verifier_log = verifier_log

    def detail(self) -> str:
        """The message plus the most telling line of the logs, for a one-line report."""
        tail = _last_meaningful(self.verifier_log) or _last_meaningful(self.log)
        return f"{self.strerror} ({self.what}){': ' + tail if tail else ''}"


class LibbpfMissing(RuntimeError):
    """The shared library libbpf.so.1 cannot be loaded."""


def _last_meaningful(log: str) -> str:
    for line in reversed(log.strip().splitlines()):
        line = line.strip()
        if line and not line.startswith(("processed ", "verification time")):
            return line
    return ""
