"""This process's file descriptor table, sized once while it is still single-threaded.

Every BPF program, map, link and perf event is a file descriptor.  When a process that
has several threads needs a bigger descriptor table, the kernel swaps the table and calls
synchronize_rcu() before freeing the old one (expand_fdtable).  On a machine whose RCU
grace periods do not complete -- a CPU kept by an RT busy loop with RT throttling off,
whose ksoftirqd never runs to report the CPU's quiescent state (kernels before the fair
deadline server, 6.12) -- that wait never ends: the tool's first BPF load hung in
expand_files for as long as the hog ran (45 s in the 6.1 guest).  A single-threaded
process swaps its table without waiting, and the table never shrinks, so sizing it at
start-up, before any thread exists, keeps every later descriptor out of that path.
"""

from __future__ import annotations

import os
import resource
from typing import Any

from .procfs import status

# flagship playbook, 2 CPUs: 78 descriptors; sampling probes add one perf event and one
# link per CPU each
BASE, PER_CPU = 512, 8
# what a loaded object holds beyond its manifest's maps: libbpf's probe_stats, .rodata,
# .bss and .data maps, and its BTF
OBJECT_EXTRA = 5
OWN = 64            # the interpreter's own files, an iterator and /proc reads in flight


def wanted(ncpus: int, need: int = 0) -> int:
    return BASE + PER_CPU * ncpus + need


def probe_descriptors(m: Any, ncpus: int) -> int:
    """Descriptors one attached instance of a probe (a ProbeManifest) holds, from its
    manifest alone: its maps (the manifest's and libbpf's own), its BTF, and a program and
    a link for each program of its largest hook alternative -- one perf event and one link
    per CPU for a sampling program.  A /proc reader or an analyzer holds none; a bpftrace
    process, its pipes."""
    if m.mode == "bpftrace":
        return 4
    if m.userspace or m.mode == "analyzer" or not m.hooks:
        return 0
    progs = max(len(h.programs) for h in m.hooks)
    links = 2 * ncpus if any(h.kind == "perf_event" for h in m.hooks) else 1
    return len(m.maps) + OBJECT_EXTRA + progs * (1 + links)


def playbook_descriptors(lp: Any, ncpus: int) -> int:
    """An upper bound of the descriptors a run of a LoadedPlaybook holds at once: every
    probe of every node attached together (nodes that share a probe share one instance)."""
    return OWN + sum(probe_descriptors(m, ncpus) for aliases in lp.probes.values() for m in aliases.values())


def reserve_for_playbook(lp: Any) -> str | None:
    """Size the descriptor table for what the playbook's probes will hold (call it while
    the process has one thread).  Returns why the run cannot go on -- its probes need more
    descriptors than the hard RLIMIT_NOFILE allows -- or None."""
    ncpus = os.cpu_count() or 1
    need = playbook_descriptors(lp, ncpus)
    reserve_fd_table(wanted(ncpus, need))
    try:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    except (OSError, ValueError):
        return None
    if hard != resource.RLIM_INFINITY and need > hard:
        return (f"this playbook's probes hold up to {need} file descriptors at once (their maps, programs "
                f"and links), more than this process may open ({hard}, the hard RLIMIT_NOFILE): raise it "
                f"(ulimit -Hn {need + BASE}) or run fewer probes; nothing was attached")
    return None


def reserve_fd_table(n: int | None = None) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``n`` (within the hard limit) and make the
    descriptor table hold ``n`` entries now.  Returns the size reserved (0 when this
    process already has other threads: the resize would wait for RCU itself)."""
    n = n or wanted(os.cpu_count() or 1)
    if threads() != 1:
        return 0
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < n:
            soft = n if hard == resource.RLIM_INFINITY else min(n, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        n = min(n, soft) if soft != resource.RLIM_INFINITY else n
        fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.dup2(fd, n - 1, inheritable=False)
            os.close(n - 1)
        finally:
            os.close(fd)
    except (OSError, ValueError):       # a sandbox that refuses: the table grows as needed
        return 0
    return n


def threads() -> int:
    return int(status().get("Threads", "0"))


def table_size() -> int:
    """The descriptor table's current size (FDSize in /proc/self/status)."""
    return int(status().get("FDSize", "0"))
