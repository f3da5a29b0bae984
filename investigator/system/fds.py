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

from .procfs import status

# flagship playbook, 2 CPUs: 78 descriptors; sampling probes add one perf event and one
# link per CPU each
BASE, PER_CPU = 512, 8


def wanted(ncpus: int) -> int:
    return BASE + PER_CPU * ncpus


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
