/* SPDX-License-Identifier: GPL-2.0 */
/* lock.contention records, shared by lock.bpf.c and its collector (collectors/lock.py). */
#ifndef __LOCK_H
#define __LOCK_H

/* include/trace/events/lock.h: the waiter's flags of contention_begin (not in BTF) */
#define LCB_F_SPIN      (1U << 0)
#define LCB_F_READ      (1U << 1)
#define LCB_F_WRITE     (1U << 2)
#define LCB_F_RT        (1U << 3)
#define LCB_F_PERCPU    (1U << 4)
#define LCB_F_MUTEX     (1U << 5)

#define LOCK_SLOTS        32
#define LOCK_WAITERS      8192    /* (lock, waiter) pairs with their summed waits */

/* What a lock is part of, told from its address (lock_stat.obj) */
#define LOCK_OBJ_INODE    1       /* an inode's i_rwsem */
#define LOCK_OBJ_MM       2       /* a process's mmap_lock */
#define LOCK_STACK_DEPTH  24      /* frames kept inline: a stack map loses stacks to hash collisions */

struct lock_wait {                      /* a wait in progress: 80 + 8 * LOCK_STACK_DEPTH bytes */
	__u64 lock;
	__u64 start_ns;
	__u32 flags;
	__u32 tgid;
	__u32 owner_tid;                /* at contention_begin; 0 = unknown (spinlock, readers) */
	__u32 owner_tgid;
	__u32 frames;                   /* of the waiter's stack */
	__u32 owner_flags;              /* the owner word's low bits (rwsem: 1 = reader-owned) */
	__u32 nested;                   /* waits for other locks that began inside this one */
	__u32 tid;                      /* the waiter */
	char comm[16];
	char owner_comm[16];
	__u64 stack[LOCK_STACK_DEPTH];
};

struct lock_stat {                      /* per lock address: 112 + 8 * LOCK_STACK_DEPTH bytes */
	__u64 count;
	__u64 total_ns;
	__u64 max_ns;
	__u32 flags;                    /* union of the waiters' flags */
	__u32 failed;                   /* waits that ended without the lock (-EINTR, -EDEADLK) */
	__u32 worst_tid;
	__u32 worst_tgid;
	__u32 worst_owner_tid;
	__u32 worst_owner_tgid;
	__u32 worst_frames;
	__u32 nested;                   /* ended waits inside which the waiter waited for another lock */
	__u32 obj;                      /* what the lock is part of: LOCK_OBJ_* (0: not known) */
	__u32 obj_dev;                  /* LOCK_OBJ_INODE: its superblock's s_dev (kernel dev_t) */
	__u64 obj_id;                   /* LOCK_OBJ_INODE: i_ino; LOCK_OBJ_MM: the process (tgid) */
	char worst_comm[16];
	char worst_owner_comm[16];
	__u64 worst_stack[LOCK_STACK_DEPTH];
};

struct lock_waiter_key {
	__u64 lock;
	__u32 tid;
	__u32 pad;
};

struct lock_waiter {                    /* one task's ended waits for one lock: 72 bytes */
	__u64 count;
	__u64 total_ns;
	__u64 max_ns;
	__u32 tgid;
	__u32 owner_tid;                /* the owner of its latest wait that had one */
	__u32 owner_tgid;
	__u32 pad;
	char comm[16];
	char owner_comm[16];
};

#endif
