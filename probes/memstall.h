/* SPDX-License-Identifier: GPL-2.0 */
/* mem.stall records, shared by memstall.bpf.c and its collector (collectors/memstall.py). */
#ifndef __MEMSTALL_H
#define __MEMSTALL_H

#include "reclaim.h"

struct memstall_task {                  /* one task: 104 bytes */
	struct mm_stall mm;             /* direct / memory cgroup reclaim and compaction */
	__u64 sleep_ns;                 /* off the CPU in a memory stall outside reclaim and
	                                 * compaction: a refault of a page evicted while in use,
	                                 * swap-in, memory.high throttling */
	__u64 sleep_since;              /* when the stall sleep going on began (0: none) */
	__u64 alloc_pages;              /* pages it allocated */
	__u64 reclaimed_pages;          /* pages its reclaims freed */
	__u32 reclaims;
	__u32 compactions;
	__u32 sleeps;
	__u32 tgid;
	__u32 kthread;                  /* a kernel thread (kswapd, kcompactd, a worker) */
	__u32 pad;
	char comm[16];
};

/* The allocations of the task that allocated last on a CPU, not yet added to its entry:
 * a task allocates in bursts, so its entry is touched once per burst (and when it leaves
 * the CPU), not once per page. */
struct memstall_alloc_run {
	__u32 tid;
	__u32 pad;
	__u64 pages;
};

#endif
