/* SPDX-License-Identifier: GPL-2.0 */
/* Records of the workqueue probe (mirrored in investigator/probes/collectors/workqueue.py). */
#ifndef __WORKQUEUE_H
#define __WORKQUEUE_H

#define WQ_NAME_LEN     32
#define WQ_HIST_SLOTS   32

/* a work item between queue_work and execute_start (key: work_struct pointer) */
struct wq_queued {
	__u64 ts;
	__u64 func;
	__u32 queuer_tid;
	__u32 queuer_tgid;
	__s32 pool_cpu;         /* the worker pool's CPU, -1 for unbound pools */
	__u32 req_cpu;
	char queuer_comm[16];
	char wq[WQ_NAME_LEN];
};

/* a work item between execute_start and execute_end (key: work_struct pointer) */
struct wq_running {
	__u64 ts;
	__u64 func;
	__u32 worker_tid;
	__s32 cpu;
	__s32 pool_cpu;         /* its stats key's CPU, from queue_work */
	__u32 keyed;            /* 1: its stats entry exists (queue_work was seen) */
	char worker_comm[16];
};

/* per work function (key: struct wq_key) */
struct wq_key {
	__u64 func;
	__s32 cpu;              /* pool CPU of the item (-1 unbound) */
	__u32 pad;
};

struct wq_stats {
	__u64 delay_slots[WQ_HIST_SLOTS];   /* log2 us, queue -> start */
	__u64 count;
	__u64 delay_sum_ns;
	__u64 delay_max_ns;
	__u64 exec_count;
	__u64 exec_sum_ns;
	__u64 exec_max_ns;
	__u32 worst_queuer_tid;             /* who queued the worst-delayed item */
	__u32 worst_queuer_tgid;
	__u64 worst_at_ns;
	__u32 worst_worker_tid;             /* the worker that finally ran it */
	__u32 pad2;
	char worst_queuer_comm[16];
	char worst_worker_comm[16];
	char wq[WQ_NAME_LEN];
};

#endif
