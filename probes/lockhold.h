/* SPDX-License-Identifier: GPL-2.0 */
/* lock.hold records, shared by lockhold.bpf.c and its collector (collectors/lockhold.py). */
#ifndef __LOCKHOLD_H
#define __LOCKHOLD_H

#define HOLD_SLOTS   32
#define HOLD_RECENT  128
#define HOLD_STACK_DEPTH 24     /* frames kept inline: a stack map loses stacks to hash collisions */

struct hold_key {                       /* a mutex held by a task */
	__u64 lock;
	__u32 tid;
	__u32 pad;
};

struct hold_start {                     /* 16 + 8 * HOLD_STACK_DEPTH bytes */
	__u64 ts;
	__u32 frames;                   /* the holder's stack when it acquired */
	__u32 pad;
	__u64 stack[HOLD_STACK_DEPTH];
};

struct hold_stat {                      /* per mutex: 48 + 8 * (HOLD_SLOTS + HOLD_STACK_DEPTH) bytes */
	__u64 count;
	__u64 total_ns;
	__u64 max_ns;
	__u32 worst_tid;
	__u32 worst_tgid;
	__u32 worst_frames;
	__u32 pad;
	char worst_comm[16];
	__u64 hist[HOLD_SLOTS];
	__u64 worst_stack[HOLD_STACK_DEPTH];
};

struct hold_event {                     /* one hold, acquire to release: 48 bytes */
	__u64 lock;
	__u64 acquired_ns;
	__u64 released_ns;
	__u32 tid;
	__u32 tgid;
	char comm[16];
};

#endif
