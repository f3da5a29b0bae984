// SPDX-License-Identifier: GPL-2.0
/* Blocked tasks snapshot: a BPF task iterator walks every task once and writes one
 * binary record per task in uninterruptible sleep (D, excluding TASK_IDLE kthreads), and
 * optionally per task in interruptible sleep that has not run for min_sleep_ns.  Each
 * record carries when the task last ran, its kernel stack and, where the kernel records
 * it (6.16+ CONFIG_DETECT_HUNG_TASK_BLOCKER), the lock it is blocked on and that lock's
 * owner.  It sees conditions that began long before the investigation. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "blocked.h"

const volatile bool include_sleeping = false;
const volatile __u64 min_sleep_ns = 10000000000ULL;    /* S-state tasks: not run for 10 s */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct blocked_rec);
} scratch SEC(".maps");

DEFINE_PROBE_STATS

/* 6.16 added task_struct::blocker (commit "hung_task: show the blocker task if the task
 * is hung on mutex"); 6.16 also added semaphore::last_holder. */
struct task_struct___blocker {
	unsigned long blocker;
} __attribute__((preserve_access_index));

struct semaphore___holder {
	unsigned long last_holder;
} __attribute__((preserve_access_index));

static __always_inline __u64 lock_owner(__u64 blocker)
{
	__u64 addr = blocker & ~BLOCKER_TYPE_MASK;
	__u64 owner = 0;

	switch (blocker & BLOCKER_TYPE_MASK) {
	case 0: /* BLOCKER_TYPE_MUTEX: mutex::owner, flags in the low 3 bits */
		owner = BPF_CORE_READ((struct mutex *)addr, owner.counter);
		break;
	case 1: /* BLOCKER_TYPE_SEM: semaphores have no owner; 6.16 keeps the last holder */
		if (bpf_core_field_exists(((struct semaphore___holder *)0)->last_holder))
			owner = BPF_CORE_READ((struct semaphore___holder *)addr, last_holder);
		break;
	case 3: /* BLOCKER_TYPE_RWSEM_WRITER: a writer waits, owner is the writer or a reader hint */
	case 2: /* BLOCKER_TYPE_RWSEM_READER */
		owner = BPF_CORE_READ((struct rw_semaphore *)addr, owner.counter);
		break;
	}
	return owner & ~7ULL;
}

SEC("iter/task")
int dump_blocked(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct blocked_rec *rec;
	unsigned int state;
	__u32 zero = 0;
	__u64 last;

	if (!task)
		return 0;
	COUNT_EVENT();
	state = get_task_state(task);
	if (!task_selected(task))
		return 0;
	rec = bpf_map_lookup_elem(&scratch, &zero);
	if (!rec)
		return 0;
	rec->now_ns = bpf_ktime_get_ns();
	rec->last_arrival_ns = BPF_CORE_READ(task, sched_info.last_arrival);
	rec->exec_start_ns = BPF_CORE_READ(task, se.exec_start);
	if (state & TASK_UNINTERRUPTIBLE) {
		if (state & TASK_NOLOAD)        /* TASK_IDLE: an idle kthread, not blocked */
			return 0;
	} else if (state & TASK_INTERRUPTIBLE) {
		/* a task sleeping interruptibly on a mutex/rwsem (mutex_lock_interruptible)
		 * is blocked on a lock all the same: keep it, for the wait-for graph */
		if (bpf_core_field_exists(((struct task_struct___blocker *)task)->blocker) &&
		    BPF_CORE_READ((struct task_struct___blocker *)task, blocker))
			goto keep;
		if (!include_sleeping)
			return 0;
		last = rec->last_arrival_ns > rec->exec_start_ns ? rec->last_arrival_ns
								  : rec->exec_start_ns;
		if (rec->now_ns - last < min_sleep_ns)
			return 0;
	} else {
		return 0;
	}
keep:
	rec->tid = BPF_CORE_READ(task, pid);
	rec->tgid = BPF_CORE_READ(task, tgid);
	rec->state = state;
	rec->flags = BPF_CORE_READ(task, flags);
	rec->prio = BPF_CORE_READ(task, prio);
	rec->nvcsw = BPF_CORE_READ(task, nvcsw);
	rec->nivcsw = BPF_CORE_READ(task, nivcsw);
	BPF_CORE_READ_STR_INTO(&rec->comm, task, comm);
	rec->blocker = 0;
	rec->lock_owner = 0;
	rec->owner_tid = 0;
	rec->owner_tgid = 0;
	__builtin_memset(rec->owner_comm, 0, sizeof(rec->owner_comm));
	if (bpf_core_field_exists(((struct task_struct___blocker *)task)->blocker)) {
		rec->blocker = BPF_CORE_READ((struct task_struct___blocker *)task, blocker);
		if (rec->blocker) {
			struct task_struct *owner = (void *)lock_owner(rec->blocker);

			rec->lock_owner = (__u64)owner;
			if (owner) {
				rec->owner_tid = BPF_CORE_READ(owner, pid);
				rec->owner_tgid = BPF_CORE_READ(owner, tgid);
				BPF_CORE_READ_STR_INTO(&rec->owner_comm, owner, comm);
			}
		}
	}
	rec->stack_bytes = bpf_get_task_stack(task, rec->stack, sizeof(rec->stack), 0);
	bpf_seq_write(seq, rec, sizeof(*rec));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
