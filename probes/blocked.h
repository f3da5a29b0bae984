/* SPDX-License-Identifier: GPL-2.0 */
/* Records of the blocked-tasks snapshot (mirrored in investigator/probes/collectors/blocked.py). */
#ifndef __BLOCKED_H
#define __BLOCKED_H

#define STACK_DEPTH     32

/* include/linux/hung_task.h (6.16+, CONFIG_DETECT_HUNG_TASK_BLOCKER): the lock address
 * with the lock type in its two low bits. */
#define BLOCKER_TYPE_MASK       0x3UL

struct blocked_rec {
	__u64 now_ns;           /* bpf_ktime_get_ns() at the snapshot */
	__u64 last_arrival_ns;  /* sched_info.last_arrival: when it last got a CPU (rq clock) */
	__u64 exec_start_ns;    /* se.exec_start: last accounting while it ran (rq clock_task) */
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
};

#endif
