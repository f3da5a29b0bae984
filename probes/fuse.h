/* SPDX-License-Identifier: GPL-2.0 */
/* Records of the FUSE requests snapshot (mirrored in investigator/probes/collectors/fuse.py). */
#ifndef __FUSE_H
#define __FUSE_H

#define FUSE_MINOR              229     /* /dev/fuse: misc character device 10:229 */
#define MISC_MAJOR              10
#define FUSE_PQ_HASH_SIZE       256     /* fs/fuse/fuse_i.h: buckets of fuse_pqueue::processing */
#define MAX_REQUESTS            256     /* requests read per /dev/fuse file (bounded walk) */

enum fuse_rec_kind {
	REC_DEVICE = 1,         /* a process holds /dev/fuse open, attached to connection conn */
	REC_REQUEST = 2,        /* a request of that connection without an answer */
};

enum fuse_req_where {
	WHERE_PENDING = 0,      /* queued, not yet read by the daemon (fuse_iqueue::pending) */
	WHERE_PROCESSING = 1,   /* read by the daemon, answer awaited (fuse_pqueue::processing) */
	WHERE_IO = 2,           /* being copied to or from the daemon (fuse_pqueue::io) */
};

struct fuse_rec {
	__u32 kind;
	__u32 where;
	__u32 tgid;             /* the process holding /dev/fuse (the daemon) */
	__u32 fd;
	__u32 conn;             /* fuse_conn::dev: the connection (its mount's st_dev) */
	__u32 ns_level;         /* fuse_conn::pid_ns level: 0 = the initial pid namespace */
	__u32 opcode;           /* fuse_in_header */
	__u32 client;           /* fuse_in_header::pid: the task that made the request */
	__u64 unique;
	__u64 nodeid;
	__u64 age_jiffies;      /* jiffies - fuse_req::create_time (6.14+), else 0 */
	__u64 jiffies;          /* at the snapshot (two snapshots give HZ; a kconfig extern would
				 * fail to load where no kernel config file is installed) */
	__u64 now_ns;
	char comm[16];
};

#endif
