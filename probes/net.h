/* SPDX-License-Identifier: GPL-2.0 */
/* net.rx records, shared by net.bpf.c and its collector (collectors/net.py). */
#ifndef __NET_H
#define __NET_H

#define NETRX_PENDING 16384             /* packets queued by a task and not yet received, by sk_buff */
#define NETRX_PAIRS 4096                /* (receiving context, sender) and (receiving context, woken) pairs */
#define NETRX_NET_RX 3                  /* the NET_RX softirq vector */
/* A packet is received within this long of its queueing or was dropped on the way (a full
 * backlog): an older entry is a freed sk_buff's, not this packet's. */
#define NETRX_QUEUED_NS 1000000000ULL

struct netrx_pkt {                      /* a packet a task queued: 32 bytes */
	__u32 sender_tid;
	__u32 sender_tgid;
	char sender_comm[16];
	__u64 queued_ns;
};

struct netrx_key {                      /* a receiving context and a task its packets were for */
	__u32 charged_tid;
	__u32 other_tid;                /* the sender (0: no task queued them), or a task woken */
};

struct netrx_count {                    /* 56 bytes */
	__u64 packets;                  /* packets, or wakeups */
	__u64 bytes;
	__u32 charged_tgid;
	__u32 other_tgid;
	char charged_comm[16];
	char other_comm[16];
};

struct netrx_cpu {                      /* per CPU: when the softirq / IRQ handler running began (0: none) */
	__u64 softirq_ns;
	__u64 hardirq_ns;
	__u32 vec;                      /* the softirq's vector */
	__u32 pad;
};

/* A handler whose exit was not seen (it began before the probe attached its exit) stops
 * counting as running after this long: softirq runs are cut at 2 ms (MAX_SOFTIRQ_TIME). */
#define NETRX_NEST_NS 10000000ULL

#endif
