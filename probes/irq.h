/* SPDX-License-Identifier: GPL-2.0 */
/* irq.time records, shared by irq.bpf.c and its collector (collectors/irq.py). */
#ifndef __IRQ_H
#define __IRQ_H

#define IRQ_NR_SOFTIRQS 10              /* HI TIMER NET_TX NET_RX BLOCK IRQ_POLL TASKLET SCHED HRTIMER RCU */

struct irq_start {                      /* per CPU: the handler in progress */
	__u64 softirq_ns;
	__u64 hardirq_ns;
	__u32 vec;
	__s32 irq;
};

struct irq_stat {                       /* per CPU and vector (or IRQ line): 32 bytes */
	__u64 count;
	__u64 total_ns;
	__u64 max_ns;
	__u64 pad;
};

struct charge_key {                     /* softirq time run in this task's context */
	__u32 tid;
	__u32 vec;                      /* low 16 bits; idle task: CPU + 1 in the high 16 */
};

struct charge {                         /* 48 bytes */
	__u64 count;
	__u64 total_ns;
	__u32 tgid;
	__u32 cpu;                      /* the CPU it last ran on */
	__u32 kthread;
	__u32 pad;
	char comm[16];
};

struct raise_key {                      /* a softirq raised while this task was current */
	__u32 tid;
	__u32 vec;
	__s32 stack_id;
	__u32 pad;
};

struct hirq_stat {                      /* per CPU and IRQ line: 48 bytes */
	__u64 count;
	__u64 total_ns;
	__u64 max_ns;
	char name[24];
};

#endif
