// SPDX-License-Identifier: GPL-2.0
/* net.rx: whose packets a task's context received.  A packet queued to a receive backlog by
 * a task in its own context (net:netif_rx outside any IRQ handler or softirq: a loopback,
 * veth or tun send in the sender's system call) is remembered by its sk_buff with its
 * sender; when it is received (net:netif_receive_skb) in a selected task's context -- a
 * NET_RX softirq run on return from an interrupt in whatever task was current -- it is
 * counted for that (context, sender) pair, sender 0 when no task queued it (a NIC's NAPI
 * poll, a packet a softirq forwarded).  The tasks a NET_RX softirq wakes in a selected
 * task's context (sched:sched_waking) are counted per (context, woken) pair: the tasks
 * waiting on the sockets the packets were delivered to, as far as the kernel shows a
 * socket's owner.  The sk_buff is the packet's identity from queue to receive (no GRO on
 * a backlog).  Whether a CPU runs a softirq or an IRQ handler is tracked per CPU from the
 * irq and softirq tracepoints (softirqs do not nest; an IRQ inside a softirq has its own
 * slot). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "net.h"

DEFINE_PROBE_STATS

EXPORT_CONST(NETRX_PENDING);
EXPORT_CONST(NETRX_PAIRS);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NETRX_PENDING);
	__type(key, __u64);
	__type(value, struct netrx_pkt);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NETRX_PAIRS);
	__type(key, struct netrx_key);
	__type(value, struct netrx_count);
} senders SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NETRX_PAIRS);
	__type(key, struct netrx_key);
	__type(value, struct netrx_count);
} woken SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netrx_cpu);
} nesting SEC(".maps");

/* Whether a handler that began at `since` (0: none) is still running: its exit may have
 * been missed before the probe attached it (NETRX_NEST_NS). */
static __always_inline bool running(__u64 since)
{
	return since && bpf_ktime_get_ns() - since < NETRX_NEST_NS;
}

/* Whether this CPU runs a softirq or an IRQ handler now (not a task's own code). */
static __always_inline bool in_interrupt_now(void)
{
	__u32 zero = 0;
	struct netrx_cpu *st = bpf_map_lookup_elem(&nesting, &zero);

	return st && (running(st->softirq_ns) || running(st->hardirq_ns));
}

static __always_inline void count(void *map, __u32 charged_tid, __u32 charged_tgid, const char *charged_comm,
				  __u32 other_tid, __u32 other_tgid, const char *other_comm, __u64 bytes)
{
	struct netrx_key k = {.charged_tid = charged_tid, .other_tid = other_tid};
	struct netrx_count *c, n = {};

	c = bpf_map_lookup_elem(map, &k);
	if (!c) {
		n.charged_tgid = charged_tgid;
		n.other_tgid = other_tgid;
		__builtin_memcpy(n.charged_comm, charged_comm, sizeof(n.charged_comm));
		__builtin_memcpy(n.other_comm, other_comm, sizeof(n.other_comm));
		bpf_map_update_elem(map, &k, &n, BPF_NOEXIST);
		c = bpf_map_lookup_elem(map, &k);
		if (!c) {
			COUNT_DROP();
			return;
		}
	}
	__sync_fetch_and_add(&c->packets, 1);
	if (bytes)        /* an add of 0 becomes an atomic or (5.12+) */
		__sync_fetch_and_add(&c->bytes, bytes);
}

static __always_inline int on_queue(struct sk_buff *skb)
{
	struct netrx_pkt p = {};
	__u64 key = (__u64)skb, id;

	COUNT_EVENT();
	if (in_interrupt_now()) {
		bpf_map_delete_elem(&pending, &key);    /* not queued by the current task */
		return 0;
	}
	id = bpf_get_current_pid_tgid();
	p.sender_tid = (__u32)id;
	p.sender_tgid = id >> 32;
	p.queued_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(p.sender_comm, sizeof(p.sender_comm));
	bpf_map_update_elem(&pending, &key, &p, BPF_ANY);
	return 0;
}

static __always_inline int on_receive(struct sk_buff *skb)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	struct netrx_pkt *p;
	__u64 key = (__u64)skb, id = bpf_get_current_pid_tgid();
	char comm[16] = {};
	static const char none[16] = {};

	COUNT_EVENT();
	p = bpf_map_lookup_elem(&pending, &key);
	if (!task_selected(t)) {
		if (p)
			bpf_map_delete_elem(&pending, &key);
		return 0;
	}
	bpf_get_current_comm(comm, sizeof(comm));
	if (p && bpf_ktime_get_ns() - p->queued_ns < NETRX_QUEUED_NS) {
		count(&senders, (__u32)id, id >> 32, comm, p->sender_tid, p->sender_tgid, p->sender_comm,
		      BPF_CORE_READ(skb, len));
		bpf_map_delete_elem(&pending, &key);    /* one queue, one receive */
		return 0;
	}
	count(&senders, (__u32)id, id >> 32, comm, 0, 0, none, BPF_CORE_READ(skb, len));
	return 0;
}

/* A task a NET_RX softirq wakes in a selected task's context: one waiting for those packets. */
static __always_inline int on_waking(struct task_struct *p)
{
	__u32 zero = 0;
	struct netrx_cpu *st = bpf_map_lookup_elem(&nesting, &zero);
	struct task_struct *t;
	__u64 id;
	char comm[16] = {}, wcomm[16] = {};

	COUNT_EVENT();
	if (!st || st->vec != NETRX_NET_RX || !running(st->softirq_ns))
		return 0;
	t = (void *)bpf_get_current_task();
	if (!task_selected(t))
		return 0;
	id = bpf_get_current_pid_tgid();
	bpf_get_current_comm(comm, sizeof(comm));
	BPF_CORE_READ_STR_INTO(&wcomm, p, comm);
	count(&woken, (__u32)id, id >> 32, comm, BPF_CORE_READ(p, pid), BPF_CORE_READ(p, tgid), wcomm, 0);
	return 0;
}

static __always_inline int nest(bool soft, bool entry, __u32 vec)
{
	__u32 zero = 0;
	struct netrx_cpu *st = bpf_map_lookup_elem(&nesting, &zero);

	COUNT_EVENT();
	if (!st)
		return 0;
	if (soft) {
		st->softirq_ns = entry ? bpf_ktime_get_ns() : 0;
		st->vec = vec;
	} else {
		st->hardirq_ns = entry ? bpf_ktime_get_ns() : 0;
	}
	return 0;
}

SEC("tp_btf/netif_rx")
int BPF_PROG(btf_netrx_queue, struct sk_buff *skb) { return on_queue(skb); }
SEC("tp_btf/netif_receive_skb")
int BPF_PROG(btf_netrx_receive, struct sk_buff *skb) { return on_receive(skb); }
SEC("tp_btf/sched_waking")
int BPF_PROG(btf_netrx_waking, struct task_struct *p) { return on_waking(p); }
SEC("tp_btf/softirq_entry")
int BPF_PROG(btf_netrx_softirq_entry, unsigned int vec) { return nest(true, true, vec); }
SEC("tp_btf/softirq_exit")
int BPF_PROG(btf_netrx_softirq_exit, unsigned int vec) { return nest(true, false, vec); }
SEC("tp_btf/irq_handler_entry")
int BPF_PROG(btf_netrx_irq_entry, int irq, struct irqaction *action) { return nest(false, true, 0); }
SEC("tp_btf/irq_handler_exit")
int BPF_PROG(btf_netrx_irq_exit, int irq, struct irqaction *action, int ret) { return nest(false, false, 0); }

SEC("raw_tp/netif_rx")
int BPF_PROG(raw_netrx_queue, struct sk_buff *skb) { return on_queue(skb); }
SEC("raw_tp/netif_receive_skb")
int BPF_PROG(raw_netrx_receive, struct sk_buff *skb) { return on_receive(skb); }
SEC("raw_tp/sched_waking")
int BPF_PROG(raw_netrx_waking, struct task_struct *p) { return on_waking(p); }
SEC("raw_tp/softirq_entry")
int BPF_PROG(raw_netrx_softirq_entry, unsigned int vec) { return nest(true, true, vec); }
SEC("raw_tp/softirq_exit")
int BPF_PROG(raw_netrx_softirq_exit, unsigned int vec) { return nest(true, false, vec); }
SEC("raw_tp/irq_handler_entry")
int BPF_PROG(raw_netrx_irq_entry, int irq, struct irqaction *action) { return nest(false, true, 0); }
SEC("raw_tp/irq_handler_exit")
int BPF_PROG(raw_netrx_irq_exit, int irq, struct irqaction *action, int ret) { return nest(false, false, 0); }

char LICENSE[] SEC("license") = "GPL";
