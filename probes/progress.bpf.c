// SPDX-License-Identifier: GPL-2.0
/* sched.progress: where the time of the tasks that matter went during the window --
 * running, waiting for a CPU, sleeping, blocked (D), waiting for I/O, stopped, frozen --
 * and, overlapping those, in memory reclaim and compaction.  A per-task state machine
 * driven by sched_switch and sched_wakeup: each transition adds the time since the last
 * one to the state the task was in.  The stacks where a task left the CPU are kept for its
 * longest stretch away, with the task that woke it.  Tasks a node's focus names are seeded
 * by user space at the start of the window (their state from /proc), so that a task that
 * never switches during the window is accounted too. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "progress.h"

DEFINE_PROBE_STATS

#define __TASK_STOPPED          0x0004
#define __TASK_TRACED           0x0008
#define TASK_PARKED             0x0040
#define TASK_DEAD_STATE         0x0080
#define TASK_WAKING             0x0200
#define TASK_RTLOCK_WAIT        0x1000  /* PREEMPT_RT: a spinlock turned sleeping lock */
#define TASK_FROZEN             0x8000  /* 6.1+ (commit f5d39b020809); older freezers sleep in D */
#define EEXIST_ID               (-17)   /* bpf_get_stackid: another stack has that hash */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct progress_task);
} tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 4096);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, PROGRESS_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

/* the state a task leaves the CPU in */
static __always_inline __u32 off_state(struct task_struct *p, bool preempt)
{
	__u32 s = get_task_state(p);

	if (preempt)                    /* preempted: runnable whatever it was about to do */
		return PS_RUNQ;
	if (s & TASK_DEAD_STATE)
		return PS_DEAD;
	/* a waker on another CPU may already have claimed it (after it left the run queue):
	 * it went to sleep and is being woken */
	if (s & (TASK_WAKING | TASK_PARKED))
		return PS_SLEEP;
	if (s & TASK_RTLOCK_WAIT)
		return PS_BLOCKED;
	if (s & TASK_FROZEN)
		return PS_FROZEN;
	if (s & (__TASK_STOPPED | __TASK_TRACED))
		return PS_STOPPED;
	if ((s & TASK_UNINTERRUPTIBLE) && (s & TASK_NOLOAD))    /* TASK_IDLE: a kthread at rest */
		return PS_SLEEP;
	if (s & TASK_UNINTERRUPTIBLE)
		return BPF_CORE_READ_BITFIELD_PROBED(p, in_iowait) ? PS_IO : PS_BLOCKED;
	if (s & TASK_INTERRUPTIBLE)
		return PS_SLEEP;
	return PS_RUNQ;                 /* still runnable: preempted */
}

static __always_inline struct progress_task *entry(struct task_struct *p, __u32 tid, __u64 now, __u32 state)
{
	struct progress_task *e, fresh = {};

	e = bpf_map_lookup_elem(&tasks, &tid);
	if (e)
		return e;
	fresh.since = now;
	fresh.first_ts = now;
	fresh.state = state;
	fresh.kstack = fresh.ustack = fresh.long_kstack = fresh.long_ustack = -1;
	fresh.tgid = BPF_CORE_READ(p, tgid);
	BPF_CORE_READ_STR_INTO(&fresh.comm, p, comm);
	if (bpf_map_update_elem(&tasks, &tid, &fresh, BPF_NOEXIST) && bpf_map_lookup_elem(&tasks, &tid) == NULL) {
		COUNT_DROP();           /* the map is full */
		return NULL;
	}
	return bpf_map_lookup_elem(&tasks, &tid);
}

static __always_inline void account(struct progress_task *e, __u64 now, __u32 state)
{
	if (state < PS_NSTATES && now > e->since)
		e->ns[state & 7] += now - e->since;
	e->since = now;
}

static __always_inline int on_switch(void *ctx, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u64 now = bpf_ktime_get_ns();
	struct progress_task *e;
	__u32 tid, st;

	COUNT_EVENT();
	tid = BPF_CORE_READ(prev, pid);
	if (tid && task_selected(prev) && (e = entry(prev, tid, now, PS_RUNNING)) && e->state != PS_DEAD) {
		st = off_state(prev, preempt);
		if (st == PS_DEAD) {            /* exited: its tid may come back as another task */
			bpf_map_delete_elem(&tasks, &tid);
		} else {
			account(e, now, PS_RUNNING);    /* it was on this CPU, whatever was known before */
			e->switches++;
			e->state = st;
			e->off_state = st;
			e->off_since = now;
			e->waker = 0;
			if (st == PS_RUNQ)
				e->preempted++;
			/* prev is current here: its stacks are where it leaves the CPU (taken for a
			 * focus only: on every switch of the machine they would cost too much) */
			if (targ_tids_on) {
				e->kstack = bpf_get_stackid(ctx, &stacks, 0);
				e->ustack = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
				if (e->kstack == EEXIST_ID)
					COUNT_DROP();
			} else {
				e->kstack = e->ustack = -1;
			}
		}
	}
	tid = BPF_CORE_READ(next, pid);
	if (tid && task_selected(next) && (e = entry(next, tid, now, PS_RUNQ)) && e->state != PS_DEAD) {
		/* normally queued until now; a sleeping state when its wakeup came before the probe */
		account(e, now, e->state == PS_R ? PS_RUNQ : e->state);
		if (e->off_since && now - e->off_since > e->longest_ns) {
			e->longest_ns = now - e->off_since;
			e->long_kstack = e->kstack;
			e->long_ustack = e->ustack;
			e->long_state = e->off_state;
			e->long_waker = e->waker;
		}
		e->state = PS_RUNNING;
		e->off_since = 0;
	}
	return 0;
}

static __always_inline int on_wakeup(struct task_struct *p)
{
	__u64 now = bpf_ktime_get_ns();
	struct progress_task *e;
	__u32 tid = BPF_CORE_READ(p, pid);

	COUNT_EVENT();
	if (!tid || !task_selected(p))
		return 0;
	e = bpf_map_lookup_elem(&tasks, &tid);
	if (!e || e->state == PS_RUNNING || e->state == PS_RUNQ || e->state == PS_R || e->state == PS_DEAD)
		return 0;               /* unknown until its next switch, or a wakeup of a runnable task */
	account(e, now, e->state);
	e->state = PS_RUNQ;
	e->wakeups++;
	return 0;
}

/* sched_waking runs in the waker's context (sched_wakeup may run on the target CPU, from
 * its wake list): the task current here is the one that woke it */
static __always_inline int on_waking(struct task_struct *p)
{
	struct progress_task *e;
	__u32 tid = BPF_CORE_READ(p, pid);

	COUNT_EVENT();
	if (!tid || !task_selected(p))
		return 0;
	e = bpf_map_lookup_elem(&tasks, &tid);
	if (e && e->state != PS_RUNNING && e->state != PS_RUNQ && e->state != PS_R)
		e->waker = bpf_get_current_pid_tgid() & 0xffffffff;
	return 0;
}

/* direct reclaim, memory cgroup reclaim and compaction run in the allocating task itself */
static __always_inline int on_mm(bool begin, bool compact)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u64 now = bpf_ktime_get_ns();
	struct progress_task *e;
	__u32 tid = BPF_CORE_READ(t, pid);

	COUNT_EVENT();
	if (!tid || !task_selected(t) || !(e = entry(t, tid, now, PS_RUNNING)))
		return 0;
	mm_stall_mark(&e->mm, begin, compact, now);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(btf_progress_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(ctx, preempt, prev, next);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(raw_progress_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(ctx, preempt, prev, next);
}

SEC("tp_btf/sched_waking")
int BPF_PROG(btf_progress_waking, struct task_struct *p)
{
	return on_waking(p);
}

SEC("raw_tp/sched_waking")
int BPF_PROG(raw_progress_waking, struct task_struct *p)
{
	return on_waking(p);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(btf_progress_wakeup, struct task_struct *p)
{
	return on_wakeup(p);
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(raw_progress_wakeup, struct task_struct *p)
{
	return on_wakeup(p);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(btf_progress_wakeup_new, struct task_struct *p)
{
	return on_wakeup(p);
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(raw_progress_wakeup_new, struct task_struct *p)
{
	return on_wakeup(p);
}

SEC("tp_btf/mm_vmscan_direct_reclaim_begin")
int btf_progress_reclaim_begin(void *ctx) { return on_mm(true, false); }
SEC("tp_btf/mm_vmscan_direct_reclaim_end")
int btf_progress_reclaim_end(void *ctx) { return on_mm(false, false); }
SEC("tp_btf/mm_vmscan_memcg_reclaim_begin")
int btf_progress_memcg_begin(void *ctx) { return on_mm(true, false); }
SEC("tp_btf/mm_vmscan_memcg_reclaim_end")
int btf_progress_memcg_end(void *ctx) { return on_mm(false, false); }
SEC("tp_btf/mm_compaction_begin")
int btf_progress_compact_begin(void *ctx) { return on_mm(true, true); }
SEC("tp_btf/mm_compaction_end")
int btf_progress_compact_end(void *ctx) { return on_mm(false, true); }

SEC("raw_tp/mm_vmscan_direct_reclaim_begin")
int raw_progress_reclaim_begin(void *ctx) { return on_mm(true, false); }
SEC("raw_tp/mm_vmscan_direct_reclaim_end")
int raw_progress_reclaim_end(void *ctx) { return on_mm(false, false); }
SEC("raw_tp/mm_vmscan_memcg_reclaim_begin")
int raw_progress_memcg_begin(void *ctx) { return on_mm(true, false); }
SEC("raw_tp/mm_vmscan_memcg_reclaim_end")
int raw_progress_memcg_end(void *ctx) { return on_mm(false, false); }
SEC("raw_tp/mm_compaction_begin")
int raw_progress_compact_begin(void *ctx) { return on_mm(true, true); }
SEC("raw_tp/mm_compaction_end")
int raw_progress_compact_end(void *ctx) { return on_mm(false, true); }

char LICENSE[] SEC("license") = "GPL";
