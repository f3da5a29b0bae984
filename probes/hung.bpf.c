// SPDX-License-Identifier: GPL-2.0
/* sched.hung: the kernel's own hung-task detector, observed.  khungtaskd fires
 * sched:sched_process_hang for every task it finds in uninterruptible (not killable) sleep
 * for longer than kernel.hung_task_timeout_secs; this probe keeps, for the latest 64
 * reports, the task's record (struct blocked_rec: stack, when it last ran, and on 6.16+ the
 * lock it is blocked on with its owner). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "task_record.h"

#define HUNG_REPORTS 64

DEFINE_PROBE_STATS
EXPORT_CONST(STACK_DEPTH);
EXPORT_CONST(HUNG_REPORTS);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HUNG_REPORTS);
	__type(key, __u32);
	__type(value, struct blocked_rec);
} reports SEC(".maps");

__u64 reports_seq = 0;

static __always_inline int on_hang(struct task_struct *p, bool with_stack)
{
	__u32 slot;
	struct blocked_rec *rec;

	COUNT_EVENT();
	if (!task_selected(p))
		return 0;
	/* one writer, khungtaskd: no atomic (a fetch-and-add needs 5.12+) */
	slot = reports_seq++ % HUNG_REPORTS;
	rec = bpf_map_lookup_elem(&reports, &slot);
	if (!rec)
		return 0;
	fill_blocked_rec(p, rec, get_task_state(p), with_stack);
	return 0;
}

SEC("tp_btf/sched_process_hang")
int BPF_PROG(btf_hang, struct task_struct *p)
{
	return on_hang(p, true);
}

SEC("raw_tp/sched_process_hang")
int BPF_PROG(raw_hang, struct task_struct *p)
{
	return on_hang(p, false);       /* a raw_tp's task pointer is untrusted: no stack */
}

char LICENSE[] SEC("license") = "GPL";
