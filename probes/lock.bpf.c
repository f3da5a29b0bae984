// SPDX-License-Identifier: GPL-2.0
/* lock.contention: kernel lock contention from the lock:contention_begin/end tracepoints
 * (the waiter's side) -- wait time per lock address and kind, the waiter's kernel stack,
 * and the lock's owner when the kernel records one (mutex, rw_semaphore writer, rt_mutex),
 * read with CO-RE at the moment the wait begins.  Waits still in progress when the window
 * closes are kept (by waiter) with their owner: the kernel-lock edges of the wait-for graph. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "lock.h"

DEFINE_PROBE_STATS
EXPORT_CONST(LOCK_SLOTS);
EXPORT_CONST(LOCK_STACK_DEPTH);
EXPORT_CONST(LOCK_WAITERS);

const volatile __u64 min_wait_ns = 0;

/* Waits the maps had no room for, read by the collector from .bss: a wait that began
 * while `waiting` was full (its wait-for edge is missing: edges_dropped), and an ended
 * wait whose lock found no room in `by_lock` (missing from the per-lock statistics). */
__u64 waits_dropped = 0;
__u64 ended_dropped = 0;
__u64 waiters_dropped = 0;             /* ended waits whose (lock, waiter) pair found no room */

/* Where a wait is kept while it lasts.  A task waits for one lock at a time, but a wait
 * can hold others inside it: a mutex or rwsem waiter spins on the lock's wait_lock in the
 * slow path, an interrupt handler spins on a spinlock while the task it interrupted
 * spins on another.  As perf's lock_contention.bpf.c does, a spinning wait (SPIN without
 * MUTEX: the waiter has preemption off until the wait ends) is kept in a per-CPU slot
 * and a sleeping one (mutex, rwsem, rt_mutex, percpu_rwsem; a mutex's optimistic spin
 * too) by task; a wait that begins while the same place holds one is inner: only counted
 * in the outer's `nested`, so it neither replaces the outer nor ends it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct lock_wait);
} waiting SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lock_wait);
} spinning SEC(".maps");                /* lock == 0: no spinning wait on this CPU */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct lock_stat);
} by_lock SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lock_wait);
} scratch SEC(".maps");                 /* a wait being recorded: too large for the BPF stack */

/* Every contender of every lock: the summed waits of each (lock, waiter) pair, so a lock
 * is judged by what all its waiters lost, not by its longest wait. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LOCK_WAITERS);
	__type(key, struct lock_waiter_key);
	__type(value, struct lock_waiter);
} by_waiter SEC(".maps");

struct lock_stat zero_stat = {};        /* never written */
struct lock_waiter zero_waiter = {};    /* never written */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOCK_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} hist SEC(".maps");

/* The owner word of the lock, by the waiter's flags; 0 when the lock keeps none. */
static __always_inline __u64 owner_word(void *lock, __u32 flags)
{
	if (flags & LCB_F_MUTEX)
		return BPF_CORE_READ((struct mutex *)lock, owner.counter);
	if (flags & LCB_F_RT)
		return (__u64)BPF_CORE_READ((struct rt_mutex_base *)lock, owner);
	if ((flags & (LCB_F_READ | LCB_F_WRITE)) && !(flags & (LCB_F_SPIN | LCB_F_PERCPU)))
		return BPF_CORE_READ((struct rw_semaphore *)lock, owner.counter);
	return 0;
}

static __always_inline bool is_spinning(__u32 flags)
{
	return (flags & (LCB_F_SPIN | LCB_F_MUTEX)) == LCB_F_SPIN;
}

/* Fill @w with a wait of the current task for @lock that begins now. */
static __always_inline void record_wait(void *ctx, struct lock_wait *w, void *lock, __u32 flags)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid(), word;
	struct task_struct *owner;
	long n;

	w->lock = (__u64)lock;
	w->start_ns = bpf_ktime_get_ns();
	w->flags = flags;
	w->tid = (__u32)pid_tgid;
	w->tgid = pid_tgid >> 32;
	w->nested = 0;
	bpf_get_current_comm(w->comm, sizeof(w->comm));
	/* the stack goes with the wait, not into a stack map: a stack map keeps one stack per
	 * hash bucket and refuses the next that lands there (-EEXIST) */
	n = bpf_get_stack(ctx, w->stack, sizeof(w->stack), 0);
	w->frames = n > 0 ? n / sizeof(__u64) : 0;
	word = owner_word(lock, flags);
	w->owner_flags = word & 0x7;
	owner = (void *)(word & ~0x7ULL);
	w->owner_tid = w->owner_tgid = 0;
	__builtin_memset(w->owner_comm, 0, sizeof(w->owner_comm));
	if (owner) {
		w->owner_tid = BPF_CORE_READ(owner, pid);
		w->owner_tgid = BPF_CORE_READ(owner, tgid);
		BPF_CORE_READ_STR_INTO(&w->owner_comm, owner, comm);
	}
}

static __always_inline int on_begin(void *ctx, void *lock, __u32 flags)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct lock_wait *w, *outer;
	__u32 zero = 0;

	COUNT_EVENT();
	outer = bpf_map_lookup_elem(&waiting, &tid);
	if (is_spinning(flags)) {
		w = bpf_map_lookup_elem(&spinning, &zero);
		if (!w)
			return 0;
		/* the slot's waiter still spins (it cannot leave the CPU before its wait ends),
		 * unless the slot was left by a wait whose end came before the probe attached */
		if (w->lock && w->tid == tid) {
			w->nested++;
			return 0;
		}
		if (outer)
			outer->nested++;
		if (!task_selected(t)) {
			w->lock = 0;
			return 0;
		}
		record_wait(ctx, w, lock, flags);
		return 0;
	}
	if (outer) {
		if (outer->lock == (__u64)lock)
			/* a mutex waiter spins first (SPIN|MUTEX), then sleeps (MUTEX): one wait */
			outer->flags |= flags;
		else
			outer->nested++;
		return 0;
	}
	if (!task_selected(t))
		return 0;
	w = bpf_map_lookup_elem(&scratch, &zero);
	if (!w)
		return 0;
	record_wait(ctx, w, lock, flags);
	if (bpf_map_update_elem(&waiting, &tid, w, BPF_NOEXIST)) {
		COUNT_DROP();
		__sync_fetch_and_add(&waits_dropped, 1);
	}
	return 0;
}

/* What a sleeping rwsem is part of, told from its address by the objects' own pointers:
 * the waiter's mmap_lock (current->mm), or an inode's i_rwsem (an inode's i_mapping points
 * at its own i_data, whose host is the inode).  Tried on a lock's first few waits only. */
static __always_inline void identify(struct lock_stat *s, __u64 lock, __u32 flags)
{
	struct task_struct *t;
	struct mm_struct *mm;
	struct inode *ino;
	__u64 mapping;

	if (s->obj || s->count > 4 || (flags & (LCB_F_SPIN | LCB_F_PERCPU | LCB_F_MUTEX | LCB_F_RT)) ||
	    !(flags & (LCB_F_READ | LCB_F_WRITE)))
		return;
	t = (void *)bpf_get_current_task();
	if (bpf_core_field_exists(struct mm_struct, mmap_lock)) {
		mm = BPF_CORE_READ(t, mm);
		if (mm && lock == (__u64)mm + bpf_core_field_offset(struct mm_struct, mmap_lock)) {
			s->obj = LOCK_OBJ_MM;
			s->obj_id = BPF_CORE_READ(t, tgid);
			return;
		}
	}
	ino = (void *)(lock - bpf_core_field_offset(struct inode, i_rwsem));
	mapping = (__u64)BPF_CORE_READ(ino, i_mapping);
	if (mapping && mapping == (__u64)ino + bpf_core_field_offset(struct inode, i_data) &&
	    (__u64)BPF_CORE_READ(ino, i_data.host) == (__u64)ino) {
		s->obj = LOCK_OBJ_INODE;
		s->obj_id = BPF_CORE_READ(ino, i_ino);
		s->obj_dev = BPF_CORE_READ(ino, i_sb, s_dev);
	}
}

/* Add an ended wait to its waiter's sum for that lock. */
static __always_inline void account_waiter(struct lock_wait *w, __u64 wait)
{
	struct lock_waiter_key k = {.lock = w->lock, .tid = w->tid};
	struct lock_waiter *v;

	v = bpf_map_lookup_elem(&by_waiter, &k);
	if (!v) {
		bpf_map_update_elem(&by_waiter, &k, &zero_waiter, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&by_waiter, &k);
		if (!v) {
			__sync_fetch_and_add(&waiters_dropped, 1);
			return;
		}
		v->tgid = w->tgid;
		__builtin_memcpy(v->comm, w->comm, 16);
	}
	__sync_fetch_and_add(&v->count, 1);
	__sync_fetch_and_add(&v->total_ns, wait);
	if (wait > v->max_ns)
		v->max_ns = wait;
	if (w->owner_tid) {
		v->owner_tid = w->owner_tid;
		v->owner_tgid = w->owner_tgid;
		__builtin_memcpy(v->owner_comm, w->owner_comm, 16);
	}
}

/* Add an ended wait to its lock's statistics. */
static __always_inline void account(struct lock_wait *w, int ret)
{
	__u64 wait = bpf_ktime_get_ns() - w->start_ns, key = w->lock, *h;
	__u32 slot = log2_u64(wait / 1000) & (LOCK_SLOTS - 1);
	struct lock_stat *s;

	h = bpf_map_lookup_elem(&hist, &slot);
	if (h)
		(*h)++;
	if (wait < min_wait_ns)
		return;
	s = bpf_map_lookup_elem(&by_lock, &key);
	if (!s) {
		bpf_map_update_elem(&by_lock, &key, &zero_stat, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&by_lock, &key);
	}
	if (!s) {
		COUNT_DROP();
		__sync_fetch_and_add(&ended_dropped, 1);
		return;
	}
	identify(s, key, w->flags);
	account_waiter(w, wait);
	__sync_fetch_and_add(&s->count, 1);
	__sync_fetch_and_add(&s->total_ns, wait);
	s->flags |= w->flags;
	if (ret)
		s->failed++;
	if (w->nested)
		s->nested++;
	if (wait > s->max_ns) {
		s->max_ns = wait;
		s->worst_tid = w->tid;
		s->worst_tgid = w->tgid;
		s->worst_owner_tid = w->owner_tid;
		s->worst_owner_tgid = w->owner_tgid;
		s->worst_frames = w->frames;
		__builtin_memcpy(s->worst_stack, w->stack, sizeof(s->worst_stack));
		__builtin_memcpy(s->worst_comm, w->comm, 16);
		__builtin_memcpy(s->worst_owner_comm, w->owner_comm, 16);
	}
}

static __always_inline int on_end(void *lock, int ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), zero = 0;
	struct lock_wait *w;

	COUNT_EVENT();
	/* a spinning wait of this task is the innermost: no sleeping wait ends before it */
	w = bpf_map_lookup_elem(&spinning, &zero);
	if (w && w->lock && w->tid == tid) {
		if (w->lock == (__u64)lock) {
			account(w, ret);
			w->lock = 0;
		}
		return 0;
	}
	w = bpf_map_lookup_elem(&waiting, &tid);
	if (!w || w->lock != (__u64)lock)
		return 0;
	account(w, ret);
	bpf_map_delete_elem(&waiting, &tid);
	return 0;
}

SEC("tp_btf/contention_begin")
int BPF_PROG(btf_lock_begin, void *lock, unsigned int flags)
{
	return on_begin(ctx, lock, flags);
}

SEC("tp_btf/contention_end")
int BPF_PROG(btf_lock_end, void *lock, int ret)
{
	return on_end(lock, ret);
}

SEC("raw_tp/contention_begin")
int BPF_PROG(raw_lock_begin, void *lock, unsigned int flags)
{
	return on_begin(ctx, lock, flags);
}

SEC("raw_tp/contention_end")
int BPF_PROG(raw_lock_end, void *lock, int ret)
{
	return on_end(lock, ret);
}

char LICENSE[] SEC("license") = "GPL";
