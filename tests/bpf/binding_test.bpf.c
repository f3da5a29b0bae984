// SPDX-License-Identifier: GPL-2.0
/* Exercises every part of the project's libbpf binding (tests/test_bpf_binding.py). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

const volatile __u32 magic = 0;
const volatile __u32 targ_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");          /* 0: tp_btf switches * magic, 1: perf samples, 2: raw_tp */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1024);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} events SEC(".maps");

struct event {
	__u32 tgid;
	__u32 seq;
};

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&counts, &k);

	if (v)
		__sync_fetch_and_add(v, magic);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(on_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&percpu, &k);

	if (v)
		(*v)++;
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(on_uprobe)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 one = 1, *v;
	struct event *e;

	if (targ_tgid && tgid != targ_tgid)
		return 0;
	v = bpf_map_lookup_elem(&hits, &tgid);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&hits, &tgid, &one, BPF_NOEXIST);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (e) {
		e->tgid = tgid;
		e->seq = v ? (__u32)*v : 0;
		bpf_ringbuf_submit(e, 0);
	}
	return 0;
}

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	__u32 k = 1;
	__u64 *v = bpf_map_lookup_elem(&counts, &k);

	if (v)
		__sync_fetch_and_add(v, 1);
	bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	bpf_get_stackid(ctx, &stacks, 0);
	return 0;
}

SEC("iter/task")
int dump_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;

	if (!t)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%d %s\n", t->pid, t->comm);
	return 0;
}

/* Refused on kernels without kprobes / with lockdown: exercised for their error paths
 * here and for real in the second kernel. */
SEC("kprobe/do_nanosleep")
int BPF_KPROBE(on_kprobe)
{
	return 0;
}

SEC("fentry/do_nanosleep")
int BPF_PROG(on_fentry)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
