/* SPDX-License-Identifier: GPL-2.0 */
/* sched.progress records, shared by progress.bpf.c and its collector (collectors/progress.py). */
#ifndef __PROGRESS_H
#define __PROGRESS_H

#include "reclaim.h"

#define PROGRESS_STACK_DEPTH 32

/* Where a task's time goes (progress_task.ns[]), and the states it can be in. */
#define PS_RUNNING   0          /* on a CPU */
#define PS_RUNQ      1          /* runnable, waiting for a CPU */
#define PS_SLEEP     2          /* interruptible sleep (S), or an idle kernel thread (TASK_IDLE) */
#define PS_BLOCKED   3          /* uninterruptible sleep (D), not waiting for I/O */
#define PS_IO        4          /* uninterruptible sleep waiting for I/O (in_iowait) */
#define PS_STOPPED   5          /* stopped by a signal or under ptrace (T, t) */
#define PS_FROZEN    6          /* frozen: cgroup freezer, suspend (TASK_FROZEN, 6.1+) */
#define PS_NSTATES   7
#define PS_R         7          /* runnable when user space seeded it: on a CPU or queued */
#define PS_DEAD      8          /* exited: nothing more is counted */

struct progress_task {                  /* one task: 192 bytes */
	__u64 since;                    /* when its current state began */
	__u64 off_since;                /* when it left the CPU (0: it is on one) */
	__u64 first_ts;                 /* its first event (0: seeded by user space) */
	__u64 ns[PS_NSTATES];           /* time in each state */
	struct mm_stall mm;             /* in reclaim and compaction (overlaps ns[]) */
	__u64 longest_ns;               /* its longest stretch off the CPU that ended */
	__s32 kstack;                   /* where it left the CPU for the current stretch */
	__s32 ustack;
	__s32 long_kstack;              /* ... and for the longest stretch */
	__s32 long_ustack;
	__u32 state;                    /* PS_* */
	__u32 off_state;                /* the state it left the CPU in */
	__u32 long_state;
	__u32 tgid;
	__u32 waker;                    /* the task current when it was woken (this stretch) */
	__u32 long_waker;
	__u32 switches;
	__u32 preempted;
	__u32 wakeups;
	__u32 pad;
	char comm[16];
};

#endif
