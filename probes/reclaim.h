/* SPDX-License-Identifier: GPL-2.0 */
/* Time in direct reclaim, memory cgroup reclaim and compaction, which run in the allocating
 * task itself between the vmscan / compaction tracepoints' begin and end.  Shared by
 * sched.progress (progress.bpf.c) and mem.stall (memstall.bpf.c). */
#ifndef __RECLAIM_H
#define __RECLAIM_H

struct mm_stall {                       /* 32 bytes */
	__u64 reclaim_ns;               /* in direct or memory cgroup reclaim */
	__u64 compact_ns;               /* in memory compaction */
	__u64 reclaim_since;            /* when the reclaim going on began (0: none) */
	__u64 compact_since;
};

/* A begin (true) or end of reclaim (compact false) or compaction, at @now. */
static __always_inline void mm_stall_mark(struct mm_stall *m, bool begin, bool compact, __u64 now)
{
	__u64 *since = compact ? &m->compact_since : &m->reclaim_since;
	__u64 *total = compact ? &m->compact_ns : &m->reclaim_ns;

	if (begin) {
		*since = now;
	} else if (*since) {
		*total += now - *since;
		*since = 0;
	}
}

#endif
