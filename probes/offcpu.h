/* SPDX-License-Identifier: GPL-2.0 */
/* sched.offcpu records, shared by offcpu.bpf.c and its collector (collectors/offcpu.py). */
#ifndef __OFFCPU_H
#define __OFFCPU_H

#define OFFCPU_STACK_DEPTH 32

struct offcpu_start {                   /* a task that left the CPU: 24 bytes */
	__u64 ts;
	__s32 kstack;
	__s32 ustack;
	__u32 state;
	__u32 pad;
};

struct offcpu_key {                     /* 32 bytes */
	__u32 tid;
	__u32 tgid;
	__s32 kstack;
	__s32 ustack;
	char comm[16];
};

struct offcpu_val {                     /* 24 bytes */
	__u64 total_ns;
	__u64 count;
	__u64 max_ns;
};

#endif
