// SPDX-License-Identifier: GPL-2.0
/* Blocked tasks snapshot: a BPF task iterator walks every task once and writes one
 * binary record per task in uninterruptible sleep (D, excluding TASK_IDLE kthreads), and
 * optionally per task in interruptible sleep that has not run for min_sleep_ns.  Each
 * record carries when the task last ran, its kernel stack and, where the kernel records
 * it (6.16+ CONFIG_DETECT_HUNG_TASK_BLOCKER), the lock it is blocked on and that lock's
 * owner.  It sees conditions that began long before the investigation.
 *
 * Where the kernel records no blocker (before 6.16, or a lock it does not annotate such as
 * an inode's rwsem), a task whose stack shows a lock slow path is searched for its waiter:
 * mutex, rwsem and semaphore slow paths keep a waiter on the sleeping task's own stack
 * (mutex_waiter, semaphore_waiter, rwsem_waiter: {list_head list; task_struct *task; ...},
 * the task's offset read from BTF) linked into the lock's wait_list.  The word equal to the
 * task's own address, with a list_head before it whose neighbour points back, is the
 * waiter; following the list to the one node that lies on no waiter's stack gives the
 * lock's wait_list head, hence the lock and its owner -- what crash(8) does by hand.
 * Reads are checked probe-reads and walks are bounded. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "snapshot.h"
#include "task_record.h"

const volatile bool include_sleeping = false;
const volatile __u64 min_sleep_ns = 10000000000ULL;    /* S-state tasks: not run for 10 s */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct blocked_rec);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64[SCAN_BYTES / 8]);
} stackbuf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_LOCK_FNS);
	__type(key, __u32);
	__type(value, struct lock_fn);
} lock_fns SEC(".maps");


DEFINE_PROBE_STATS
EXPORT_CONST(STACK_DEPTH);
EXPORT_CONST(MAX_LOCK_FNS);

/* THREAD_SIZE, the size of a kernel stack, from where the kernel keeps a task's user
 * registers: at the top of its stack, less a padding of at most a few words
 * (TOP_OF_KERNEL_STACK_PADDING), in a stack whose size is a power of two.  0 if unknown. */
static __always_inline __u64 kernel_stack_size(struct task_struct *task)
{
	struct pt_regs *regs;
	__u64 base = (__u64)BPF_CORE_READ(task, stack), top = 0, size;

	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
		return kernel_stack_size_here();        /* before 5.15 */
	regs = (void *)bpf_task_pt_regs(task);
	/* the pointer's value as a number: read back from where it was spilled */
	if (!regs || bpf_probe_read_kernel(&top, sizeof(top), &regs) || !base || top <= base)
		return 0;
	top += sizeof(struct pt_regs);
	for (size = 4096; size < (1 << 20); size <<= 1)
		if (top - base <= size)
			return size;
	return 0;
}

static __always_inline bool on_stack_of(__u64 addr, __u64 task, __u64 size)
{
	__u64 base = (__u64)BPF_CORE_READ((struct task_struct *)task, stack);

	return base && addr >= base && addr < base + size;
}

/* The lock kind of a return address into a lock slow path (lock_fns[1..]), or -1. */
static __always_inline int lock_kind_of(__u64 ip)
{
	for (__u32 k = 1; k < MAX_LOCK_FNS; k++) {
		__u32 key = k;
		struct lock_fn *fn = bpf_map_lookup_elem(&lock_fns, &key);

		if (!fn || !fn->valid)
			break;
		if (ip >= fn->lo && ip < fn->hi)
			return fn->kind;
	}
	return -1;
}

/* Where a slow path's waiter keeps the task, by lock kind (0 mutex, 1 semaphore, 2/3 rwsem):
 * each waiter is {struct list_head list; struct task_struct *task; ...}, the list first. */
static __always_inline __u32 waiter_task_offset(int kind)
{
	/* 0 where the kernel's BTF lacks the type: no waiter is searched for */
	if (kind == 0)
		return bpf_core_field_exists(struct mutex_waiter, task) ?
		       bpf_core_field_offset(struct mutex_waiter, task) : 0;
	if (kind == 1)
		return bpf_core_field_exists(struct semaphore_waiter, task) ?
		       bpf_core_field_offset(struct semaphore_waiter, task) : 0;
	return bpf_core_field_exists(struct rwsem_waiter, task) ?
	       bpf_core_field_offset(struct rwsem_waiter, task) : 0;
}

/* The lock a sleeping task waits on, from its own kernel stack, as a blocker value (lock
 * address | kind); 0 when it sleeps in no lock slow path or nothing consistent is found.
 * The slow path's return address (saved below its frame when it called schedule()) gives
 * the kind -- the stack trace helpers skip scheduler and lock functions, the raw stack
 * does not -- and the waiter lies in the slow path's frame, above it.  A static
 * subprogram (kept out of line, so the program stays small; the verifier still checks it
 * at each of its two call sites). */
static __noinline __u64 lock_from_stack(__u64 task_addr, __u64 thread_size)
{
	struct task_struct *task = (void *)task_addr;
	__u64 base, sp, top, w = 0, node = 0, prev = 0, back = 0, head = 0, off;
	__u64 ret = 0, ret1 = 0, ret2 = 0, ret3 = 0;     /* the nearest addresses in the span */
	struct lock_fn *all;
	__u64 *buf;
	__u32 zero = 0, n, i, task_words = waiter_task_offset(0) / 8;
	int kind;

	if (task_words < 2 || task_words > 8)      /* the list_head comes first */
		return 0;
	buf = bpf_map_lookup_elem(&stackbuf, &zero);
	all = bpf_map_lookup_elem(&lock_fns, &zero);      /* [0]: the span of all slow paths */
	if (!buf || !all || !all->valid || !bpf_core_field_exists(task->thread.sp))
		return 0;
	base = (__u64)BPF_CORE_READ(task, stack);
	sp = BPF_CORE_READ(task, thread.sp) & ~7ULL;
	top = base + thread_size;
	if (!base || !thread_size || sp < base || sp >= top)
		return 0;
	n = top - sp > SCAN_BYTES ? SCAN_BYTES : top - sp;
	if (bpf_probe_read_kernel(buf, n & (2 * SCAN_BYTES - 1), (void *)sp))
		return 0;
	n /= 8;
	/* one pass up the stack: return addresses into a lock slow path (among the nearest
	 * below the waiter, the slow path that called schedule()), then the waiter -- the first word
	 * equal to the task's own address past a list_head; what the rest needs is copied out
	 * at the match, so that the verifier need not follow each index further */
	for (i = 0; i < SCAN_BYTES / 8; i++) {
		__u64 v;

		if (i >= n)
			return 0;
		v = buf[i];
		if (v >= all->lo && v < all->hi) {   /* the span also holds other functions */
			ret3 = ret2;
			ret2 = ret1;
			ret1 = ret;
			ret = v;
		}
		/* past a slow path's return address: __schedule()'s own frame below it keeps
		 * the task's address too */
		if (ret && i >= task_words && v == task_addr) {
			w = sp + (i - task_words) * 8;        /* the waiter: its list_head, then the task */
			node = buf[(i - task_words) & (SCAN_BYTES / 8 - 1)];
			prev = buf[(i - task_words + 1) & (SCAN_BYTES / 8 - 1)];
			break;
		}
	}
	if (!w)
		return 0;
	kind = lock_kind_of(ret);
	if (kind < 0)
		kind = lock_kind_of(ret1);
	if (kind < 0)
		kind = lock_kind_of(ret2);
	if (kind < 0)
		kind = lock_kind_of(ret3);
	if (kind < 0 || waiter_task_offset(kind) != task_words * 8)
		return 0;
	/* its neighbour must point back at it */
	if (bpf_probe_read_kernel(&back, sizeof(back), (void *)prev) || back != w)
		return 0;
	for (int k = 0; k < 32; k++) {
		__u64 t = 0;

		if (!node || node == w)
			return 0;
		bpf_probe_read_kernel(&t, sizeof(t), (void *)(node + task_words * 8));
		if (!(t && on_stack_of(node, t, thread_size))) {
			head = node;          /* on no waiter's stack: the lock's wait_list */
			break;
		}
		if (bpf_probe_read_kernel(&node, sizeof(node), (void *)node))
			return 0;
	}
	if (!head)
		return 0;
	if (kind == 0)
		off = bpf_core_field_offset(struct mutex, wait_list);
	else if (kind == 1)
		off = bpf_core_field_offset(struct semaphore, wait_list);
	else
		off = bpf_core_field_offset(struct rw_semaphore, wait_list);
	return (head - off) | (kind & BLOCKER_TYPE_MASK);
}

SEC("iter/task")
int dump_blocked(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct blocked_rec *rec;
	unsigned int state;
	__u32 zero = 0;
	__u64 found = 0;

	snapshot_begin(ctx->meta);
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
	rec->off_cpu_ns = task_off_cpu_ns(task);
	if (state & TASK_UNINTERRUPTIBLE) {
		if (state & TASK_NOLOAD)        /* TASK_IDLE: an idle kthread, not blocked */
			return 0;
	} else if (state & TASK_INTERRUPTIBLE) {
		/* a task sleeping interruptibly on a mutex/rwsem (mutex_lock_interruptible)
		 * is blocked on a lock all the same: keep it, for the wait-for graph */
		if (bpf_core_field_exists(((struct task_struct___blocker *)task)->blocker)) {
			if (BPF_CORE_READ((struct task_struct___blocker *)task, blocker))
				goto keep;
		} else {
			/* no task->blocker (before 6.16): a waiter on its stack says it
			 * sleeps in a lock slow path */
			found = lock_from_stack((__u64)task, kernel_stack_size(task));
			if (found)
				goto keep;
		}
		if (!include_sleeping)
			return 0;
		if (rec->off_cpu_ns && rec->off_cpu_ns < min_sleep_ns)
			return 0;
	} else {
		return 0;
	}
keep:
	fill_blocked_rec(task, rec, state, true);
	if (!rec->blocker) {
		if (!found)
			found = lock_from_stack((__u64)task, kernel_stack_size(task));
		if (found) {
			rec->blocker = found;
			rec->blocker_src = BLOCKER_SRC_STACK;
			fill_owner(rec);
		}
	}
	snapshot_write(seq, rec, sizeof(*rec));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
