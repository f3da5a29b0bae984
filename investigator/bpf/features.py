"""Which program types and hooks this kernel accepts, probed for real and cached per run.

Each check loads the smallest program of that kind (``r0 = 0; exit``) with the attach
target the hook needs, the way ``bpftool feature probe`` does, so the answer reflects the
kernel's configuration *and* its policy (lockdown, LSMs): on a kernel without kprobes, or
where fentry loads are refused, the check says so with the errno.
"""

from __future__ import annotations

import ctypes as C
import errno as E
import os
from dataclasses import dataclass
from functools import lru_cache

from ._lib import lib
from .structs import BpfInsn, ProgLoadOpts

PROG_KPROBE, PROG_TRACEPOINT, PROG_PERF_EVENT, PROG_RAW_TP, PROG_TRACING = 2, 5, 7, 17, 26
ATTACH_RAW_TP, ATTACH_FENTRY, ATTACH_FEXIT, ATTACH_ITER = 23, 24, 25, 28
BTF_KIND_TYPEDEF, BTF_KIND_FUNC, BTF_KIND_STRUCT = 8, 12, 4

TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
PMU_DIR = "/sys/bus/event_source/devices"


@dataclass(frozen=True)
class Support:
    ok: bool
    reason: str = ""      # why not, in words, when ok is False

    def __bool__(self) -> bool:
        return self.ok


def _insns_return_zero() -> C.Array[BpfInsn]:
    arr = (BpfInsn * 2)()
    arr[0] = BpfInsn(code=0xB7, regs=0, off=0, imm=0)   # BPF_ALU64 | BPF_MOV | BPF_K: r0 = 0
    arr[1] = BpfInsn(code=0x95, regs=0, off=0, imm=0)   # BPF_JMP | BPF_EXIT
    return arr


def _try_load(prog_type: int, attach_type: int = 0, btf_id: int = 0) -> Support:
    insns = _insns_return_zero()
    logbuf = C.create_string_buffer(4096)
    opts = ProgLoadOpts.new(expected_attach_type=attach_type, attach_btf_id=btf_id,
                            log_level=0, log_size=0, log_buf=None)
    C.set_errno(0)
    fd = lib().bpf_prog_load(prog_type, b"inv_probe", b"GPL", insns, 2, C.byref(opts))
    del logbuf
    if fd >= 0:
        os.close(fd)
        return Support(True)
    err = -fd
    why = os.strerror(err)
    if err == E.EPERM:
        why += " (refused: lockdown, missing capability or an LSM policy)"
    return Support(False, why)


@lru_cache(maxsize=None)
def kernel_btf() -> Support:
    """The kernel's own BTF, which BTF-typed attach targets (tp_btf, fentry, iterators)
    need; a custom BTF file serves CO-RE relocations only."""
    if os.path.exists("/sys/kernel/btf/vmlinux"):
        return Support(True)
    return Support(False, "needs the kernel's own BTF (/sys/kernel/btf/vmlinux)")


def _vmlinux_btf_id(name: str, attach_type: int) -> int:
    return int(lib().libbpf_find_vmlinux_btf_id(name.encode(), attach_type))


_custom_btf: str | None = None   # a vmlinux BTF file for kernels built without one (BTFHub)


def use_custom_btf(path: str | None) -> None:
    """Relocate every object of this process against the BTF file ``path`` (absolute) instead
    of /sys/kernel/btf/vmlinux; None goes back to the kernel's own."""
    global _custom_btf
    _custom_btf = path
    btf.cache_clear()


def custom_btf() -> str | None:
    """The BTF file set by ``use_custom_btf``, or None."""
    return _custom_btf


@lru_cache(maxsize=None)
def btf() -> Support:
    if _custom_btf:
        if os.path.isfile(_custom_btf):
            return Support(True)
        return Support(False, f"custom BTF {_custom_btf} not found")
    if os.path.exists("/sys/kernel/btf/vmlinux"):
        return Support(True)
    return Support(False, "no /sys/kernel/btf/vmlinux (kernel built without CONFIG_DEBUG_INFO_BTF); "
                          "CO-RE probes need it, or a BTF file for this kernel given with --btf")


@lru_cache(maxsize=None)
def tracefs() -> str | None:
    """The mounted tracefs, or None."""
    for d in TRACEFS_CANDIDATES:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    return None


@lru_cache(maxsize=None)
def tp_btf(tracepoint: str) -> Support:
    """``tp_btf/<tracepoint>``: BTF-typed raw tracepoint (kernel >= 5.5)."""
    if not kernel_btf():
        return kernel_btf()
    bid = _vmlinux_btf_id(tracepoint, ATTACH_RAW_TP)
    if bid < 0:
        return Support(False, f"tracepoint {tracepoint} not in this kernel's BTF")
    return _try_load(PROG_TRACING, ATTACH_RAW_TP, bid)


@lru_cache(maxsize=None)
def raw_tp(tracepoint: str = "") -> Support:
    s = _try_load(PROG_RAW_TP)
    if not s or not tracepoint:
        return s
    if kernel_btf() and _vmlinux_btf_id(tracepoint, ATTACH_RAW_TP) < 0 and not _tracefs_event_exists(tracepoint):
        return Support(False, f"no tracepoint {tracepoint} in this kernel")
    return s


def _tracefs_event_exists(tracepoint: str) -> bool:
    t = tracefs()
    if t is None:
        return False
    import glob
    return bool(glob.glob(os.path.join(t, "events", "*", tracepoint)))


@lru_cache(maxsize=None)
def tracepoint(category: str = "", name: str = "") -> Support:
    s = _try_load(PROG_TRACEPOINT)
    if not s:
        return s
    t = tracefs()
    if t is None:
        return Support(False, "tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)")
    if category and not os.path.exists(os.path.join(t, "events", category, name, "id")):
        return Support(False, f"no tracepoint {category}:{name} in {t}/events")
    return Support(True)


@lru_cache(maxsize=None)
def fentry(func: str = "schedule") -> Support:
    """fentry/fexit need BPF trampolines; lockdown=integrity refuses them on some kernels."""
    if not kernel_btf():
        return kernel_btf()
    bid = _vmlinux_btf_id(func, ATTACH_FENTRY)
    if bid < 0:
        return Support(False, f"function {func} not in this kernel's BTF")
    return _try_load(PROG_TRACING, ATTACH_FENTRY, bid)


@lru_cache(maxsize=None)
def kprobe() -> Support:
    if not os.path.exists(os.path.join(PMU_DIR, "kprobe")):
        return Support(False, "kernel built without CONFIG_KPROBES (no kprobe PMU)")
    return _try_load(PROG_KPROBE)


@lru_cache(maxsize=None)
def uprobe() -> Support:
    if not os.path.exists(os.path.join(PMU_DIR, "uprobe")):
        return Support(False, "kernel built without CONFIG_UPROBE_EVENTS (no uprobe PMU)")
    return _try_load(PROG_KPROBE)


ITER_SINCE = {"task": "5.8", "task_file": "5.8", "task_vma": "5.12"}


@lru_cache(maxsize=None)
def iterator(target: str = "task") -> Support:
    """Can a BPF iterator over ``target`` (task, task_file, ...) load here?"""
    if not kernel_btf():
        return kernel_btf()
    bid = _vmlinux_btf_id(target, ATTACH_ITER)
    if bid < 0:
        since = ITER_SINCE.get(target)
        return Support(False, f"no bpf_iter_{target} in this kernel" + (f" (needs >= {since})" if since else ""))
    return _try_load(PROG_TRACING, ATTACH_ITER, bid)


@lru_cache(maxsize=None)
def perf_event() -> Support:
    s = _try_load(PROG_PERF_EVENT)
    if not s:
        return s
    from .perf import open_cpu_clock
    try:
        os.close(open_cpu_clock(0, 1))
    except OSError as e:
        return Support(False, f"perf_event_open: {e.strerror}")
    return Support(True)


def disabled_hooks() -> set[str]:
    """Hook kinds the user ruled out (INVESTIGATOR_DISABLE_HOOKS=fentry,tp_btf): the probes
    fall back as if the kernel refused them (avoid trampolines; test a fallback)."""
    return {h.strip() for h in os.environ.get("INVESTIGATOR_DISABLE_HOOKS", "").split(",") if h.strip()}


def hook(kind: str, target: str = "") -> Support:
    """Can a program of hook ``kind`` attach to ``target`` here?  (Cached.)"""
    if kind in disabled_hooks():
        return Support(False, "disabled by INVESTIGATOR_DISABLE_HOOKS")
    if kind == "tp_btf":
        return tp_btf(target)
    if kind == "raw_tp":
        return raw_tp(target)
    if kind == "tracepoint":
        cat, _, name = target.partition("/")
        return tracepoint(cat, name)
    if kind in ("fentry", "fexit"):
        return fentry(target or "schedule")
    if kind in ("kprobe", "kretprobe"):
        return kprobe()
    if kind in ("uprobe", "uretprobe"):
        return uprobe()
    if kind == "iter":
        return iterator(target or "task")
    if kind == "perf_event":
        return perf_event()
    return Support(False, f"unknown hook kind {kind}")


def summary() -> dict[str, Support]:
    """One answer per hook kind, on representative targets (for ``investigate doctor``)."""
    return {
        "tp_btf": tp_btf("sched_switch"),
        "raw_tp": raw_tp("sched_switch"),
        "tracepoint": tracepoint("sched", "sched_switch"),
        "fentry": fentry("schedule"),
        "kprobe": kprobe(),
        "uprobe": uprobe(),
        "iter": iterator("task"),
        "perf_event": perf_event(),
    }
