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
#include "task_record.h"

const volatile bool include_sleeping = false;
const volatile __u64 min_sleep_ns = 10000000000ULL;    /* S-state tasks: not run for 10 s */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct blocked_rec);
} scratch SEC(".maps");

DEFINE_PROBE_STATS

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
	fill_blocked_rec(task, rec, state, true);
	bpf_seq_write(seq, rec, sizeof(*rec));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
