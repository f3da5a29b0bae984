"""``investigate doctor``: what this machine lets the tool do, as a list of checks."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from . import mounts, procfs

CAPS = {21: "CAP_SYS_ADMIN", 38: "CAP_PERFMON", 39: "CAP_BPF", 24: "CAP_SYS_RESOURCE"}


@dataclass
class Check:
    name: str
    ok: bool | None        # None: informational
    value: str
    hint: str = ""


def effective_caps() -> int:
    return int(procfs.status().get("CapEff", "0"), 16)


def can_load_bpf() -> bool:
    """CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON (tracing programs, 5.8+), in effect."""
    caps = effective_caps()
    return bool(caps >> 21 & 1) or (bool(caps >> 39 & 1) and bool(caps >> 38 & 1))


def lockdown_mode() -> str:
    """The active lockdown mode ([none], integrity, confidentiality) or why unknown."""
    ok, msg = mounts.ensure_mounted("securityfs")
    if not ok:
        return f"unknown ({msg})"
    try:
        with open("/sys/kernel/security/lockdown") as f:
            text = f.read()
    except OSError:
        return "none (no lockdown LSM)"
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]")
    return text.strip()


def checks() -> list[Check]:
    from ..bpf import features
    from ..bpf._lib import LIBBPF_PATH, version
    from ..bpf.errors import LibbpfMissing

    out: list[Check] = []
    out.append(Check("kernel", None, f"{platform.release()} ({platform.machine()})"))
    euid = os.geteuid()
    out.append(Check("root", euid == 0, f"euid {euid}", "" if euid == 0 else "run as root (sudo)"))
    caps = effective_caps()
    have = [n for b, n in CAPS.items() if caps >> b & 1]
    need_ok = can_load_bpf()
    out.append(Check("capabilities", need_ok, ", ".join(have) or "none",
                     "" if need_ok else "needs CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN"))
    try:
        out.append(Check("libbpf", True, f"{version()} ({LIBBPF_PATH})"))
    except LibbpfMissing as e:
        out.append(Check("libbpf", False, str(e), "apt-get install libbpf1"))
        return out
    btf = features.btf()
    out.append(Check("BTF", btf.ok, "/sys/kernel/btf/vmlinux" if btf else btf.reason,
                     "" if btf else "CO-RE probes cannot load without kernel BTF"))
    out.append(Check("lockdown", None, lockdown_mode()))
    for name in ("tracefs", "bpffs"):
        m = mounts.is_mounted(name)
        out.append(Check(f"{name} mounted", None, "yes" if m else "no",
                         "" if m or name != "tracefs" else "mounted on demand for classic tracepoints"))
    for kind, s in features.summary().items():
        out.append(Check(f"hook {kind}", s.ok, "works" if s else s.reason))
    from .kallsyms import kallsyms
    ks = kallsyms().readable
    out.append(Check("kallsyms", ks, "readable" if ks else "addresses hidden (kptr_restrict)",
                     "" if ks else "stacks will show addresses, not function names"))
    hung = procfs.sysctl("kernel.hung_task_timeout_secs")
    out.append(Check("hung_task_timeout_secs", None, hung if hung is not None else "n/a (no DETECT_HUNG_TASK)"))
    rt = procfs.rt_throttling()
    out.append(Check("RT throttling", None, f"{rt['rt_runtime_us']} of {rt['rt_period_us']} us"))
    return out
