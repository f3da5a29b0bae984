// SPDX-License-Identifier: GPL-2.0
/* irq.time: where interrupt work goes -- hard IRQ handlers (count and time per line and
 * CPU) and softirqs (count and time per vector and CPU), and, for softirqs, the task in
 * whose context each one ran: the interrupted task (charged for the time), ksoftirqd, or
 * the idle task.  From the irq:irq_handler_* and irq:softirq_* tracepoints. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "irq.h"

DEFINE_PROBE_STATS

#define IRQ_STACK_DEPTH 16

/* Who raised a softirq: its kernel stack, counted per (task, vector, stack).  The collector
 * tells an interrupt's raise (the stack passes through an IRQ/IPI entry or a softirq) from
 * the task's own (a loopback send, a syscall).  Stack ids, not per-arch preempt counts:
 * the per-CPU preempt count is not reachable where kallsyms lacks data symbols. */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1024);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, IRQ_STACK_DEPTH * sizeof(__u64));
} raise_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct raise_key);
	__type(value, __u64);
} raises SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct irq_start);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IRQ_NR_SOFTIRQS);
	__type(key, __u32);
	__type(value, struct irq_stat);
} softirqs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 256);
	__type(key, __s32);
	__type(value, struct hirq_stat);
} hardirqs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct charge_key);
	__type(value, struct charge);
} charged SEC(".maps");

static __always_inline struct charge *charge_of(struct task_struct *t, __u32 vec)
{
	struct charge_key k = {};
	struct charge *c, nc = {};

	k.tid = (__u32)bpf_get_current_pid_tgid();
	/* every CPU's idle task is tid 0: keep them apart by CPU (high half of vec) */
	k.vec = vec | (k.tid ? 0 : (bpf_get_smp_processor_id() + 1) << 16);
	c = bpf_map_lookup_elem(&charged, &k);
	if (c)
		return c;
	nc.tgid = bpf_get_current_pid_tgid() >> 32;
	nc.kthread = !!(BPF_CORE_READ(t, flags) & PF_KTHREAD);
	bpf_get_current_comm(nc.comm, sizeof(nc.comm));
	bpf_map_update_elem(&charged, &k, &nc, BPF_NOEXIST);
	c = bpf_map_lookup_elem(&charged, &k);
	if (!c)
		COUNT_DROP();
	return c;
}

static __always_inline int softirq_raise(void *ctx, __u32 vec)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	struct raise_key k = {};
	__u64 one = 1, *n;

	COUNT_EVENT();
	if (vec >= IRQ_NR_SOFTIRQS || !task_selected(t))
		return 0;
	k.tid = (__u32)bpf_get_current_pid_tgid();
	k.vec = vec;
	k.stack_id = bpf_get_stackid(ctx, &raise_stacks, 0);
	n = bpf_map_lookup_elem(&raises, &k);
	if (n)
		__sync_fetch_and_add(n, 1);
	else if (bpf_map_update_elem(&raises, &k, &one, BPF_NOEXIST))
		COUNT_DROP();
	return 0;
}

static __always_inline int softirq_entry(__u32 vec)
{
	__u32 zero = 0;
	struct irq_start *s = bpf_map_lookup_elem(&start, &zero);

	COUNT_EVENT();
	if (s) {
		s->softirq_ns = bpf_ktime_get_ns();
		s->vec = vec;
	}
	return 0;
}

static __always_inline int softirq_exit(__u32 vec)
{
	__u32 zero = 0;
	struct irq_start *s = bpf_map_lookup_elem(&start, &zero);
	struct task_struct *t = (void *)bpf_get_current_task();
	struct charge *c;
	struct irq_stat *st;
	__u64 d;

	COUNT_EVENT();
	if (!s || !s->softirq_ns || s->vec != vec || vec >= IRQ_NR_SOFTIRQS)
		return 0;
	d = bpf_ktime_get_ns() - s->softirq_ns;
	s->softirq_ns = 0;
	st = bpf_map_lookup_elem(&softirqs, &vec);
	if (st) {
		st->count++;
		st->total_ns += d;
		if (d > st->max_ns)
			st->max_ns = d;
	}
	if (!task_selected(t))
		return 0;
	c = charge_of(t, vec);
	if (!c)
		return 0;
	__sync_fetch_and_add(&c->count, 1);
	__sync_fetch_and_add(&c->total_ns, d);
	c->cpu = bpf_get_smp_processor_id();
	return 0;
}

static __always_inline int hardirq_entry(int irq)
{
	__u32 zero = 0;
	struct irq_start *s = bpf_map_lookup_elem(&start, &zero);

	COUNT_EVENT();
	if (s) {
		s->hardirq_ns = bpf_ktime_get_ns();
		s->irq = irq;
	}
	return 0;
}

static __always_inline int hardirq_exit(int irq, struct irqaction *action)
{
	__u32 zero = 0;
	struct irq_start *s = bpf_map_lookup_elem(&start, &zero);
	struct hirq_stat *st, n = {};
	__u64 d;

	COUNT_EVENT();
	if (!s || !s->hardirq_ns || s->irq != irq)
		return 0;
	d = bpf_ktime_get_ns() - s->hardirq_ns;
	s->hardirq_ns = 0;
	st = bpf_map_lookup_elem(&hardirqs, &irq);
	if (!st) {
		bpf_probe_read_kernel_str(n.name, sizeof(n.name), BPF_CORE_READ(action, name));
		bpf_map_update_elem(&hardirqs, &irq, &n, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&hardirqs, &irq);
		if (!st) {
			COUNT_DROP();
			return 0;
		}
	}
	if (!st->name[0])
		bpf_probe_read_kernel_str(st->name, sizeof(st->name), BPF_CORE_READ(action, name));
	st->count++;
	st->total_ns += d;
	if (d > st->max_ns)
		st->max_ns = d;
	return 0;
}

SEC("tp_btf/softirq_raise")
int BPF_PROG(btf_softirq_raise, unsigned int vec) { return softirq_raise(ctx, vec); }
SEC("tp_btf/softirq_entry")
int BPF_PROG(btf_softirq_entry, unsigned int vec) { return softirq_entry(vec); }
SEC("tp_btf/softirq_exit")
int BPF_PROG(btf_softirq_exit, unsigned int vec) { return softirq_exit(vec); }
SEC("tp_btf/irq_handler_entry")
int BPF_PROG(btf_irq_entry, int irq, struct irqaction *action) { return hardirq_entry(irq); }
SEC("tp_btf/irq_handler_exit")
int BPF_PROG(btf_irq_exit, int irq, struct irqaction *action, int ret) { return hardirq_exit(irq, action); }

SEC("raw_tp/softirq_raise")
int BPF_PROG(raw_softirq_raise, unsigned int vec) { return softirq_raise(ctx, vec); }
SEC("raw_tp/softirq_entry")
int BPF_PROG(raw_softirq_entry, unsigned int vec) { return softirq_entry(vec); }
SEC("raw_tp/softirq_exit")
int BPF_PROG(raw_softirq_exit, unsigned int vec) { return softirq_exit(vec); }
SEC("raw_tp/irq_handler_entry")
int BPF_PROG(raw_irq_entry, int irq, struct irqaction *action) { return hardirq_entry(irq); }
SEC("raw_tp/irq_handler_exit")
int BPF_PROG(raw_irq_exit, int irq, struct irqaction *action, int ret) { return hardirq_exit(irq, action); }

char LICENSE[] SEC("license") = "GPL";
