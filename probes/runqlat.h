/* SPDX-License-Identifier: GPL-2.0 */
/* Records of the run-queue latency probe, shared with user space
 * (investigator/probes/collectors/runqlat.py mirrors them; a test checks the layout). */
#ifndef __RUNQLAT_H
#define __RUNQLAT_H

#define HIST_SLOTS      32      /* log2 buckets of microseconds */
#define RING_SLICES     32      /* per-CPU history of who ran, for culprit attribution */
#define TOP_SLICES      4       /* and its longest slices of the last TOP_WINDOW_NS */
#define TOP_WINDOW_NS   5000000000ULL

struct cpu_lat {
	__u64 slots[HIST_SLOTS];
	__u64 count;
	__u64 sum_ns;
	__u64 max_ns;
	__u64 over;             /* waits >= over_ns */
	__u32 max_tid;
	__u32 pad;
};

struct culprit {
	__u64 overlap_ns;       /* how long it held the CPU during the wait */
	__u32 tid;
	__u32 tgid;
	__s32 prio;
	__u32 policy;
	char comm[16];
};

struct task_lat {
	__u64 count;            /* waits >= min_wait_ns */
	__u64 total_ns;
	__u64 max_ns;
	__u64 over;
	__u64 max_at_ns;        /* bpf_ktime_get_ns() when the worst wait ended */
	__u32 tgid;
	__u32 max_cpu;
	__s32 prio;
	__u32 policy;
	char comm[16];
	struct culprit culprit; /* who held max_cpu during the worst wait */
};

struct slice {
	__u64 start;
	__u64 end;
	__u64 task;             /* task_struct pointer, read only on the rare path */
	__u32 tid;
	__s32 prio;
};

struct cpu_ring {
	__u64 cur_start;
	__u32 head;
	__u32 pad;
	struct slice s[RING_SLICES];
	/* A burst of short slices (more than RING_SLICES) can push a hog's long slice out
	 * of the ring before the wait it caused ends; the longest recent slices stay here. */
	struct slice top[TOP_SLICES];
};

#endif
