/* SPDX-License-Identifier: GPL-2.0 */
/* Records of the futex-waiters snapshot (mirrored in investigator/probes/collectors/futex.py). */
#ifndef __FUTEX_H
#define __FUTEX_H

#define FUTEX_NEAR 10

struct futex_rec {
	__u64 uaddr;            /* the futex word's user address (a pthread mutex's address) */
	__u64 nvcsw;
	__u64 nivcsw;
	__u64 now_ns;
	__u64 off_cpu_ns;       /* how long it has not run, in the scheduler's clocks (0: unknown) */
	__u32 tid;
	__u32 tgid;
	__u32 op;               /* futex op as passed (FUTEX_PRIVATE_FLAG 128: one process only) */
	__u32 val;              /* the value it waits on (2: a contended glibc lock) */
	__u32 word;             /* the futex word now */
	__u32 owner;            /* glibc pthread_mutex_t.__data.__owner (offset 8) */
	__s32 read_err;         /* bpf_copy_from_user_task() result */
	__u32 state;
	char comm[16];
	__s32 near_err;         /* the read of near[]: fails where uaddr - 16 is not mapped */
	__u32 near[FUTEX_NEAR]; /* the words at uaddr - 16 ... uaddr + 20: a pthread_rwlock_t's
	                         * fields around the futex its waiter sleeps on */
	__s32 prio;             /* task->prio (kernel priority: lower runs first) */
	__u32 policy;
};

#endif
