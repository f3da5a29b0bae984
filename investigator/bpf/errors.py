"""Errors raised by the BPF layer: an OSError that also carries libbpf's and the verifier's log."""

from __future__ import annotations

import os
import re


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
        """The message plus the most telling line of the logs, for a one-line report, and
        the kernel feature it shows missing where one is known."""
        tail = _last_meaningful(self.verifier_log) or _last_meaningful(self.log)
        lacks = missing_feature(f"{self.verifier_log}\n{self.log}")
        return f"{self.strerror} ({self.what}){': ' + tail if tail else ''}{' -- ' + lacks if lacks else ''}"


class LibbpfMissing(RuntimeError):
    """The shared library libbpf.so.1 cannot be loaded."""


# Helpers the probes call that older kernels lack: id (enum bpf_func_id) -> name, release.
# A kernel that does not know a helper names it "unknown#ID" in its refusal.
NEWER_HELPERS = {141: ("bpf_get_task_stack", "5.9"), 175: ("bpf_task_pt_regs", "5.15"),
                 181: ("bpf_loop", "5.17"), 184: ("bpf_get_func_ret", "5.17"),
                 191: ("bpf_copy_from_user_task", "5.18")}
# What a verifier's or libbpf's refusal says, and the feature it means is missing.
REFUSALS = (
    ("number of funcs in func_info doesn't match number of subprogs",
     "this kernel lacks BPF callbacks (bpf_loop(), 5.17+)"),
    ("Sleepable programs can only use array and hash maps",
     "this kernel lacks sleepable iterators with per-CPU maps (5.18+)"),
    ("uses reserved fields", "this kernel lacks BPF atomic fetch operations (5.12+)"),
)


def missing_feature(log: str) -> str:
    """The kernel feature a load's logs show missing, in words ("" when none is known)."""
    m = re.search(r"(?:unknown|invalid) func (?:\w+#)?(\d+)", log)
    if m:
        hid = int(m.group(1))
        if hid in NEWER_HELPERS:
            name, since = NEWER_HELPERS[hid]
            return f"this kernel lacks the helper {name}() ({since}+)"
        return f"this kernel lacks BPF helper #{hid}"
    for needle, what in REFUSALS:
        if needle in log:
            return what
    return ""


def _last_meaningful(log: str) -> str:
    for line in reversed(log.strip().splitlines()):
        line = line.strip()
        if line and not line.startswith(("processed ", "verification time")):
            return line
    return ""
