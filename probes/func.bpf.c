// SPDX-License-Identifier: GPL-2.0
/* kernel.func (and user.func): calls of one kernel (or user-space) function -- who calls it (process, CPU, kernel stack),
 * how long each call takes, what it returns -- aggregated in the kernel.
 *
 * Two hook alternatives, the same maps: fentry/fexit (BPF trampolines, the function's
 * BTF; target set before load) and kprobe/kretprobe (attached by symbol).  The entry
 * program stamps the call per thread; the exit program computes the latency, counts the
 * return value and keeps the latest calls in a small ring per CPU. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "func.h"

DEFINE_PROBE_STATS

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);                     /* tid */
	__type(value, struct func_call);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);                     /* tgid */
	__type(value, struct func_proc);
} by_proc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct func_cpu);         /* per CPU: the CPU's own calls */
} by_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __s64);                     /* return value class (func.h) */
	__type(value, __u64);
} returns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1024);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, FUNC_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __s32);                     /* stack id */
	__type(value, __u64);
} by_stack SEC(".maps");

/* per CPU: the CPU's latest calls, a ring indexed by its own call count (no atomic
 * fetch-and-add, which needs 5.12) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FUNC_RECENT);
	__type(key, __u32);
	__type(value, struct func_event);
} recent SEC(".maps");

const volatile bool user_func = false;  /* uprobes: no kernel stack to keep */

static __always_inline void enter(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	struct func_call c = {};
	__u32 tid;

	COUNT_EVENT();
	if (!task_selected(t))
		return;
	tid = (__u32)bpf_get_current_pid_tgid();
	c.start_ns = bpf_ktime_get_ns();
	c.stack_id = user_func ? -1 : bpf_get_stackid(ctx, &stacks, 0);
	if (bpf_map_update_elem(&inflight, &tid, &c, BPF_ANY))
		COUNT_DROP();
}

static __always_inline __s64 ret_class(__s64 ret)
{
	/* errors (-4095..-1), NULL/0 and small integers are kept as they are; anything
	 * else (a pointer, a large value) is folded into one class so the map stays small */
	if (ret >= -4095 && ret <= 4096)
		return ret;
	return FUNC_RET_OTHER;
}

static __always_inline void leave(__s64 ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid, tgid = pid_tgid >> 32, zero = 0, slot;
	__u64 seq;
	struct func_call *c;
	struct func_proc *p, np = {};
	struct func_cpu *cpu;
	struct func_event *e;
	__u64 now = bpf_ktime_get_ns(), lat, *n, one = 1;
	__s64 cls;
	__s32 sid;

	c = bpf_map_lookup_elem(&inflight, &tid);
	if (!c)
		return;         /* entered before attach, or not selected */
	lat = now - c->start_ns;
	sid = c->stack_id;
	bpf_map_delete_elem(&inflight, &tid);

	p = bpf_map_lookup_elem(&by_proc, &tgid);
	if (!p) {
		bpf_get_current_comm(np.comm, sizeof(np.comm));
		bpf_map_update_elem(&by_proc, &tgid, &np, BPF_NOEXIST);
		p = bpf_map_lookup_elem(&by_proc, &tgid);
		if (!p) {
			COUNT_DROP();
			return;
		}
	}
	__sync_fetch_and_add(&p->calls, 1);
	__sync_fetch_and_add(&p->total_ns, lat);
	if (lat > p->max_ns)
		p->max_ns = lat;
	if (ret < 0 && ret >= -4095)
		__sync_fetch_and_add(&p->errors, 1);
	if (ret == 0)
		__sync_fetch_and_add(&p->zeros, 1);

	cpu = bpf_map_lookup_elem(&by_cpu, &zero);
	if (!cpu)
		return;
	seq = cpu->calls++;
	cpu->total_ns += lat;
	cpu->hist[log2_u64(lat) & (FUNC_SLOTS - 1)]++;
	if (lat > cpu->max_ns)
		cpu->max_ns = lat;

	cls = ret_class(ret);
	n = bpf_map_lookup_elem(&returns, &cls);
	if (n)
		__sync_fetch_and_add(n, 1);
	else if (bpf_map_update_elem(&returns, &cls, &one, BPF_NOEXIST))
		COUNT_DROP();

	if (sid >= 0) {
		n = bpf_map_lookup_elem(&by_stack, &sid);
		if (n)
			__sync_fetch_and_add(n, 1);
		else if (bpf_map_update_elem(&by_stack, &sid, &one, BPF_NOEXIST))
			COUNT_DROP();
	}

	slot = seq % FUNC_RECENT;
	e = bpf_map_lookup_elem(&recent, &slot);
	if (e) {
		e->seq = seq;
		e->end_ns = now;
		e->latency_ns = lat;
		e->ret = ret;
		e->tid = tid;
		e->tgid = tgid;
		e->cpu = bpf_get_smp_processor_id();
		e->stack_id = sid;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	}
}

/* The section targets are placeholders: the loader sets the real function before load
 * (fentry/fexit) or attaches by symbol (kprobe/kretprobe). */
SEC("fentry/do_nanosleep")
int BPF_PROG(fentry_call)
{
	enter(ctx);
	return 0;
}

SEC("fexit/do_nanosleep")
int BPF_PROG(fexit_call)
{
	__u64 ret = 0;

	bpf_get_func_ret(ctx, &ret);    /* 5.17+: the return value whatever the arity */
	leave((__s64)ret);
	return 0;
}

SEC("kprobe")
int BPF_KPROBE(kprobe_call)
{
	enter(ctx);
	return 0;
}

SEC("kretprobe")
int BPF_KRETPROBE(kretprobe_call)
{
	leave((__s64)PT_REGS_RC(ctx));
	return 0;
}

/* user.func: the same on a user-space function (binary and symbol, resolved by libbpf) */
SEC("uprobe")
int BPF_KPROBE(uprobe_call)
{
	enter(ctx);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(uretprobe_call)
{
	leave((__s64)PT_REGS_RC(ctx));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
