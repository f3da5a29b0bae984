// SPDX-License-Identifier: GPL-2.0
/* sched.offcpu: off-CPU time per task and blocking code path.  At sched_switch the task
 * leaving the CPU is stamped with its kernel and user stacks (where it blocked); when it is
 * switched in again, the time away is added to (task, kernel stack, user stack).  By default
 * only blocking counts (the task was not runnable when it left); preemption is run-queue
 * latency (sched.runqlat). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "offcpu.h"

DEFINE_PROBE_STATS

#define TASK_DEAD_STATE 0x0080

const volatile __u64 min_block_ns = 1000000ULL;
const volatile bool include_preempted = false;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct offcpu_start);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, OFFCPU_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct offcpu_key);
	__type(value, struct offcpu_val);
} offcpu SEC(".maps");

static __always_inline int on_switch(void *ctx, struct task_struct *prev, struct task_struct *next)
{
	__u32 pid = BPF_CORE_READ(prev, pid), state;
	struct offcpu_start s = {}, *sp;
	struct offcpu_key k = {};
	struct offcpu_val *v, zero = {};
	__u64 now = bpf_ktime_get_ns(), d;

	COUNT_EVENT();
	state = get_task_state(prev);
	if (state & TASK_DEAD_STATE) {          /* exiting for good: never comes back */
		bpf_map_delete_elem(&start, &pid);
	} else if (pid && (include_preempted || state != TASK_RUNNING) && task_selected(prev)) {
		s.ts = now;
		s.state = state;
		/* prev is current here: its stacks are the blocking path */
		s.kstack = bpf_get_stackid(ctx, &stacks, 0);
		s.ustack = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
		if (s.kstack < 0)       /* a hash collision in the stack map: no stack kept */
			COUNT_DROP();
		if (bpf_map_update_elem(&start, &pid, &s, BPF_ANY))
			COUNT_DROP();
	}
	pid = BPF_CORE_READ(next, pid);
	sp = bpf_map_lookup_elem(&start, &pid);
	if (!sp)
		return 0;
	d = now - sp->ts;
	if (d >= min_block_ns) {
		k.tid = pid;
		k.tgid = BPF_CORE_READ(next, tgid);
		k.kstack = sp->kstack;
		k.ustack = sp->ustack;
		BPF_CORE_READ_STR_INTO(&k.comm, next, comm);
		v = bpf_map_lookup_elem(&offcpu, &k);
		if (!v) {
			bpf_map_update_elem(&offcpu, &k, &zero, BPF_NOEXIST);
			v = bpf_map_lookup_elem(&offcpu, &k);
		}
		if (v) {
			__sync_fetch_and_add(&v->total_ns, d);
			__sync_fetch_and_add(&v->count, 1);
			if (d > v->max_ns)
				v->max_ns = d;
		} else {
			COUNT_DROP();
		}
	}
	bpf_map_delete_elem(&start, &pid);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(btf_offcpu_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(ctx, prev, next);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(raw_offcpu_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(ctx, prev, next);
}

char LICENSE[] SEC("license") = "GPL";
