// SPDX-License-Identifier: GPL-2.0
/* Futex waiters snapshot: a sleepable BPF task iterator finds every task blocked in the
 * futex() system call -- the syscall number and arguments are in the task's saved user
 * registers -- and reads, from the waiting task's own memory, the futex word and the
 * 32-bit word 8 bytes further, where glibc keeps a pthread mutex's owner TID, and the words
 * around it (a pthread_rwlock_t keeps its writer's TID 12 or 16 bytes after the futex its
 * waiters sleep on).  User space
 * turns that into wait-for edges (waiter -> owner) and looks for cycles.  Run when the
 * window opens and when it closes: a cycle present in both, whose tasks did not run in
 * between, is a deadlock -- however long before the investigation it began.
 *
 * x86_64: orig_ax holds the syscall number, di/si/dx the first arguments.  Sleepable
 * iterators and bpf_copy_from_user_task() need 5.18+; before, dump_futex_waiters finds the
 * waiters and user space reads the words (/proc/PID/mem). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "snapshot.h"
#include "futex.h"

const volatile __u32 futex_nr = 202;    /* __NR_futex on x86_64, set by user space */


struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct futex_rec);
} scratch SEC(".maps");

DEFINE_PROBE_STATS

#define EBUSY 16
#define RWSEM_WRITER_LOCKED (1UL << 0)
#define RWSEM_FLAG_WAITERS  (1UL << 1)

/* Reading another task's memory takes its mm's mmap_lock for reading, and waits while a
 * writer holds it or is queued for it -- a thread stuck in mmap() or munmap() on a hung
 * filesystem would then hang the investigation.  So the lock is looked at first, and a
 * process whose mmap_lock is write-held or contended is not read (a race remains between
 * this look and the read; it is short).  PREEMPT_RT's rw_semaphore has no count: there
 * nothing is skipped. */
static __always_inline bool mmap_lock_busy(struct task_struct *task)
{
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	long count;

	if (!mm)
		return true;
	if (!bpf_core_field_exists(mm->mmap_lock.count))
		return false;
	count = BPF_CORE_READ(mm, mmap_lock.count.counter);
	return count & (RWSEM_WRITER_LOCKED | RWSEM_FLAG_WAITERS);
}

/* A task's saved user registers.  Before bpf_task_pt_regs() (5.15) they are where the
 * kernel keeps them, at the top of its kernel stack (x86_64 and arm64 leave no padding
 * there before 6.x's FRED). */
static __always_inline struct pt_regs *user_regs(struct task_struct *task)
{
	__u64 base, size;

	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
		return (struct pt_regs *)bpf_task_pt_regs(task);
	base = (__u64)BPF_CORE_READ(task, stack);
	size = kernel_stack_size_here();
	if (!base || !size)
		return NULL;
	return (struct pt_regs *)(base + size) - 1;
}

/* Where user memory cannot be read from here (a kernel before bpf_copy_from_user_task(),
 * 5.18), the record says so with this error and user space reads the words. */
#define READ_IN_USERSPACE (-38)         /* -ENOSYS */

static __always_inline int dump(struct bpf_iter__task *ctx, bool sleepable)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct futex_rec *rec;
	struct pt_regs *regs;
	__u32 zero = 0, words[3] = {};
	unsigned int state;

	snapshot_begin(ctx->meta);
	if (!task)
		return 0;
	COUNT_EVENT();
	state = get_task_state(task);
	if (!(state & (TASK_INTERRUPTIBLE | TASK_UNINTERRUPTIBLE)))
		return 0;
	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		return 0;
	if (!task_selected(task))
		return 0;
	regs = user_regs(task);
	if (!regs || BPF_CORE_READ(regs, orig_ax) != futex_nr)
		return 0;
	rec = bpf_map_lookup_elem(&scratch, &zero);
	if (!rec)
		return 0;
	rec->uaddr = BPF_CORE_READ(regs, di);
	rec->op = BPF_CORE_READ(regs, si);       /* with FUTEX_PRIVATE_FLAG: shared or not */
	rec->val = BPF_CORE_READ(regs, dx);
	rec->word = rec->owner = 0;
	if (mmap_lock_busy(task)) {
		rec->read_err = rec->near_err = -EBUSY;
	} else if (!sleepable) {
		rec->read_err = rec->near_err = READ_IN_USERSPACE;
	} else {
		rec->read_err = bpf_copy_from_user_task(words, sizeof(words), (void *)rec->uaddr, task, 0);
		rec->word = words[0];
		rec->owner = words[2];
		rec->near_err = bpf_copy_from_user_task(rec->near, sizeof(rec->near), (void *)(rec->uaddr - 16),
							task, 0);
	}
	rec->tid = BPF_CORE_READ(task, pid);
	rec->tgid = BPF_CORE_READ(task, tgid);
	rec->state = state;
	rec->prio = BPF_CORE_READ(task, prio);
	rec->policy = BPF_CORE_READ(task, policy);
	rec->nvcsw = BPF_CORE_READ(task, nvcsw);
	rec->nivcsw = BPF_CORE_READ(task, nivcsw);
	rec->now_ns = bpf_ktime_get_ns();
	rec->off_cpu_ns = task_off_cpu_ns(task);
	BPF_CORE_READ_STR_INTO(&rec->comm, task, comm);
	snapshot_write(seq, rec, sizeof(*rec));
	return 0;
}

SEC("iter.s/task")
int dump_futex(struct bpf_iter__task *ctx)
{
	return dump(ctx, true);
}

/* Before 5.18 (no sleepable task iterators, no bpf_copy_from_user_task(), and a sleepable
 * program may not use a per-CPU map): the waiters and their futex addresses only. */
SEC("iter/task")
int dump_futex_waiters(struct bpf_iter__task *ctx)
{
	return dump(ctx, false);
}

char LICENSE[] SEC("license") = "GPL";
