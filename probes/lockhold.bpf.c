// SPDX-License-Identifier: GPL-2.0
/* lock.hold: how long kernel mutexes are held -- from the return of mutex_lock*() that
 * acquired to the matching mutex_unlock() by the same task -- per mutex, with the holder of
 * the longest hold and its stack when it acquired, and the latest 128 holds in order
 * (acquire vs release timing: the race hunt).  fentry/fexit, or kprobe/kretprobe where
 * trampolines are refused. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "lockhold.h"

DEFINE_PROBE_STATS

const volatile __u64 only_lock = 0;             /* one mutex's address; 0 = every mutex */
const volatile __u64 min_hold_ns = 0;
const volatile __u64 timeline_min_ns = 1000000ULL;      /* holds kept in the timeline */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct hold_key);
	__type(value, struct hold_start);
} held SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);                     /* tid: the lock a kprobe saw requested */
	__type(value, __u64);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct hold_stat);
} by_lock SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HOLD_RECENT);
	__type(key, __u32);
	__type(value, struct hold_event);
} recent SEC(".maps");

__u64 recent_seq = 0;
struct hold_stat zero_stat = {};        /* never written: too large for the BPF stack */

static __always_inline void acquired(void *ctx, __u64 lock)
{
	struct hold_key k = {};
	struct hold_start s = {};
	long n;

	COUNT_EVENT();
	if (!lock || (only_lock && lock != only_lock))
		return;
	if (!task_selected((void *)bpf_get_current_task()))
		return;
	k.lock = lock;
	k.tid = (__u32)bpf_get_current_pid_tgid();
	s.ts = bpf_ktime_get_ns();
	/* the stack goes with the hold, not into a stack map: a stack map keeps one stack per
	 * hash bucket and refuses the next that lands there, so on a busy machine the
	 * longest hold's stack could be the one refused */
	n = bpf_get_stack(ctx, s.stack, sizeof(s.stack), 0);
	s.frames = n > 0 ? n / sizeof(__u64) : 0;
	if (bpf_map_update_elem(&held, &k, &s, BPF_ANY))
		COUNT_DROP();
}

static __always_inline void released(__u64 lock)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid(), now, d, seq;
	struct hold_key k = {};
	struct hold_start *s;
	struct hold_stat *st;
	struct hold_event *e;
	__u32 slot;

	COUNT_EVENT();
	k.lock = lock;
	k.tid = (__u32)pid_tgid;
	s = bpf_map_lookup_elem(&held, &k);
	if (!s)
		return;                 /* acquired before attach, or by another task */
	now = bpf_ktime_get_ns();
	d = now - s->ts;
	if (d >= min_hold_ns) {
		st = bpf_map_lookup_elem(&by_lock, &lock);
		if (!st) {
			bpf_map_update_elem(&by_lock, &lock, &zero_stat, BPF_NOEXIST);
			st = bpf_map_lookup_elem(&by_lock, &lock);
		}
		if (st) {
			__sync_fetch_and_add(&st->count, 1);
			__sync_fetch_and_add(&st->total_ns, d);
			slot = log2_u64(d / 1000) & (HOLD_SLOTS - 1);
			__sync_fetch_and_add(&st->hist[slot], 1);
			if (d > st->max_ns) {
				st->max_ns = d;
				st->worst_tid = (__u32)pid_tgid;
				st->worst_tgid = pid_tgid >> 32;
				st->worst_frames = s->frames;
				__builtin_memcpy(st->worst_stack, s->stack, sizeof(st->worst_stack));
				bpf_get_current_comm(st->worst_comm, sizeof(st->worst_comm));
			}
		} else {
			COUNT_DROP();
		}
		if (d < timeline_min_ns)
			goto out;
		seq = __sync_fetch_and_add(&recent_seq, 1);
		slot = seq % HOLD_RECENT;
		e = bpf_map_lookup_elem(&recent, &slot);
		if (e) {
			e->lock = lock;
			e->acquired_ns = s->ts;
			e->released_ns = now;
			e->tid = (__u32)pid_tgid;
			e->tgid = pid_tgid >> 32;
			bpf_get_current_comm(e->comm, sizeof(e->comm));
		}
	}
out:
	bpf_map_delete_elem(&held, &k);
}

/* fentry/fexit: the section targets are the real functions */
SEC("fexit/mutex_lock")
int BPF_PROG(fexit_mutex_lock, struct mutex *lock)
{
	acquired(ctx, (__u64)lock);
	return 0;
}

SEC("fexit/mutex_lock_interruptible")
int BPF_PROG(fexit_mutex_lock_intr, struct mutex *lock, int ret)
{
	if (!ret)
		acquired(ctx, (__u64)lock);
	return 0;
}

SEC("fexit/mutex_lock_killable")
int BPF_PROG(fexit_mutex_lock_kill, struct mutex *lock, int ret)
{
	if (!ret)
		acquired(ctx, (__u64)lock);
	return 0;
}

SEC("fexit/mutex_trylock")
int BPF_PROG(fexit_mutex_trylock, struct mutex *lock, int ret)
{
	if (ret == 1)
		acquired(ctx, (__u64)lock);
	return 0;
}

SEC("fentry/mutex_unlock")
int BPF_PROG(fentry_mutex_unlock, struct mutex *lock)
{
	released((__u64)lock);
	return 0;
}

/* kprobe/kretprobe: the entry saves the lock, the return (with the result) acquires it */
static __always_inline void request(__u64 lock)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	if (bpf_map_update_elem(&pending, &tid, &lock, BPF_ANY))
		COUNT_DROP();
}

static __always_inline void result(void *ctx, bool ok)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *lock = bpf_map_lookup_elem(&pending, &tid);

	if (!lock)
		return;
	if (ok)
		acquired(ctx, *lock);
	bpf_map_delete_elem(&pending, &tid);
}

SEC("kprobe/mutex_lock")
int BPF_KPROBE(kp_mutex_lock, struct mutex *lock) { request((__u64)lock); return 0; }
SEC("kretprobe/mutex_lock")
int BPF_KRETPROBE(krp_mutex_lock) { result(ctx, true); return 0; }
SEC("kprobe/mutex_lock_interruptible")
int BPF_KPROBE(kp_mutex_lock_intr, struct mutex *lock) { request((__u64)lock); return 0; }
SEC("kretprobe/mutex_lock_interruptible")
int BPF_KRETPROBE(krp_mutex_lock_intr, int ret) { result(ctx, ret == 0); return 0; }
SEC("kprobe/mutex_lock_killable")
int BPF_KPROBE(kp_mutex_lock_kill, struct mutex *lock) { request((__u64)lock); return 0; }
SEC("kretprobe/mutex_lock_killable")
int BPF_KRETPROBE(krp_mutex_lock_kill, int ret) { result(ctx, ret == 0); return 0; }
SEC("kprobe/mutex_trylock")
int BPF_KPROBE(kp_mutex_trylock, struct mutex *lock) { request((__u64)lock); return 0; }
SEC("kretprobe/mutex_trylock")
int BPF_KRETPROBE(krp_mutex_trylock, int ret) { result(ctx, ret == 1); return 0; }
SEC("kprobe/mutex_unlock")
int BPF_KPROBE(kp_mutex_unlock, struct mutex *lock) { released((__u64)lock); return 0; }

char LICENSE[] SEC("license") = "GPL";
