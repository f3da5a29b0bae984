// SPDX-License-Identifier: GPL-2.0
/* The verifier must refuse this: a hash lookup dereferenced without a NULL check. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} m SEC(".maps");

SEC("raw_tp/sched_switch")
int BPF_PROG(bad)
{
	__u32 k = 1;
	__u64 *v = bpf_map_lookup_elem(&m, &k);

	return *v;
}

char LICENSE[] SEC("license") = "GPL";
