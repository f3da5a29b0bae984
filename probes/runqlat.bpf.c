// SPDX-License-Identifier: GPL-2.0
/* Run-queue latency: how long runnable tasks wait for a CPU (wakeup or preemption ->
 * switched in), per CPU as a log2 histogram, per task for waits >= min_wait_ns, and for
 * each task's worst wait the task that held that CPU longest meanwhile (the candidate
 * culprit), from a small per-CPU history of the last slices of at least min_slice_ns.
 *
 * Twin programs: tp_btf (5.5+) preferred, raw_tp fallback; both call the same handlers. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "runqlat.h"

const volatile __u64 min_wait_ns = 1000000;     /* per-task records from this wait up */
const volatile __u64 over_ns = 100000000;       /* counted as "over threshold" */
const volatile __u64 min_slice_ns = 1000000;    /* slices shorter than this are not kept for
						 * culprit attribution: they cannot explain a
						 * long wait, and a burst of them (kworkers
						 * after RT throttling) would push the hog's
						 * slice out of the ring */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);              /* set to the number of possible CPUs at load */
	__type(key, __u32);
	__type(value, struct cpu_lat);
} cpu_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct task_lat);
} task_lat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_ring);
} ring SEC(".maps");

DEFINE_PROBE_STATS
EXPORT_CONST(HIST_SLOTS);

__u64 starts_dropped = 0;               /* waits not timed: the start map was full */

/* A wakeup starts a wait unless one is already under way: try_to_wake_up() on a task
 * that is already queued (ttwu_runnable) fires sched_wakeup again, and overwriting would
 * restart the clock of a task that keeps waiting (a kworker woken for each new work item
 * while a hog holds its CPU).  A preemption always starts a new wait. */
static __always_inline int enqueue(struct task_struct *p, __u64 flags)
{
	__u32 tid = BPF_CORE_READ(p, pid);
	__u64 ts;
	long err;

	if (!tid)
		return 0;
	if (!task_selected(p))
		return 0;
	ts = bpf_ktime_get_ns();
	err = bpf_map_update_elem(&start, &tid, &ts, flags);
	/* -EEXIST: a wait already under way (BPF_NOEXIST); anything else: the map is full */
	if (err && err != -EEXIST) {
		__sync_fetch_and_add(&starts_dropped, 1);
		COUNT_DROP();
	}
	return 0;
}

#define CANDIDATES 4

struct candidates {
	struct {
		__u64 sum;
		__u64 task;
		__u32 tid;
		__s32 prio;
	} c[CANDIDATES];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct candidates);
} scratch SEC(".maps");

/* The rare path (a task's new worst wait): the task that held this CPU the longest in
 * total during the wait [from, to], summing its slices (an RT hog's run is split when a
 * stop-class or higher-priority task preempts it briefly).  Up to CANDIDATES distinct
 * tasks are summed; a slice of a further task replaces the smallest sum. */
static __always_inline void find_culprit(struct cpu_ring *r, __u64 from, __u64 to,
					 struct culprit *c)
{
	__u64 best = 0, best_task = 0;
	__u32 best_tid = 0, zero = 0;
	__s32 best_prio = 0;
	struct candidates *cd = bpf_map_lookup_elem(&scratch, &zero);

	if (!cd)
		return;
	__builtin_memset(cd, 0, sizeof(*cd));
	/* the oldest slice still in the ring: longer slices that started before it were
	 * evicted and are looked for in top[] */
	__u64 ring_from = r->s[r->head & (RING_SLICES - 1)].start;

	for (int i = 0; i < RING_SLICES + TOP_SLICES; i++) {
		struct slice *s = i < RING_SLICES ? &r->s[i & (RING_SLICES - 1)]
						  : &r->top[(i - RING_SLICES) & (TOP_SLICES - 1)];
		__u64 lo = s->start > from ? s->start : from;
		__u64 hi = s->end < to ? s->end : to;
		int slot = -1, smallest = 0;

		if (!s->end || hi <= lo)
			continue;
		if (i >= RING_SLICES && (!ring_from || s->start >= ring_from))
			continue;       /* still in the ring (or the ring never wrapped): counted */
		for (int k = 0; k < CANDIDATES; k++) {
			if (cd->c[k].sum && cd->c[k].tid == s->tid) {
				slot = k;
				break;
			}
			if (cd->c[k].sum < cd->c[smallest & (CANDIDATES - 1)].sum)
				smallest = k;
		}
		if (slot < 0) {
			slot = smallest & (CANDIDATES - 1);
			cd->c[slot].sum = 0;
			cd->c[slot].tid = s->tid;
			cd->c[slot].task = s->task;
			cd->c[slot].prio = s->prio;
		}
		cd->c[slot & (CANDIDATES - 1)].sum += hi - lo;
	}
	for (int k = 0; k < CANDIDATES; k++) {
		if (cd->c[k].sum > best) {
			best = cd->c[k].sum;
			best_tid = cd->c[k].tid;
			best_task = cd->c[k].task;
			best_prio = cd->c[k].prio;
		}
	}
	c->overlap_ns = best;
	c->tid = best_tid;
	c->prio = best_prio;
	c->tgid = 0;
	c->policy = 0;
	__builtin_memset(c->comm, 0, sizeof(c->comm));
	if (best_task && best_tid) {
		struct task_struct *t = (void *)best_task;

		/* the task may have exited since: these are checked reads, and user space
		 * cross-checks the tid */
		c->tgid = BPF_CORE_READ(t, tgid);
		c->policy = BPF_CORE_READ(t, policy);
		BPF_CORE_READ_STR_INTO(&c->comm, t, comm);
	}
}

/* Keep the slice in top[] if it is longer than one there, or one there is too old. */
static __always_inline void keep_if_long(struct cpu_ring *r, struct slice *s, __u64 now)
{
	__u64 len = s->end - s->start;
	int victim = -1;
	__u64 shortest = len;

	for (int k = 0; k < TOP_SLICES; k++) {
		struct slice *t = &r->top[k];
		__u64 tlen = t->end - t->start;

		if (!t->end || now - t->end > TOP_WINDOW_NS) {
			victim = k;
			break;
		}
		if (tlen < shortest) {
			shortest = tlen;
			victim = k;
		}
	}
	if (victim >= 0)
		r->top[victim & (TOP_SLICES - 1)] = *s;
}

static __always_inline int on_switch(struct task_struct *prev, struct task_struct *next)
{
	__u64 now = bpf_ktime_get_ns(), *tsp, delta;
	__u32 cpu = bpf_get_smp_processor_id(), zero = 0, tid;
	struct cpu_ring *r;
	struct cpu_lat *h;
	struct task_lat *t;

	COUNT_EVENT();
	r = bpf_map_lookup_elem(&ring, &zero);
	if (r) {
		/* no switch seen on this CPU since attach: prev has held it since before the
		 * probe attached (start 1 = "since before"; overlaps are clipped to the wait) */
		__u64 st = r->cur_start ? r->cur_start : 1;

		if (now - st >= min_slice_ns) {
			struct slice *s = &r->s[r->head & (RING_SLICES - 1)];

			s->start = st;
			s->end = now;
			s->task = (__u64)prev;
			s->tid = BPF_CORE_READ(prev, pid);
			s->prio = BPF_CORE_READ(prev, prio);
			r->head++;
			keep_if_long(r, s, now);
		}
		r->cur_start = now;
	}

	if (get_task_state(prev) == TASK_RUNNING) {    /* preempted: back to the run queue */
		enqueue(prev, BPF_ANY);
	} else {
		/* going to sleep: forget a wakeup that arrived while it was still running */
		__u32 ptid = BPF_CORE_READ(prev, pid);

		bpf_map_delete_elem(&start, &ptid);
	}

	tid = BPF_CORE_READ(next, pid);
	if (!tid)
		return 0;
	tsp = bpf_map_lookup_elem(&start, &tid);
	if (!tsp)
		return 0;
	delta = now - *tsp;
	bpf_map_delete_elem(&start, &tid);
	if ((__s64)delta < 0)
		return 0;

	h = bpf_map_lookup_elem(&cpu_hist, &cpu);
	if (h) {
		__u32 slot = log2_u64(delta / 1000);

		if (slot >= HIST_SLOTS)
			slot = HIST_SLOTS - 1;
		h->slots[slot]++;
		h->count++;
		h->sum_ns += delta;
		if (delta > h->max_ns) {
			h->max_ns = delta;
			h->max_tid = tid;
		}
		if (delta >= over_ns)
			h->over++;
	}

	if (delta < min_wait_ns)
		return 0;
	t = bpf_map_lookup_elem(&task_lat, &tid);
	if (!t) {
		struct task_lat zero_rec = {};

		zero_rec.tgid = BPF_CORE_READ(next, tgid);
		BPF_CORE_READ_STR_INTO(&zero_rec.comm, next, comm);
		bpf_map_update_elem(&task_lat, &tid, &zero_rec, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&task_lat, &tid);
		if (!t) {
			COUNT_DROP();
			return 0;
		}
	}
	__sync_fetch_and_add(&t->count, 1);
	__sync_fetch_and_add(&t->total_ns, delta);
	if (delta >= over_ns)
		__sync_fetch_and_add(&t->over, 1);
	if (delta > t->max_ns) {
		t->max_ns = delta;
		t->max_at_ns = now;
		t->max_cpu = cpu;
		t->prio = BPF_CORE_READ(next, prio);
		t->policy = BPF_CORE_READ(next, policy);
		if (r)
			find_culprit(r, now - delta, now, &t->culprit);
	}
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(btf_sched_wakeup, struct task_struct *p)
{
	return enqueue(p, BPF_NOEXIST);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(btf_sched_wakeup_new, struct task_struct *p)
{
	return enqueue(p, BPF_NOEXIST);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(btf_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(prev, next);
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(raw_sched_wakeup, struct task_struct *p)
{
	return enqueue(p, BPF_NOEXIST);
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(raw_sched_wakeup_new, struct task_struct *p)
{
	return enqueue(p, BPF_NOEXIST);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(raw_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(prev, next);
}

char LICENSE[] SEC("license") = "GPL";
