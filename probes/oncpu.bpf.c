// SPDX-License-Identifier: GPL-2.0
/* CPU occupancy: which tasks ran on which CPU, by sampling.  A cpu-clock perf event on
 * every CPU fires sample_freq times a second; each sample adds its period (the time it
 * stands for) to the (CPU, task) that was running -- the idle task to the CPU's idle
 * time.  Sampling costs the same whatever the context-switch rate, and sees a task that
 * holds a CPU without ever switching (an RT busy loop), which switch tracing cannot.
 * Under a node's focus the samples of the focused tasks also count where they ran (kernel
 * and user stacks): their hottest code. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "oncpu.h"

#define E2BIG 7

const volatile __u32 sample_freq = 499;     /* also the perf event's frequency (the loader reads it) */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PLACEMENTS);
	__type(key, struct oncpu_key);
	__type(value, struct oncpu_val);
} oncpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct oncpu_cpu);
} cpu_total SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, MAX_HOT);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, ONCPU_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_HOT);
	__type(key, struct oncpu_hot_key);
	__type(value, __u64);
} hot SEC(".maps");

DEFINE_PROBE_STATS

static __always_inline void count_stack(struct bpf_perf_event_data *ctx, __u32 tid)
{
	struct oncpu_hot_key hk = {.tid = tid};
	__u64 one = 1, *n;

	hk.kstack = bpf_get_stackid(ctx, &stacks, 0);
	hk.ustack = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	n = bpf_map_lookup_elem(&hot, &hk);
	if (n)
		__sync_fetch_and_add(n, 1);
	else if (bpf_map_update_elem(&hot, &hk, &one, BPF_NOEXIST) == -E2BIG)
		COUNT_DROP();
}

SEC("perf_event")
int sample_oncpu(struct bpf_perf_event_data *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 period = ctx->sample_period, id = bpf_get_current_pid_tgid();
	struct oncpu_key key = {.cpu = bpf_get_smp_processor_id(), .tid = (__u32)id};
	struct oncpu_val *v, nv = {};
	struct oncpu_cpu *c;
	__u32 zero = 0;

	COUNT_EVENT();
	if (!period)
		period = 1000000000ULL / (sample_freq ? sample_freq : 1);
	c = bpf_map_lookup_elem(&cpu_total, &zero);
	if (!c)
		return 0;
	c->ns += period;
	c->samples++;
	if (!key.tid) {                 /* the idle task (swapper/N) */
		c->idle_ns += period;
		return 0;
	}
	if (!task_selected(task))
		return 0;
	v = bpf_map_lookup_elem(&oncpu, &key);
	if (!v) {
		nv.tgid = id >> 32;
		nv.flags = BPF_CORE_READ(task, flags);
		nv.prio = BPF_CORE_READ(task, prio);
		nv.policy = BPF_CORE_READ(task, policy);
		bpf_get_current_comm(&nv.comm, sizeof(nv.comm));
		BPF_CORE_READ_STR_INTO(&nv.pcomm, task, group_leader, comm);
		if (bpf_map_update_elem(&oncpu, &key, &nv, BPF_NOEXIST) == -E2BIG) {
			COUNT_DROP();
			return 0;
		}
		v = bpf_map_lookup_elem(&oncpu, &key);
		if (!v)
			return 0;
	}
	/* one CPU writes a (cpu, task) entry: no other writer races these adds */
	v->ns += period;
	v->samples++;
	if (targ_tids_on)
		count_stack(ctx, key.tid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
