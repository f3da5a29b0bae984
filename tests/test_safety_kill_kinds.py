"""SIGKILL leaves nothing behind, for every kind of hook the tool attaches: a uprobe,
perf-event sampling, and -- where this kernel allows them, i.e. in the second-kernel
guests -- fentry and kprobe.  (Tracepoints, tp_btf, raw_tp and iterators:
test_safety_exits.py; bpftrace: test_bpftrace_node.py.)  Each is attached for real,
confirmed in the kernel's own listing, the tool is killed, and the kernel must then list
none of what it held."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, bpf_ids_of_pid, events_of, libc_path, still_loaded, wait_for_event, wait_unloaded

from investigator.bpf import features

pytestmark = [pytest.mark.bpf, pytest.mark.second_kernel]


def _book(tmp: Path, use: str, with_: str) -> Path:
    p = tmp / "kill.yaml"
    p.write_text(f"""apiVersion: investigator/v1
kind: Playbook
metadata: {{name: kill-test, description: attach and be killed}}
start: [one]
nodes:
  one:
    hypothesis: attached
    probes:
      - use: {use}
        with: {with_}
    observe: {{window: 60s}}
    conclude:
      - when: "true"
        verdict: refuted
""")
    return p


FUNCTION = "do_sys_openat2"
KINDS = {
    "uprobe": ("user.func", f"{{binary: {libc_path()}, function: isatty}}", "", True),
    "perf_event": ("sched.oncpu", "{}", "", True),
    "fentry": ("kernel.func", f"{{function: {FUNCTION}}}", "",
               bool(features.hook("fentry", FUNCTION))),
    "kprobe": ("kernel.func", f"{{function: {FUNCTION}}}", "fentry", bool(features.hook("kprobe"))),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_sigkill_with_each_hook_kind_leaves_nothing_loaded(tmp_path: Path, kind: str) -> None:
    use, with_, ruled_out, works = KINDS[kind]
    if not works:
        pytest.skip(f"{kind} does not work on this kernel: runs in the second-kernel stage")
    env = {**os.environ, **({"INVESTIGATOR_DISABLE_HOOKS": ruled_out} if ruled_out else {})}
    log = tmp_path / "b" / "events.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "investigator", str(_book(tmp_path, use, with_)), "-q",
                          "--out", str(tmp_path / "b")], cwd=REPO, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_event(log, "first_attached", p)
        (att,) = [e for e in events_of(log) if e["event"] == "probe_attached"]
        assert att["hook"] == kind, att
        ids = bpf_ids_of_pid(p.pid)
        assert ids["prog"], ids
        assert still_loaded(ids) == ids, "the kernel lists what the process holds"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    assert wait_unloaded(ids) == {"prog": set(), "link": set(), "map": set()}
