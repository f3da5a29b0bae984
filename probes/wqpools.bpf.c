// SPDX-License-Identifier: GPL-2.0
/* workqueue.pools: a snapshot of every workqueue worker pool, reached through its workers
 * (the kworkers: a task iterator, PF_WQ_WORKER tasks): the items waiting on its worklist
 * and since when no worker has taken one -- pool->watchdog_ts, the very stamp the kernel's
 * own workqueue watchdog compares with jiffies to report "workqueue lockup".  Run when the
 * window opens and when it closes, it sees items queued long before the investigation,
 * which the workqueue tracepoints only see when they are queued. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "snapshot.h"
#include "wqpools.h"

DEFINE_PROBE_STATS
EXPORT_CONST(WQP_WORKS);
EXPORT_CONST(WQP_NAME_LEN);

#define PF_WQ_WORKER    0x00000020
#define COUNT_MAX       256

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wqpool_rec);
} scratch SEC(".maps");

SEC("iter/task")
int dump_pools(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct worker_pool *pool;
	struct list_head *head, *pos;
	struct wqpool_rec *rec;
	struct worker *w;
	__u32 zero = 0, i, n = 0;

	snapshot_begin(ctx->meta);
	if (!task)
		return 0;
	COUNT_EVENT();
	if (!(BPF_CORE_READ(task, flags) & PF_WQ_WORKER))
		return 0;
	w = worker_of(task);
	if (!w)
		return 0;
	pool = BPF_CORE_READ(w, pool);
	if (!pool)
		return 0;
	rec = bpf_map_lookup_elem(&scratch, &zero);
	if (!rec)
		return 0;
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->pool = (__u64)pool;
	rec->now_ns = bpf_ktime_get_ns();
	rec->jiffies = bpf_jiffies64();
	rec->watchdog_ts = BPF_CORE_READ(pool, watchdog_ts);
	rec->current_func = (__u64)BPF_CORE_READ(w, current_func);
	rec->switches = BPF_CORE_READ(task, nvcsw) + BPF_CORE_READ(task, nivcsw);
	rec->tid = BPF_CORE_READ(task, pid);
	rec->state = get_task_state(task);
	rec->on_cpu = BPF_CORE_READ(task, on_cpu);
	rec->on_rq = BPF_CORE_READ(task, on_rq);
	rec->cpu = BPF_CORE_READ(pool, cpu);
	rec->nr_workers = BPF_CORE_READ(pool, nr_workers);
	rec->nr_idle = BPF_CORE_READ(pool, nr_idle);
	rec->pool_flags = BPF_CORE_READ(pool, flags);
	rec->worker_flags = BPF_CORE_READ(w, flags);
	BPF_CORE_READ_STR_INTO(&rec->comm, task, comm);

	head = (struct list_head *)((char *)pool + bpf_core_field_offset(struct worker_pool, worklist));
	pos = BPF_CORE_READ(pool, worklist.next);
	for (i = 0; i < COUNT_MAX; i++) {
		struct work_struct *work;
		struct pool_workqueue *pwq;
		__u64 data;

		if (!pos || pos == head)
			break;
		n++;
		if (i < WQP_WORKS) {
			work = (void *)((char *)pos - bpf_core_field_offset(struct work_struct, entry));
			rec->funcs[i] = (__u64)BPF_CORE_READ(work, func);
			data = BPF_CORE_READ(work, data.counter);
			pwq = work_pwq(data);           /* checked against the pool */
			if (pwq && BPF_CORE_READ(pwq, pool) == pool)
				BPF_CORE_READ_STR_INTO(&rec->wq[i], pwq, wq, name);
		}
		pos = BPF_CORE_READ(pos, next);
	}
	rec->pending = n;
	snapshot_write(seq, rec, sizeof(*rec));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
