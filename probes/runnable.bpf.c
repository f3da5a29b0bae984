// SPDX-License-Identifier: GPL-2.0
/* sched.runnable: a snapshot of the tasks that are runnable but not running -- queued on a
 * CPU's run queue -- with how long each has waited (sched_info.last_queued), and of the
 * tasks running on a CPU (the culprits: the per-CPU rq->curr is not reachable where kallsyms
 * lacks data symbols, so the running tasks are found by the same walk).  Run when the window opens and when it closes: a task
 * queued at both, that did not run in between, has been starved for the whole window,
 * although no wait of it ever ended for sched.runqlat to measure (an RT hog with RT
 * throttling off, on a kernel without the fair deadline server, never lets it run). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "snapshot.h"
#include "runnable.h"

DEFINE_PROBE_STATS

const volatile __u64 min_wait_ns = 100000000ULL;        /* shorter waits are not recorded */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct runnable_rec);
} scratch SEC(".maps");

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

SEC("iter/task")
int dump_runnable(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct runnable_rec *rec;
	__u32 zero = 0, running;
	__u64 now, queued = 0;

	snapshot_begin(ctx->meta);
	if (!task)
		return 0;
	COUNT_EVENT();
	if (get_task_state(task) != TASK_RUNNING || !BPF_CORE_READ(task, on_rq))
		return 0;
	running = BPF_CORE_READ(task, on_cpu) ? 1 : 0;
	now = bpf_ktime_get_ns();
	if (!running) {
		if (!task_selected(task))
			return 0;
		queued = BPF_CORE_READ(task, sched_info.last_queued);
		/* a wait shorter than min_wait is the scheduler's normal business */
		if (queued && queued < now && now - queued < min_wait_ns)
			return 0;
	}
	rec = bpf_map_lookup_elem(&scratch, &zero);
	if (!rec)
		return 0;
	rec->now_ns = now;
	rec->queued_ns = queued;
	rec->running = running;
	rec->switches = BPF_CORE_READ(task, nvcsw) + BPF_CORE_READ(task, nivcsw);
	rec->tid = BPF_CORE_READ(task, pid);
	rec->tgid = BPF_CORE_READ(task, tgid);
	rec->prio = BPF_CORE_READ(task, prio);
	rec->policy = BPF_CORE_READ(task, policy);
	rec->cpu = task_cpu_of(task);
	BPF_CORE_READ_STR_INTO(&rec->comm, task, comm);
	snapshot_write(seq, rec, sizeof(*rec));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
