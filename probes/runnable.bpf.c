// SPDX-License-Identifier: GPL-2.0
/* sched.runnable: a snapshot of the tasks that are runnable but not running -- queued on a
 * CPU's run queue -- with how long each has waited (since sched_info.last_queued, in its run
 * queue's clock), and of the tasks running on a CPU (the culprits of those waits, found by
 * the same walk).  Run when the window opens and when it closes: a task queued at both,
 * that did not run in between, has been starved for the whole window, although no wait of
 * it ever ended for sched.runqlat to measure (an RT hog with RT throttling off, on a kernel
 * without the fair deadline server, never lets it run). */
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

SEC("iter/task")
int dump_runnable(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct runnable_rec *rec;
	__u32 zero = 0, running, cpu;
	__u64 queued, clock, waited = 0;

	snapshot_begin(ctx->meta);
	if (!task)
		return 0;
	COUNT_EVENT();
	if (get_task_state(task) != TASK_RUNNING || !BPF_CORE_READ(task, on_rq))
		return 0;
	running = BPF_CORE_READ(task, on_cpu) ? 1 : 0;
	cpu = task_cpu_of(task);
	if (!running) {
		if (!task_selected(task))
			return 0;
		/* last_queued is stamped with the clock of the run queue the task waits on,
		 * which is busy (a tick old at most): the wait is measured in that clock */
		queued = BPF_CORE_READ(task, sched_info.last_queued);
		clock = rq_clock_of(task_rq_of(task), false);
		if (queued && clock && queued <= clock)
			waited = clock - queued;
		/* a wait shorter than min_wait is the scheduler's normal business */
		if (waited && waited < min_wait_ns)
			return 0;
	}
	rec = bpf_map_lookup_elem(&scratch, &zero);
	if (!rec)
		return 0;
	rec->now_ns = bpf_ktime_get_ns();
	rec->waited_ns = waited;
	rec->running = running;
	rec->switches = BPF_CORE_READ(task, nvcsw) + BPF_CORE_READ(task, nivcsw);
	rec->tid = BPF_CORE_READ(task, pid);
	rec->tgid = BPF_CORE_READ(task, tgid);
	rec->prio = BPF_CORE_READ(task, prio);
	rec->policy = BPF_CORE_READ(task, policy);
	rec->cpu = cpu;
	BPF_CORE_READ_STR_INTO(&rec->comm, task, comm);
	snapshot_write(seq, rec, sizeof(*rec));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
