/* SPDX-License-Identifier: GPL-2.0 */
/* workqueue.pools records, shared by wqpools.bpf.c and its collector (collectors/wqpools.py). */
#ifndef __WQPOOLS_H
#define __WQPOOLS_H

#define WQP_WORKS       8               /* pending work items named per pool */
#define WQP_NAME_LEN    32

struct wqpool_rec {                     /* one kworker, with its pool: 512 bytes */
	__u64 pool;                     /* the worker_pool's address: groups the workers */
	__u64 now_ns;
	__u64 jiffies;                  /* bpf_jiffies64() when read */
	__u64 watchdog_ts;              /* jiffies when a worker last took an item (or the list filled) */
	__u64 current_func;             /* the item this worker runs (0: none) */
	__u64 switches;                 /* nvcsw + nivcsw of the worker */
	__u64 funcs[WQP_WORKS];         /* the first pending items' functions, oldest first */
	__u32 tid;
	__u32 state;                    /* task state: 0 runnable, 1 interruptible, 2 D ... */
	__u32 on_cpu;
	__u32 on_rq;
	__s32 cpu;                      /* the pool's CPU; -1 for an unbound pool */
	__u32 pending;                  /* items on the pool's worklist (counted up to 256) */
	__s32 nr_workers;
	__s32 nr_idle;
	__u32 pool_flags;
	__u32 worker_flags;
	char comm[16];
	char wq[WQP_WORKS][WQP_NAME_LEN];       /* their workqueues' names */
};

#endif
