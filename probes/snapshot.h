/* SPDX-License-Identifier: GPL-2.0 */
/* The record limit of a snapshot iterator: one run (a read of the iterator, one session)
 * writes at most max_records records and counts every record it found in snapshot_seen,
 * those beyond the limit included, so that user space can say a snapshot was cut and give
 * the true count.  The collector sets max_records before load and reads snapshot_seen from
 * .bss once the run has reached the end.
 *
 * A record is counted once although the kernel may show its object twice: when a write
 * overflows the read's buffer, bpf_seq_read() drops all that this call of the program wrote
 * and calls the program again for the same object in the next read (kernel/bpf/bpf_iter.c).
 * So a call's counts are taken back with its output when a write of it fails. */
#ifndef __INVESTIGATOR_SNAPSHOT_H
#define __INVESTIGATOR_SNAPSHOT_H

const volatile __u32 max_records = 4096;
__u64 snapshot_session = 0;     /* bpf_iter_meta::session_id of the run being counted */
__u64 snapshot_seen = 0;
__u64 snapshot_call_seen = 0;   /* snapshot_seen when this call of the program began */
__u32 snapshot_overflowed = 0;  /* a write of this call failed: it will be shown again */

/* At each call of the iterator program: a new run counts from zero. */
static __always_inline void snapshot_begin(struct bpf_iter_meta *meta)
{
	__u64 id = meta->session_id;

	if (id != snapshot_session) {
		snapshot_session = id;
		snapshot_seen = 0;
	}
	snapshot_call_seen = snapshot_seen;
	snapshot_overflowed = 0;
}

/* One record: written while under the limit, counted always -- unless this call's output
 * overflowed the buffer, which the kernel takes back and asks for again. */
static __always_inline void snapshot_write(struct seq_file *seq, void *rec, __u32 size)
{
	if (snapshot_overflowed)
		return;
	if (snapshot_seen < max_records && bpf_seq_write(seq, rec, size)) {
		snapshot_seen = snapshot_call_seen;
		snapshot_overflowed = 1;
		return;
	}
	snapshot_seen++;
}

#endif
