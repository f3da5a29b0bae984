// SPDX-License-Identifier: GPL-2.0
/* FUSE requests snapshot: a BPF task_file iterator visits every open file once per files
 * table and stops at /dev/fuse (character device 10:229).  For each it writes which
 * connection the file serves (fuse_conn::dev, the mount's device number) and then every
 * request of that connection that has no answer yet: queued for the daemon (the
 * connection's pending list) or read by it and awaiting its reply (the file's processing
 * hash and io list).  A request names the task that made it (fuse_in_header::pid), so a
 * client in request_wait_answer is tied to the daemon that owes it the answer.
 *
 * The lists are read without the kernel's locks, the way a crash tool reads them: every
 * read is a checked probe-read and every walk is bounded, so a list changing under us
 * gives a short or stale record, never a fault or an endless loop. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "snapshot.h"
#include "fuse.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fuse_rec);
} scratch SEC(".maps");

DEFINE_PROBE_STATS

static __always_inline void emit_req(struct seq_file *seq, struct fuse_rec *rec,
				     struct fuse_req *req, __u32 where)
{
	rec->kind = REC_REQUEST;
	rec->where = where;
	rec->opcode = BPF_CORE_READ(req, in.h.opcode);
	rec->client = BPF_CORE_READ(req, in.h.pid);
	rec->unique = BPF_CORE_READ(req, in.h.unique);
	rec->nodeid = BPF_CORE_READ(req, in.h.nodeid);
	rec->age_jiffies = 0;
	if (bpf_core_field_exists(((struct fuse_req___ct *)req)->create_time)) {
		__u64 t = BPF_CORE_READ((struct fuse_req___ct *)req, create_time);

		if (t)
			rec->age_jiffies = bpf_jiffies64() - t;
	}
	snapshot_write(seq, rec, sizeof(*rec));
}

/* The lists a file's requests without an answer are on: the connection's pending list,
 * the file's io list, then the FUSE_PQ_HASH_SIZE buckets of its processing hash. */
#define NLISTS          (2 + FUSE_PQ_HASH_SIZE)

static __always_inline struct list_head *list_at(struct fuse_conn *fc, struct fuse_dev *fud,
						 struct list_head *buckets, __u32 l)
{
	if (l == 0)
		return &fc->iq.pending;
	if (l == 1)
		return &fud->pq.io;
	return buckets ? &buckets[l - 2] : NULL;
}

/* Always 0; read from .bss so that the verifier does not track the walk's counters as
 * constants (it would verify the callback once per (list, request) value: ~250k insns). */
__u32 walk_origin = 0;

struct walk {
	struct seq_file *seq;
	struct fuse_rec *rec;
	struct fuse_conn *fc;
	struct fuse_dev *fud;
	struct list_head *buckets;
	struct list_head *head;         /* the list being walked */
	struct list_head *pos;          /* its next entry */
	__u32 l;                        /* which list (list_at) */
	__u32 n;                        /* requests written */
};

/* One step: the next request of the current list, or on to the next list. */
static long walk_step(__u32 i, void *arg)
{
	struct walk *w = arg;
	struct list_head *head = w->head, *pos = w->pos;     /* CO-RE reads need plain locals */

	if (!pos || pos == head) {
		if (++w->l >= NLISTS)
			return 1;
		head = list_at(w->fc, w->fud, w->buckets, w->l);
		if (!head)
			return 1;
		w->head = head;
		w->pos = BPF_CORE_READ(head, next);
		return 0;
	}
	if (w->n++ >= MAX_REQUESTS) {
		COUNT_DROP();
		return 1;
	}
	emit_req(w->seq, w->rec, (struct fuse_req *)((void *)pos - bpf_core_field_offset(struct fuse_req, list)),
		 w->l == 0 ? WHERE_PENDING : w->l == 1 ? WHERE_IO : WHERE_PROCESSING);
	w->pos = BPF_CORE_READ(pos, next);
	return 0;
}

SEC("iter/task_file")
int dump_fuse(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct fuse_dev *fud;
	struct fuse_conn *fc;
	struct fuse_rec *rec;
	struct walk w = {};
	struct list_head *buckets, *head;
	__u32 zero = 0;
	dev_t rdev;
	umode_t mode;

	snapshot_begin(ctx->meta);
	if (!task || !file)
		return 0;
	if (!bpf_core_type_exists(struct fuse_dev))   /* fuse not built in, module not loaded */
		return 0;
	rdev = BPF_CORE_READ(file, f_inode, i_rdev);
	mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & 00170000) != 0020000 || rdev != ((MISC_MAJOR << 20) | FUSE_MINOR))
		return 0;
	COUNT_EVENT();
	fud = BPF_CORE_READ(file, private_data);
	if (!fud)               /* opened, not (yet) mounted */
		return 0;
	fc = BPF_CORE_READ(fud, fc);
	if (!fc)
		return 0;
	rec = bpf_map_lookup_elem(&scratch, &zero);
	if (!rec)
		return 0;
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->kind = REC_DEVICE;
	rec->tgid = BPF_CORE_READ(task, tgid);
	rec->fd = ctx->fd;
	rec->conn = BPF_CORE_READ(fc, dev);
	rec->ns_level = BPF_CORE_READ(fc, pid_ns, level);
	rec->jiffies = bpf_jiffies64();
	rec->now_ns = bpf_ktime_get_ns();
	BPF_CORE_READ_STR_INTO(&rec->comm, task, comm);
	snapshot_write(seq, rec, sizeof(*rec));

	/* one bpf_loop over every list: its callback is verified once (an open-coded bounded
	 * loop makes the verifier walk every (list, request) combination: over 1M insns) */
	w.l = w.n = walk_origin;
	w.seq = seq;
	w.rec = rec;
	w.fc = fc;
	w.fud = fud;
	buckets = BPF_CORE_READ(fud, pq.processing);
	head = list_at(fc, fud, buckets, 0);
	w.buckets = buckets;
	w.head = head;
	w.pos = BPF_CORE_READ(head, next);
	bpf_loop(NLISTS + MAX_REQUESTS, walk_step, &w, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
