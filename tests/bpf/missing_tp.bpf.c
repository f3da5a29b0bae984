// SPDX-License-Identifier: GPL-2.0
/* Targets that do not exist: load (tp_btf) and attach (raw_tp) must fail with errno. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("raw_tp/no_such_tracepoint_xyz")
int BPF_PROG(missing_raw)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
