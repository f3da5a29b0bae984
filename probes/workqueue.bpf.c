// SPDX-License-Identifier: GPL-2.0
/* Workqueues: queue -> execute-start latency and execution time per work function and
 * pool CPU, with the task that queued the worst-delayed item; the items queued and not yet
 * started, and the items started and not yet finished (stuck in their handler), are left in
 * bounded maps that user space reads with their age.
 *
 * Twin programs: tp_btf (5.5+) preferred, raw_tp fallback; both call the same handlers. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "workqueue.h"

const volatile __u64 min_delay_ns = 0;  /* delays below this are counted but not kept as worst */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct wq_queued);
} queued SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct wq_running);
} running SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct wq_key);
	__type(value, struct wq_stats);
} stats_by_func SEC(".maps");

DEFINE_PROBE_STATS
EXPORT_CONST(WQ_HIST_SLOTS);

__u64 queued_dropped = 0;               /* items not timed: queued was full */
__u64 stats_dropped = 0;                /* items not timed: stats_by_func was full */
__u64 exec_dropped = 0;                 /* executions of timed items lost: running was full */

static __always_inline int on_queue(int req_cpu, struct pool_workqueue *pwq, struct work_struct *work)
{
	struct task_struct *cur = (void *)bpf_get_current_task();
	struct wq_queued q = {};
	__u64 key = (__u64)work;

	COUNT_EVENT();
	if (!task_selected(cur))        /* targets select the task that queues the work */
		return 0;
	q.ts = bpf_ktime_get_ns();
	q.func = (__u64)BPF_CORE_READ(work, func);
	q.pool_cpu = BPF_CORE_READ(pwq, pool, cpu);
	q.req_cpu = req_cpu;
	q.queuer_tid = BPF_CORE_READ(cur, pid);
	q.queuer_tgid = BPF_CORE_READ(cur, tgid);
	BPF_CORE_READ_STR_INTO(&q.queuer_comm, cur, comm);
	BPF_CORE_READ_STR_INTO(&q.wq, pwq, wq, name);
	if (bpf_map_update_elem(&queued, &key, &q, BPF_ANY)) {
		COUNT_DROP();
		__sync_fetch_and_add(&queued_dropped, 1);
	}
	return 0;
}

/* The statistics of a queued item's function and pool CPU, created on first use. */
static __always_inline struct wq_stats *stats_of(struct wq_queued *q)
{
	struct wq_key k = {.func = q->func, .cpu = q->pool_cpu};
	struct wq_stats *s = bpf_map_lookup_elem(&stats_by_func, &k);

	if (!s) {
		struct wq_stats zero = {};

		__builtin_memcpy(zero.wq, q->wq, sizeof(zero.wq));
		bpf_map_update_elem(&stats_by_func, &k, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&stats_by_func, &k);
		if (!s) {
			COUNT_DROP();
			__sync_fetch_and_add(&stats_dropped, 1);
		}
	}
	return s;
}

static __always_inline int on_start(struct work_struct *work)
{
	struct task_struct *cur = (void *)bpf_get_current_task();
	__u64 key = (__u64)work, now = bpf_ktime_get_ns(), delta;
	struct wq_running r = {};
	struct wq_queued *q;
	struct wq_stats *s;

	COUNT_EVENT();
	r.ts = now;
	r.func = (__u64)BPF_CORE_READ(work, func);
	r.worker_tid = BPF_CORE_READ(cur, pid);
	r.cpu = bpf_get_smp_processor_id();
	BPF_CORE_READ_STR_INTO(&r.worker_comm, cur, comm);

	q = bpf_map_lookup_elem(&queued, &key);
	s = q ? stats_of(q) : NULL;
	/* execute_end has no pool: the stats key goes with the running item.  An item whose
	 * queue_work was not seen (before the probe attached, or by a task not selected) is
	 * kept for the running list but timed nowhere, so both ends count the same items. */
	if (s) {
		r.pool_cpu = q->pool_cpu;
		r.keyed = 1;
	}
	if (bpf_map_update_elem(&running, &key, &r, BPF_ANY)) {
		COUNT_DROP();
		if (s)
			__sync_fetch_and_add(&exec_dropped, 1);
	}
	if (!q)
		return 0;
	if (!s) {
		bpf_map_delete_elem(&queued, &key);
		return 0;
	}
	delta = now - q->ts;
	__u32 slot = log2_u64(delta / 1000);

	if (slot >= WQ_HIST_SLOTS)
		slot = WQ_HIST_SLOTS - 1;
	__sync_fetch_and_add(&s->delay_slots[slot], 1);
	__sync_fetch_and_add(&s->count, 1);
	__sync_fetch_and_add(&s->delay_sum_ns, delta);
	if (delta > s->delay_max_ns && delta >= min_delay_ns) {
		s->delay_max_ns = delta;
		s->worst_at_ns = now;
		s->worst_queuer_tid = q->queuer_tid;
		s->worst_queuer_tgid = q->queuer_tgid;
		__builtin_memcpy(s->worst_queuer_comm, q->queuer_comm, sizeof(s->worst_queuer_comm));
		s->worst_worker_tid = r.worker_tid;
		__builtin_memcpy(s->worst_worker_comm, r.worker_comm, sizeof(s->worst_worker_comm));
	}
	bpf_map_delete_elem(&queued, &key);
	return 0;
}

static __always_inline int on_end(struct work_struct *work)
{
	__u64 key = (__u64)work, now = bpf_ktime_get_ns(), delta;
	struct wq_running *r;
	struct wq_stats *s;
	struct wq_key k = {};

	COUNT_EVENT();
	r = bpf_map_lookup_elem(&running, &key);
	if (!r)
		return 0;
	delta = now - r->ts;
	k.func = r->func;      /* the tracepoint's function argument is refused to tp_btf (a
	                        * function pointer): use the one read at execute_start */
	k.cpu = r->pool_cpu;
	s = r->keyed ? bpf_map_lookup_elem(&stats_by_func, &k) : NULL;
	if (s) {
		__sync_fetch_and_add(&s->exec_count, 1);
		__sync_fetch_and_add(&s->exec_sum_ns, delta);
		if (delta > s->exec_max_ns)
			s->exec_max_ns = delta;
	} else if (r->keyed) {
		__sync_fetch_and_add(&exec_dropped, 1);
	}
	bpf_map_delete_elem(&running, &key);
	return 0;
}

SEC("tp_btf/workqueue_queue_work")
int BPF_PROG(btf_wq_queue, int req_cpu, struct pool_workqueue *pwq, struct work_struct *work)
{
	return on_queue(req_cpu, pwq, work);
}

SEC("tp_btf/workqueue_execute_start")
int BPF_PROG(btf_wq_start, struct work_struct *work)
{
	return on_start(work);
}

SEC("tp_btf/workqueue_execute_end")
int BPF_PROG(btf_wq_end, struct work_struct *work)
{
	return on_end(work);
}

SEC("raw_tp/workqueue_queue_work")
int BPF_PROG(raw_wq_queue, int req_cpu, struct pool_workqueue *pwq, struct work_struct *work)
{
	return on_queue(req_cpu, pwq, work);
}

SEC("raw_tp/workqueue_execute_start")
int BPF_PROG(raw_wq_start, struct work_struct *work)
{
	return on_start(work);
}

SEC("raw_tp/workqueue_execute_end")
int BPF_PROG(raw_wq_end, struct work_struct *work)
{
	return on_end(work);
}

char LICENSE[] SEC("license") = "GPL";
