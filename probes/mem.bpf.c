// SPDX-License-Identifier: GPL-2.0
/* mem.alloc: kernel allocations from the kmem:kmalloc / kmem:kfree tracepoints -- failed
 * kmalloc()s (NULL returned) with the task, the call site and the size, their rate over
 * time; and allocations made during the window and not freed, per call site (the
 * kmalloc/kfree balance).  Bounded: a full map stops tracking new allocations (counted as
 * drops) but failures are always counted. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "mem.h"

DEFINE_PROBE_STATS

const volatile __u64 bucket_ns = 100000000ULL;   /* failure rate buckets: 100 ms */
__u64 start_ns = 0;                              /* set by the first event */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);                     /* the allocation's address */
	__type(value, struct mem_live);
} live SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);                     /* call site */
	__type(value, struct mem_site);
} sites SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MEM_RATE_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} fail_rate SEC(".maps");

/* A large kmalloc that fails is traced twice: inside the large-allocation path (its call
 * site is kmalloc's own code) and then at the caller.  The per-CPU last failure lets the
 * second event, within 10 ms (slow under emulation), take the failure over from the first. */
struct last_fail {
	__u64 ts;
	__u64 bytes;
	__u64 site;
	__u32 tid;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct last_fail);
} last_fail SEC(".maps");

static __always_inline struct mem_site *site_of(__u64 call_site)
{
	struct mem_site *s, zero = {};

	s = bpf_map_lookup_elem(&sites, &call_site);
	if (s)
		return s;
	bpf_map_update_elem(&sites, &call_site, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&sites, &call_site);
}

static __always_inline int on_kmalloc(__u64 call_site, const void *ptr, __u64 bytes, __u32 gfp)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	__u64 now = bpf_ktime_get_ns(), key = (__u64)ptr, *n;
	struct mem_live l = {};
	struct mem_site *s;
	__u32 slot;

	COUNT_EVENT();
	if (!start_ns)
		start_ns = now;        /* CPUs that race here write about the same moment */
	if (!task_selected(t))
		return 0;
	s = site_of(call_site);
	if (!s) {
		COUNT_DROP();
		return 0;
	}
	if (!ptr) {
		__u32 zero = 0, tid = (__u32)bpf_get_current_pid_tgid();
		struct last_fail *lf = bpf_map_lookup_elem(&last_fail, &zero);
		bool again = false;

		if (lf) {
			again = lf->tid == tid && lf->bytes == bytes && now - lf->ts < 10000000 &&
				lf->site != call_site;
			if (again) {
				struct mem_site *prev = bpf_map_lookup_elem(&sites, &lf->site);

				if (prev)
					__sync_fetch_and_add(&prev->failures, -1);
			}
			lf->ts = now;
			lf->bytes = bytes;
			lf->site = call_site;
			lf->tid = tid;
		}
		__sync_fetch_and_add(&s->failures, 1);
		s->last_fail_ns = now;
		s->fail_bytes = bytes;
		s->fail_gfp = gfp;
		s->fail_tid = (__u32)bpf_get_current_pid_tgid();
		s->fail_tgid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(s->fail_comm, sizeof(s->fail_comm));
		slot = (now - start_ns) / bucket_ns;
		if (slot >= MEM_RATE_SLOTS)
			slot = MEM_RATE_SLOTS - 1;
		n = bpf_map_lookup_elem(&fail_rate, &slot);
		if (n && !again)
			__sync_fetch_and_add(n, 1);
		return 0;
	}
	__sync_fetch_and_add(&s->allocs, 1);
	l.call_site = call_site;
	l.ts = now;
	l.bytes = bytes > 0xffffffffULL ? 0xffffffffU : bytes;
	if (bpf_map_update_elem(&live, &key, &l, BPF_ANY)) {
		COUNT_DROP();
		return 0;
	}
	__sync_fetch_and_add(&s->bytes_out, l.bytes);
	return 0;
}

static __always_inline int on_kfree(const void *ptr)
{
	__u64 key = (__u64)ptr;
	struct mem_live *l;
	struct mem_site *s;

	COUNT_EVENT();
	if (!ptr)
		return 0;
	l = bpf_map_lookup_elem(&live, &key);
	if (!l)
		return 0;               /* allocated before attach, or not by kmalloc */
	s = bpf_map_lookup_elem(&sites, &l->call_site);
	if (s) {
		__sync_fetch_and_add(&s->frees, 1);
		__sync_fetch_and_add(&s->bytes_out, -(__s64)l->bytes);
	}
	bpf_map_delete_elem(&live, &key);
	return 0;
}

SEC("tp_btf/kmalloc")
int BPF_PROG(btf_kmalloc, unsigned long call_site, const void *ptr, size_t bytes_req,
	     size_t bytes_alloc, gfp_t gfp_flags, int node)
{
	return on_kmalloc(call_site, ptr, bytes_req, gfp_flags);
}

SEC("tp_btf/kfree")
int BPF_PROG(btf_kfree, unsigned long call_site, const void *ptr)
{
	return on_kfree(ptr);
}

SEC("raw_tp/kmalloc")
int BPF_PROG(raw_kmalloc, unsigned long call_site, const void *ptr, size_t bytes_req,
	     size_t bytes_alloc, gfp_t gfp_flags, int node)
{
	return on_kmalloc(call_site, ptr, bytes_req, gfp_flags);
}

SEC("raw_tp/kfree")
int BPF_PROG(raw_kfree, unsigned long call_site, const void *ptr)
{
	return on_kfree(ptr);
}

char LICENSE[] SEC("license") = "GPL";
