// SPDX-License-Identifier: GPL-2.0
/* mem.stall: the time each task loses to memory -- in direct and memory cgroup reclaim and
 * in compaction (the vmscan / compaction tracepoints' begin and end, in the allocating task),
 * and off the CPU in a memory stall outside those: a task that leaves the CPU with
 * task_struct::in_memstall set (the kernel's PSI marks it around refaults of pages evicted
 * while in use, swap-in and memory.high throttling) stalls until it runs again.  Beside it,
 * the pages each task allocated (kmem:mm_page_alloc): who brought the memory in, and the
 * times kswapd was woken. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "memstall.h"

DEFINE_PROBE_STATS

__u64 kswapd_wakes = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct memstall_task);
} tasks SEC(".maps");

static __always_inline struct memstall_task *entry(struct task_struct *t, __u32 tid)
{
	struct memstall_task *e = bpf_map_lookup_elem(&tasks, &tid), zero = {};

	if (e)
		return e;
	zero.tgid = BPF_CORE_READ(t, tgid);
	zero.kthread = !!(BPF_CORE_READ(t, flags) & PF_KTHREAD);
	BPF_CORE_READ_STR_INTO(&zero.comm, t, comm);
	if (bpf_map_update_elem(&tasks, &tid, &zero, BPF_NOEXIST) && !bpf_map_lookup_elem(&tasks, &tid)) {
		COUNT_DROP();
		return NULL;
	}
	return bpf_map_lookup_elem(&tasks, &tid);
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct memstall_alloc_run);
} alloc_runs SEC(".maps");

static __always_inline struct memstall_alloc_run *alloc_run(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&alloc_runs, &zero);
}

/* the pages of this CPU's run into its task's entry */
static __always_inline void flush_run(struct memstall_alloc_run *r)
{
	struct memstall_task *e;

	if (r->tid && r->pages) {
		e = bpf_map_lookup_elem(&tasks, &r->tid);
		if (e)
			__sync_fetch_and_add(&e->alloc_pages, r->pages);
	}
	r->tid = 0;
	r->pages = 0;
}

/* PSI's mark of a task in a memory stall (psi_memstall_enter .. _leave), since 5.9 */
static __always_inline bool in_memstall(struct task_struct *t)
{
	if (!bpf_core_field_exists(t->in_memstall))
		return false;
	return BPF_CORE_READ_BITFIELD_PROBED(t, in_memstall);
}

static __always_inline int on_mm(bool begin, bool compact, __u64 reclaimed)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u32 tid = BPF_CORE_READ(t, pid);
	struct memstall_task *e;

	COUNT_EVENT();
	if (!tid || !task_selected(t) || !(e = entry(t, tid)))
		return 0;
	mm_stall_mark(&e->mm, begin, compact, bpf_ktime_get_ns());
	if (begin && compact)
		e->compactions++;
	else if (begin)
		e->reclaims++;
	else if (!compact)
		e->reclaimed_pages += reclaimed;
	return 0;
}

static __always_inline int on_switch(struct task_struct *prev, struct task_struct *next)
{
	struct memstall_alloc_run *r;
	struct memstall_task *e;
	__u64 now;
	__u32 tid;

	COUNT_EVENT();
	r = alloc_run();
	if (r && r->tid && r->tid == BPF_CORE_READ(prev, pid))
		flush_run(r);
	/* a stall sleep begins: prev leaves the CPU asleep (not preempted) inside a stall that
	 * reclaim or compaction does not already time */
	if (in_memstall(prev) && get_task_state(prev) != TASK_RUNNING && task_selected(prev)) {
		tid = BPF_CORE_READ(prev, pid);
		e = tid ? entry(prev, tid) : NULL;
		if (e && !e->mm.reclaim_since && !e->mm.compact_since)
			e->sleep_since = bpf_ktime_get_ns();
	}
	/* ... and ends when it runs again, still marked (psi_memstall_leave comes after the
	 * wait): only a marked task is looked up */
	if (!in_memstall(next))
		return 0;
	tid = BPF_CORE_READ(next, pid);
	e = bpf_map_lookup_elem(&tasks, &tid);
	if (e && e->sleep_since) {
		now = bpf_ktime_get_ns();
		e->sleep_ns += now - e->sleep_since;
		e->sleep_since = 0;
		e->sleeps++;
	}
	return 0;
}

static __always_inline int on_alloc(unsigned int order)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u32 tid = BPF_CORE_READ(t, pid);
	struct memstall_alloc_run *r = alloc_run();
	__u64 pages = 1ULL << (order & 31);
	struct memstall_task *e;

	COUNT_EVENT();
	if (r && tid && r->tid == tid) {        /* the burst goes on: selected, has an entry */
		r->pages += pages;
		return 0;
	}
	if (!tid || !task_selected(t) || !(e = entry(t, tid)))
		return 0;
	if (!r) {
		__sync_fetch_and_add(&e->alloc_pages, pages);
		return 0;
	}
	flush_run(r);                           /* another task's burst on this CPU ends */
	r->tid = tid;
	r->pages = pages;
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(btf_memstall_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(prev, next);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(raw_memstall_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(prev, next);
}

SEC("tp_btf/mm_page_alloc")
int BPF_PROG(btf_memstall_alloc, struct page *page, unsigned int order)
{
	return page ? on_alloc(order) : 0;
}

SEC("raw_tp/mm_page_alloc")
int BPF_PROG(raw_memstall_alloc, struct page *page, unsigned int order)
{
	return page ? on_alloc(order) : 0;
}

SEC("tp_btf/mm_vmscan_kswapd_wake")
int btf_memstall_kswapd_wake(void *ctx) { __sync_fetch_and_add(&kswapd_wakes, 1); return 0; }
SEC("raw_tp/mm_vmscan_kswapd_wake")
int raw_memstall_kswapd_wake(void *ctx) { __sync_fetch_and_add(&kswapd_wakes, 1); return 0; }

SEC("tp_btf/mm_vmscan_direct_reclaim_begin")
int btf_memstall_reclaim_begin(void *ctx) { return on_mm(true, false, 0); }
SEC("tp_btf/mm_vmscan_direct_reclaim_end")
int BPF_PROG(btf_memstall_reclaim_end, unsigned long nr) { return on_mm(false, false, nr); }
SEC("tp_btf/mm_vmscan_memcg_reclaim_begin")
int btf_memstall_memcg_begin(void *ctx) { return on_mm(true, false, 0); }
SEC("tp_btf/mm_vmscan_memcg_reclaim_end")
int BPF_PROG(btf_memstall_memcg_end, unsigned long nr) { return on_mm(false, false, nr); }
SEC("tp_btf/mm_compaction_begin")
int btf_memstall_compact_begin(void *ctx) { return on_mm(true, true, 0); }
SEC("tp_btf/mm_compaction_end")
int btf_memstall_compact_end(void *ctx) { return on_mm(false, true, 0); }

SEC("raw_tp/mm_vmscan_direct_reclaim_begin")
int raw_memstall_reclaim_begin(void *ctx) { return on_mm(true, false, 0); }
SEC("raw_tp/mm_vmscan_direct_reclaim_end")
int BPF_PROG(raw_memstall_reclaim_end, unsigned long nr) { return on_mm(false, false, nr); }
SEC("raw_tp/mm_vmscan_memcg_reclaim_begin")
int raw_memstall_memcg_begin(void *ctx) { return on_mm(true, false, 0); }
SEC("raw_tp/mm_vmscan_memcg_reclaim_end")
int BPF_PROG(raw_memstall_memcg_end, unsigned long nr) { return on_mm(false, false, nr); }
SEC("raw_tp/mm_compaction_begin")
int raw_memstall_compact_begin(void *ctx) { return on_mm(true, true, 0); }
SEC("raw_tp/mm_compaction_end")
int raw_memstall_compact_end(void *ctx) { return on_mm(false, true, 0); }

char LICENSE[] SEC("license") = "GPL";
