/* SPDX-License-Identifier: GPL-2.0 */
/* Records of the CPU occupancy probe (mirrored in investigator/probes/collectors/oncpu.py). */
#ifndef __ONCPU_H
#define __ONCPU_H

#define MAX_PLACEMENTS  16384   /* (CPU, task) pairs kept */

struct oncpu_key {
	__u32 cpu;
	__u32 tid;
};

struct oncpu_val {
	__u64 ns;               /* sampled time on the CPU: the sum of the samples' periods */
	__u64 samples;
	__u32 tgid;
	__u32 flags;            /* PF_* (PF_KTHREAD: a kernel thread) */
	__s32 prio;
	__u32 policy;
	char comm[16];          /* the thread's name */
	char pcomm[16];         /* its process's (the thread group leader's) */
};

#define ONCPU_STACK_DEPTH 32
#define MAX_HOT         4096    /* (task, kernel stack, user stack) triples of focused tasks */

struct oncpu_hot_key {          /* where a focused task was found running */
	__u32 tid;
	__s32 kstack;
	__s32 ustack;
	__u32 pad;
};

struct oncpu_cpu {
	__u64 ns;               /* every sample on the CPU, idle included */
	__u64 samples;
	__u64 idle_ns;          /* samples that found the idle task */
};

#endif
