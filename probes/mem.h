/* SPDX-License-Identifier: GPL-2.0 */
/* mem.alloc records, shared by mem.bpf.c and its collector (collectors/mem.py). */
#ifndef __MEM_H
#define __MEM_H

#define MEM_RATE_SLOTS 64               /* failures per time bucket since attach */

struct mem_live {                       /* an allocation seen and not yet freed: 24 bytes */
	__u64 call_site;
	__u64 ts;
	__u32 bytes;
	__u32 pad;
};

struct mem_site {                       /* per call site: 96 bytes */
	__u64 allocs;
	__u64 frees;                    /* frees of allocations made here during the window */
	__u64 failures;
	__u64 bytes_out;                /* requested bytes allocated here and not freed */
	__u64 last_fail_ns;
	__u64 fail_bytes;               /* the size of the last failed request */
	__u32 fail_tid;
	__u32 fail_tgid;
	__u32 fail_gfp;
	__u32 pad;
	char fail_comm[16];
	__u64 pad2[2];
};

#endif
