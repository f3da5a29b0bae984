// SPDX-License-Identifier: GPL-2.0
/* block.io: block requests and the tasks that wait for them.  Each request is stamped when
 * it is queued (block_rq_insert) and issued to the device (block_rq_issue), with the task
 * current then (the submitter, for the I/O a task waits on itself); at completion its
 * device's latency is counted (a log2 histogram, the longest, the time it was queued).
 * Requests still out at the window's end are what the device has not answered.  Beside
 * them, each task's time off the CPU waiting for I/O (task_struct::in_iowait, set by
 * io_schedule() around every wait for a page, a buffer or a direct I/O), and its longest
 * such wait. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "blockio.h"

DEFINE_PROBE_STATS

#define REQ_OP_MASK     0xff
#define REQ_OP_WRITE    1

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct blockio_req);
} reqs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct blockio_dev);
} devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct blockio_task);
} tasks SEC(".maps");

static __always_inline struct blockio_task *task_entry(struct task_struct *t, __u32 tid)
{
	struct blockio_task *e = bpf_map_lookup_elem(&tasks, &tid), zero = {};

	if (e)
		return e;
	zero.tgid = BPF_CORE_READ(t, tgid);
	BPF_CORE_READ_STR_INTO(&zero.comm, t, comm);
	if (bpf_map_update_elem(&tasks, &tid, &zero, BPF_NOEXIST) && !bpf_map_lookup_elem(&tasks, &tid)) {
		COUNT_DROP();
		return NULL;
	}
	return bpf_map_lookup_elem(&tasks, &tid);
}

/* Before 5.11 a request's partition is a struct hd_struct, whose device number is in its
 * struct device; the disk's whole device is its embedded part0. */
struct hd_struct___510 {
	struct device __dev;
} __attribute__((preserve_access_index));
struct gendisk___510 {
	struct hd_struct___510 part0;
} __attribute__((preserve_access_index));
struct request___510 {
	struct hd_struct___510 *part;
	struct gendisk___510 *rq_disk;
} __attribute__((preserve_access_index));

/* the device a request is for: its partition's, else its disk's whole device */
static __always_inline __u32 rq_dev(struct request *rq)
{
	struct block_device *part;

	if (bpf_core_type_exists(struct hd_struct___510)) {
		struct request___510 *old = (void *)rq;
		struct hd_struct___510 *hd = BPF_CORE_READ(old, part);
		struct gendisk___510 *disk;

		if (hd)
			return BPF_CORE_READ(hd, __dev.devt);
		disk = BPF_CORE_READ(old, rq_disk);
		return disk ? BPF_CORE_READ(disk, part0.__dev.devt) : 0;
	}
	part = BPF_CORE_READ(rq, part);

	if (!part)
		part = BPF_CORE_READ(rq, q, disk, part0);
	return part ? BPF_CORE_READ(part, bd_dev) : 0;
}

static __always_inline int on_queue(struct request *rq, bool issue)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u64 key = (__u64)rq, now = bpf_ktime_get_ns();
	struct blockio_req *r = bpf_map_lookup_elem(&reqs, &key), fresh = {};
	struct blockio_task *e;

	COUNT_EVENT();
	/* a request is new when it is queued, or issued without being queued (or reused
	 * after a completion this probe did not see) */
	if (!r || !issue || r->issue_ts) {
		fresh.tid = BPF_CORE_READ(t, pid);
		BPF_CORE_READ_STR_INTO(&fresh.comm, t, comm);
		fresh.dev = rq_dev(rq);
		fresh.bytes = BPF_CORE_READ(rq, __data_len);
		fresh.write = (BPF_CORE_READ(rq, cmd_flags) & REQ_OP_MASK) == REQ_OP_WRITE;
		if (bpf_map_update_elem(&reqs, &key, &fresh, BPF_ANY)) {
			COUNT_DROP();
			return 0;
		}
		r = bpf_map_lookup_elem(&reqs, &key);
		if (!r)
			return 0;
		if (fresh.tid && task_selected(t) && (e = task_entry(t, fresh.tid))) {
			e->requests++;
			e->bytes += fresh.bytes;
			e->dev = fresh.dev;
		}
	}
	if (issue)
		r->issue_ts = now;
	else
		r->insert_ts = now;
	return 0;
}

static __always_inline int on_complete(struct request *rq, int error)
{
	__u64 key = (__u64)rq, now = bpf_ktime_get_ns(), d;
	struct blockio_req *r = bpf_map_lookup_elem(&reqs, &key);
	struct blockio_dev *v, zero = {};
	__u32 dev, slot;

	COUNT_EVENT();
	if (!r)
		return 0;
	if (!r->issue_ts)
		goto out;
	dev = r->dev;
	v = bpf_map_lookup_elem(&devs, &dev);
	if (!v) {
		bpf_map_update_elem(&devs, &dev, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&devs, &dev);
	}
	if (!v) {
		COUNT_DROP();
		goto out;
	}
	d = now - r->issue_ts;
	__sync_fetch_and_add(&v->count, 1);
	__sync_fetch_and_add(&v->total_ns, d);
	__sync_fetch_and_add(&v->bytes, r->bytes);
	if (r->write)
		__sync_fetch_and_add(&v->writes, 1);
	if (error)
		__sync_fetch_and_add(&v->errors, 1);
	if (r->insert_ts && r->insert_ts < r->issue_ts)
		__sync_fetch_and_add(&v->queued_ns, r->issue_ts - r->insert_ts);
	if (d > v->max_ns)
		v->max_ns = d;
	slot = log2_u64(d / 1000);
	if (slot >= BLOCKIO_SLOTS)
		slot = BLOCKIO_SLOTS - 1;
	__sync_fetch_and_add(&v->slots[slot], 1);
out:
	bpf_map_delete_elem(&reqs, &key);
	return 0;
}

static __always_inline bool in_iowait(struct task_struct *t)
{
	return BPF_CORE_READ_BITFIELD_PROBED(t, in_iowait);
}

static __always_inline int on_switch(struct task_struct *prev, struct task_struct *next)
{
	struct blockio_task *e;
	__u64 now, d;
	__u32 tid;

	COUNT_EVENT();
	/* a wait for I/O begins: prev leaves the CPU asleep in io_schedule() */
	if (in_iowait(prev) && get_task_state(prev) != TASK_RUNNING && task_selected(prev)) {
		tid = BPF_CORE_READ(prev, pid);
		e = tid ? task_entry(prev, tid) : NULL;
		if (e)
			e->iowait_since = bpf_ktime_get_ns();
	}
	/* ... and ends when it runs again, still marked (io_schedule() clears the mark after) */
	if (!in_iowait(next))
		return 0;
	tid = BPF_CORE_READ(next, pid);
	e = bpf_map_lookup_elem(&tasks, &tid);
	if (e && e->iowait_since) {
		now = bpf_ktime_get_ns();
		d = now - e->iowait_since;
		e->iowait_ns += d;
		e->iowait_since = 0;
		e->waits++;
		if (d > e->max_wait_ns)
			e->max_wait_ns = d;
	}
	return 0;
}

SEC("tp_btf/block_rq_insert")
int BPF_PROG(btf_blockio_insert, struct request *rq) { return on_queue(rq, false); }
SEC("tp_btf/block_rq_issue")
int BPF_PROG(btf_blockio_issue, struct request *rq) { return on_queue(rq, true); }
SEC("tp_btf/block_rq_complete")
int BPF_PROG(btf_blockio_complete, struct request *rq, int error) { return on_complete(rq, error); }
SEC("tp_btf/sched_switch")
int BPF_PROG(btf_blockio_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(prev, next);
}

SEC("raw_tp/block_rq_insert")
int BPF_PROG(raw_blockio_insert, struct request *rq) { return on_queue(rq, false); }
SEC("raw_tp/block_rq_issue")
int BPF_PROG(raw_blockio_issue, struct request *rq) { return on_queue(rq, true); }
SEC("raw_tp/block_rq_complete")
int BPF_PROG(raw_blockio_complete, struct request *rq, int error) { return on_complete(rq, error); }
SEC("raw_tp/sched_switch")
int BPF_PROG(raw_blockio_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(prev, next);
}

char LICENSE[] SEC("license") = "GPL";
