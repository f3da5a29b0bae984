/* SPDX-License-Identifier: GPL-2.0 */
/* Shared by every probe: task state, CPU, run queue clocks and cgroup ancestry across
 * kernel versions, the target selectors, and the counters the overhead guard reads.
 * Kernel-version differences live here, each with the kernel version that made it. */
#ifndef __INVESTIGATOR_COMMON_H
#define __INVESTIGATOR_COMMON_H

#define TASK_RUNNING            0x0000
#define TASK_INTERRUPTIBLE      0x0001
#define TASK_UNINTERRUPTIBLE    0x0002
#define TASK_NOLOAD             0x0400
#define TASK_COMM_LEN           16
#define PF_KTHREAD              0x00200000      /* task_struct::flags: a kernel thread */
#define EEXIST                  17      /* include/uapi/asm-generic/errno-base.h */

/* Linux 5.14 renamed task_struct::state to __state (commit 2f064a59a11f). */
struct task_struct___o {
	volatile long int state;
} __attribute__((preserve_access_index));

static __always_inline unsigned int get_task_state(void *task)
{
	struct task_struct *t = task;

	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___o *)task, state);
}

/* Linux 5.16 moved task_struct::cpu into thread_info (commit bcf9033e5449). */
struct task_struct___cpu {
	unsigned int cpu;
} __attribute__((preserve_access_index));

static __always_inline __u32 task_cpu_of(struct task_struct *t)
{
	if (bpf_core_field_exists(t->thread_info.cpu))
		return BPF_CORE_READ(t, thread_info.cpu);
	return BPF_CORE_READ((struct task_struct___cpu *)t, cpu);
}

/* Linux 6.16 added task_struct::blocker (commit "hung_task: show the blocker task if the
 * task is hung on mutex") and semaphore::last_holder. */
struct task_struct___blocker {
	unsigned long blocker;
} __attribute__((preserve_access_index));

struct semaphore___holder {
	unsigned long last_holder;
} __attribute__((preserve_access_index));

/* Linux 5.17 moved a kthread's struct kthread from set_child_tid to worker_private. */
struct task_struct___old {
	int *set_child_tid;
} __attribute__((preserve_access_index));

/* A workqueue worker's struct worker (kthread_data()). */
static __always_inline struct worker *worker_of(struct task_struct *t)
{
	struct kthread *kt;

	if (bpf_core_field_exists(t->worker_private))
		kt = BPF_CORE_READ(t, worker_private);
	else
		kt = (void *)BPF_CORE_READ((struct task_struct___old *)t, set_child_tid);
	return kt ? BPF_CORE_READ(kt, data) : NULL;
}

/* Linux 6.14 added fuse_req::create_time (jiffies when the request was made, for request
 * timeouts). */
struct fuse_req___ct {
	unsigned long create_time;
} __attribute__((preserve_access_index));

/* The scheduler's clocks.  sched_info.last_arrival / last_queued are stamped with the run
 * queue's clock (rq->clock, sched_clock based) and se.exec_start with rq->clock_task (the
 * same less IRQ and steal time, per CPU); neither is bpf_ktime_get_ns() (CLOCK_MONOTONIC,
 * NTP-slewed), and the two drift apart with uptime, so a wait is measured within one
 * clock.  A task's run queue is reached through task->se.cfs_rq->rq, the pointers
 * CONFIG_FAIR_GROUP_SCHED keeps (distribution kernels have it); the per-CPU `runqueues`
 * variable is not used: the verifier resolves a typed per-CPU __ksym through kallsyms,
 * which has no data symbols without CONFIG_KALLSYMS_ALL. */

/* The run queue a task is on (or last ran on); NULL where the kernel keeps no pointer. */
static __always_inline struct rq *task_rq_of(struct task_struct *t)
{
	struct cfs_rq *cfs;

	if (!bpf_core_field_exists(t->se.cfs_rq) || !bpf_core_field_exists(((struct cfs_rq *)0)->rq))
		return NULL;
	cfs = BPF_CORE_READ(t, se.cfs_rq);
	return cfs ? BPF_CORE_READ(cfs, rq) : NULL;
}

/* A run queue's clock (rq->clock, or rq->clock_task), as of its last update: the scheduler
 * updates it at every schedule() and tick on that CPU, so a busy CPU's is at most a tick
 * old and an idle CPU's is as old as its idleness.  0 when unknown. */
static __always_inline __u64 rq_clock_of(struct rq *rq, bool task_clock)
{
	if (!rq)
		return 0;
	return task_clock ? BPF_CORE_READ(rq, clock_task) : BPF_CORE_READ(rq, clock);
}

/* The scheduler's clock now: the running CPU's rq->clock (updated when this task was
 * last scheduled in, or at the last tick). */
static __always_inline __u64 sched_clock_now(void)
{
	return rq_clock_of(task_rq_of((void *)bpf_get_current_task()), false);
}

/* How long a task that is off the CPU has not run (ns), in the scheduler's clocks: the
 * shorter of the time since it last got a CPU (sched_info.last_arrival, rq clock) and the
 * time since it was last accounted running (se.exec_start, its CPU's clock_task, up to that
 * clock's last update, plus the rq clock's time since then).  0 when unknown. */
static __always_inline __u64 task_off_cpu_ns(struct task_struct *t)
{
	__u64 now = sched_clock_now(), arrival, exec, clock, task_clock, since = 0;
	struct rq *rq = task_rq_of(t);

	if (!now)
		return 0;
	arrival = BPF_CORE_READ(t, sched_info.last_arrival);
	if (arrival && arrival <= now)
		since = now - arrival;
	exec = BPF_CORE_READ(t, se.exec_start);
	clock = rq_clock_of(rq, false);
	task_clock = rq_clock_of(rq, true);
	if (exec && exec <= task_clock && clock && clock <= now) {
		__u64 s = (task_clock - exec) + (now - clock);

		if (!since || s < since)
			since = s;
	}
	return since;
}

/* A work item's data word holds its pool_workqueue when WORK_STRUCT_PWQ is set, above
 * WORK_STRUCT_PWQ_SHIFT.  Linux 6.9 named their enums (work_flags, work_bits), which CO-RE
 * reads; before, they were anonymous enums, which it cannot match: there the values of
 * kernels without CONFIG_DEBUG_OBJECTS_WORK (bit 2, shift 8) are used, and the caller
 * checks the pointer against the pool it came from. */
static __always_inline void *work_pwq(__u64 data)
{
	__u64 pwq_flag = 1ULL << 2, shift = 8;

	if (bpf_core_enum_value_exists(enum work_flags, WORK_STRUCT_PWQ))
		pwq_flag = bpf_core_enum_value(enum work_flags, WORK_STRUCT_PWQ);
	if (bpf_core_enum_value_exists(enum work_bits, WORK_STRUCT_PWQ_SHIFT))
		shift = bpf_core_enum_value(enum work_bits, WORK_STRUCT_PWQ_SHIFT);
	return (data & pwq_flag) ? (void *)(data & ~((1ULL << (shift & 63)) - 1)) : NULL;
}

/* Linux 6.0 replaced cgroup::ancestor_ids[] (the ancestors' ids) with ancestors[] (the
 * ancestors themselves). */
struct cgroup___o {
	int level;
	__u64 ancestor_ids[];
} __attribute__((preserve_access_index));

/* The id of a task's cgroup v2 ancestor at @level (0 = the root, the task's own cgroup at
 * its own level), 0 when the task's cgroup is not that deep.  kernfs_node::id is a u64
 * since 5.5 (commit 67c0496e87d1). */
static __always_inline __u64 task_cgroup_ancestor_id(struct task_struct *t, __u32 level)
{
	struct cgroup *cg = BPF_CORE_READ(t, cgroups, dfl_cgrp);
	struct cgroup *anc = NULL;
	__u64 id = 0;

	if (!cg || level > 1024 || (__u32)BPF_CORE_READ(cg, level) < level)
		return 0;
	if (bpf_core_field_exists(cg->ancestors)) {
		bpf_probe_read_kernel(&anc, sizeof(anc),
				      (void *)cg + bpf_core_field_offset(cg->ancestors) + level * sizeof(anc));
		return anc ? BPF_CORE_READ(anc, kn, id) : 0;
	}
	bpf_probe_read_kernel(&id, sizeof(id), (void *)cg +
			      bpf_core_field_offset(((struct cgroup___o *)cg)->ancestor_ids) + level * sizeof(id));
	return id;
}

/* A constant a collector mirrors in Python, kept in the object's .rodata as const_NAME so
 * that tests/test_probe_objects.py checks both sides agree. */
#define EXPORT_CONST(name) const volatile __u64 const_##name = (name)

/* Target selectors (investigate --pid/--comm/--cgroup), set before load; 0 = any.  A
 * probe applies them to the task its records are about (the waiter, the blocked task).
 * --cgroup selects a subtree: the tasks whose cgroup v2 ancestor at targ_cgroup_level is
 * targ_cgroup (the target cgroup itself and every cgroup below it). */
const volatile __u32 targ_tgid = 0;
const volatile char targ_comm[TASK_COMM_LEN] = {};
const volatile __u64 targ_cgroup = 0;       /* cgroup v2 id (the cgroup folder's inode) */
const volatile __u32 targ_cgroup_level = 0; /* its depth below the cgroup v2 root */

/* A node's focus (the tasks an earlier node's finding named): when targ_tids_on, only the
 * TIDs in targ_tids are selected.  Filled after load, before attach. */
#define MAX_TARG_TIDS 4096
EXPORT_CONST(MAX_TARG_TIDS);
const volatile __u32 targ_tids_on = 0;
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TARG_TIDS);
	__type(key, __u32);
	__type(value, __u8);
} targ_tids SEC(".maps");

static __always_inline bool task_selected(struct task_struct *t)
{
	if (targ_tids_on) {
		__u32 tid = BPF_CORE_READ(t, pid);

		if (!bpf_map_lookup_elem(&targ_tids, &tid))
			return false;
	}
	if (targ_tgid && BPF_CORE_READ(t, tgid) != targ_tgid)
		return false;
	if (targ_comm[0]) {
		char comm[TASK_COMM_LEN];

		BPF_CORE_READ_STR_INTO(&comm, t, comm);
		for (int i = 0; i < TASK_COMM_LEN; i++) {
			if (comm[i] != targ_comm[i])
				return false;
			if (!comm[i])
				break;
		}
	}
	if (targ_cgroup && task_cgroup_ancestor_id(t, targ_cgroup_level) != targ_cgroup)
		return false;
	return true;
}

/* Per-CPU counters every probe keeps: events seen (the overhead guard's input) and
 * records dropped because a bounded map was full. */
struct probe_stats {
	__u64 events;
	__u64 drops;
};

#define DEFINE_PROBE_STATS                                              \
	struct {                                                        \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                \
		__uint(max_entries, 1);                                 \
		__type(key, __u32);                                     \
		__type(value, struct probe_stats);                      \
	} probe_stats SEC(".maps");                                     \
	static __always_inline struct probe_stats *stats(void)          \
	{                                                               \
		__u32 zero = 0;                                         \
		return bpf_map_lookup_elem(&probe_stats, &zero);        \
	}

#define COUNT_EVENT()   do { struct probe_stats *__s = stats(); if (__s) __s->events++; } while (0)
#define COUNT_DROP()    do { struct probe_stats *__s = stats(); if (__s) __s->drops++; } while (0)

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8)  { v >>= 8;  r += 8; }
	if (v >> 4)  { v >>= 4;  r += 4; }
	if (v >> 2)  { v >>= 2;  r += 2; }
	if (v >> 1)  { r += 1; }
	return r;
}

/* THREAD_SIZE, the size of a task's kernel stack, from this program's own frame: it runs
 * on the current task's kernel stack (an iterator's reader, in read()), a few KiB below its
 * top, so the distance from the stack's base rounds up to the stack's size -- a power of two
 * -- wherever less than half of it is in use.  0 if unknown. */
static __always_inline __u64 kernel_stack_size_here(void)
{
	struct task_struct *me = (void *)bpf_get_current_task();
	__u64 base = (__u64)BPF_CORE_READ(me, stack), frame = 0, size;
	void *mark = &frame;

	/* the frame's address as a number: read back from where it was spilled */
	if (bpf_probe_read_kernel(&frame, sizeof(frame), &mark) || !base || frame <= base)
		return 0;
	for (size = 4096; size < (1 << 20); size <<= 1)
		if (frame - base < size)
			return size;
	return 0;
}

#endif
