/* SPDX-License-Identifier: GPL-2.0 */
/* One blocked task's record (struct blocked_rec): who, state, when it last ran, its kernel
 * stack and the lock the kernel says it is blocked on with that lock's owner.  Shared by
 * the blocked-tasks iterator (blocked.bpf.c) and the hung-task tracepoint (hung.bpf.c). */
#ifndef __TASK_RECORD_H
#define __TASK_RECORD_H

#include "blocked.h"

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

/* The owner of rec->blocker's lock, when it has one, into the record. */
static __always_inline void fill_owner(struct blocked_rec *rec)
{
	struct task_struct *owner = (void *)lock_owner(rec->blocker);

	rec->lock_owner = (__u64)owner;
	if (owner) {
		rec->owner_tid = BPF_CORE_READ(owner, pid);
		rec->owner_tgid = BPF_CORE_READ(owner, tgid);
		BPF_CORE_READ_STR_INTO(&rec->owner_comm, owner, comm);
	}
}

/* with_stack: bpf_get_task_stack() needs a trusted task pointer (an iterator's, tp_btf's);
 * a raw_tp program passes false and the record has no stack (stack_bytes 0). */
static __always_inline void fill_blocked_rec(struct task_struct *task, struct blocked_rec *rec,
					     unsigned int state, bool with_stack)
{
	rec->now_ns = bpf_ktime_get_ns();
	rec->off_cpu_ns = task_off_cpu_ns(task);
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
	rec->blocker_src = BLOCKER_SRC_NONE;
	if (bpf_core_field_exists(((struct task_struct___blocker *)task)->blocker)) {
		rec->blocker = BPF_CORE_READ((struct task_struct___blocker *)task, blocker);
		if (rec->blocker) {
			rec->blocker_src = BLOCKER_SRC_KERNEL;
			fill_owner(rec);
		}
	}
	rec->stack_bytes = with_stack ? bpf_get_task_stack(task, rec->stack, sizeof(rec->stack), 0) : 0;
}

#endif
