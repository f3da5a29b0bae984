/* SPDX-License-Identifier: GPL-2.0 */
/* sched.runnable records, shared by runnable.bpf.c and its collector (collectors/runnable.py). */
#ifndef __RUNNABLE_H
#define __RUNNABLE_H

struct runnable_rec {                   /* a task queued for a CPU, or running on one: 72 bytes */
	__u64 now_ns;                   /* bpf_ktime_get_ns(): compared across snapshots only */
	__u64 waited_ns;                /* since sched_info.last_queued, in its rq's clock (0: unknown) */
	__u64 switches;                 /* nvcsw + nivcsw: moved if it ran between two snapshots */
	__u32 tid;
	__u32 tgid;
	__s32 prio;
	__u32 policy;
	__u32 cpu;                      /* the run queue it waits on, or the CPU it runs on */
	__u32 running;                  /* 1: on a CPU now (the culprit of that CPU's waits) */
	char comm[16];
};

#endif
