/* SPDX-License-Identifier: GPL-2.0 */
/* block.io records, shared by blockio.bpf.c and its collector (collectors/blockio.py). */
#ifndef __BLOCKIO_H
#define __BLOCKIO_H

#define BLOCKIO_SLOTS 24                /* log2 buckets of request latency, in microseconds */

struct blockio_req {                    /* a request between insert/issue and completion: 48 bytes */
	__u64 insert_ts;                /* 0: issued directly, never queued */
	__u64 issue_ts;                 /* 0: queued, not issued yet */
	__u32 dev;                      /* dev_t as the kernel keeps it (major << 20 | minor) */
	__u32 tid;                      /* the task current when it was queued or issued */
	__u32 bytes;
	__u32 write;
	char comm[16];
};

struct blockio_dev {                    /* one device: 160 bytes */
	__u64 count;                    /* requests completed */
	__u64 total_ns;                 /* their issue -> completion time */
	__u64 max_ns;
	__u64 queued_ns;                /* their insert -> issue time */
	__u64 bytes;
	__u64 writes;
	__u64 errors;
	__u32 slots[BLOCKIO_SLOTS];
	__u32 pad;
	__u32 pad2;
};

struct blockio_task {                   /* one task: 64 bytes */
	__u64 iowait_ns;                /* off the CPU waiting for I/O (in_iowait) */
	__u64 iowait_since;             /* when the wait going on began (0: none) */
	__u64 max_wait_ns;              /* its longest such wait that ended */
	__u64 bytes;                    /* bytes of the requests it queued or issued */
	__u32 waits;
	__u32 requests;
	__u32 dev;                      /* the device of its latest request */
	__u32 tgid;
	char comm[16];
};

#endif
