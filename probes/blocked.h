/* SPDX-License-Identifier: GPL-2.0 */
/* Records of the blocked-tasks snapshot (mirrored in investigator/probes/collectors/blocked.py). */
#ifndef __BLOCKED_H
#define __BLOCKED_H

#define STACK_DEPTH     32

/* include/linux/hung_task.h (6.16+, CONFIG_DETECT_HUNG_TASK_BLOCKER): the lock address
 * with the lock type in its two low bits. */
#define BLOCKER_TYPE_MASK       0x3UL

struct blocked_rec {
	__u64 now_ns;           /* bpf_ktime_get_ns() at the snapshot: compared across records only */
	__u64 off_cpu_ns;       /* how long it has not run, in the scheduler's clocks (0: unknown) */
	__u64 nvcsw;
	__u64 nivcsw;
	__u64 blocker;          /* task->blocker, raw (0: none recorded or not supported) */
	__u64 lock_owner;       /* task_struct pointer of the blocker lock's owner, if readable */
	__u32 owner_tid;
	__u32 owner_tgid;
	__u32 tid;
	__u32 tgid;
	__u32 state;
	__u32 flags;            /* PF_* */
	__s32 prio;
	__s32 stack_bytes;      /* bpf_get_task_stack() result (bytes, or -errno) */
	char comm[16];
	char owner_comm[16];
	__u64 stack[STACK_DEPTH];
	__u32 blocker_src;      /* BLOCKER_SRC_*: where blocker came from */
	__u32 reserved;
};

enum blocker_src {
	BLOCKER_SRC_NONE = 0,
	BLOCKER_SRC_KERNEL = 1, /* task->blocker (6.16+) */
	BLOCKER_SRC_STACK = 2,  /* the waiter found on the task's kernel stack (any kernel) */
};

/* Lock slow paths a sleeping task's stack can show, by kind (BLOCKER_TYPE_* values),
 * filled by user space from /proc/kallsyms before the first snapshot. */
#define MAX_LOCK_FNS    16
struct lock_fn {
	__u64 lo;
	__u64 hi;
	__u32 kind;
	__u32 valid;
};

#define SCAN_BYTES      2048    /* of a sleeping task's kernel stack, from its saved sp up */

#endif
