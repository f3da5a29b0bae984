/* SPDX-License-Identifier: GPL-2.0 */
/* kernel.func records, shared by func.bpf.c and its collector (investigator/probes/collectors/func.py). */
#ifndef __FUNC_H
#define __FUNC_H

#define FUNC_SLOTS        32          /* log2 latency buckets (ns) */
#define FUNC_RECENT       64          /* the latest calls kept, per CPU */
#define FUNC_STACK_DEPTH  32
#define FUNC_RET_OTHER    0x7fffffffffffffffLL   /* a pointer or a large value */

struct func_call {                      /* 16 bytes */
	__u64 start_ns;
	__s32 stack_id;
	__u32 pad;
};

struct func_proc {                      /* 56 bytes */
	__u64 calls;
	__u64 total_ns;
	__u64 max_ns;
	__u64 errors;
	__u64 zeros;
	char comm[16];
};

struct func_cpu {                       /* 24 + 8 * FUNC_SLOTS bytes */
	__u64 calls;
	__u64 total_ns;
	__u64 max_ns;
	__u64 hist[FUNC_SLOTS];
};

struct func_event {                     /* 64 bytes */
	__u64 seq;                      /* the call's number on its CPU */
	__u64 end_ns;
	__u64 latency_ns;
	__s64 ret;
	__u32 tid;
	__u32 tgid;
	__u32 cpu;
	__s32 stack_id;
	char comm[16];
};

#endif
