/* SPDX-License-Identifier: GPL-2.0 */
/* The record limit of a snapshot iterator: one run (a read of the iterator, one session)
 * writes at most max_records records and counts every record it would have written in
 * snapshot_seen, those beyond the limit included, so that user space can say a snapshot
 * was cut and give the true count.  The collector sets max_records before load and reads
 * snapshot_seen from .bss once the run has reached the end. */
#ifndef __INVESTIGATOR_SNAPSHOT_H
#define __INVESTIGATOR_SNAPSHOT_H

const volatile __u32 max_records = 4096;
__u64 snapshot_session = 0;     /* bpf_iter_meta::session_id of the run being counted */
__u64 snapshot_seen = 0;

/* At each call of the iterator program: a new run counts from zero. */
static __always_inline void snapshot_begin(struct bpf_iter_meta *meta)
{
	__u64 id = meta->session_id;

	if (id != snapshot_session) {
		snapshot_session = id;
		snapshot_seen = 0;
	}
}

/* One record: written while under the limit, counted always. */
static __always_inline void snapshot_write(struct seq_file *seq, void *rec, __u32 size)
{
	if (++snapshot_seen <= max_records)
		bpf_seq_write(seq, rec, size);
}

#endif
