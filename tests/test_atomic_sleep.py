"""A blocking call in atomic context, caused for real by the second-kernel stage's fault
module (tests/vm/faults/: msleep() with preemption disabled) and concluded by
playbooks/context.yaml's atomic-sleep node, which catches the scheduler's own
"scheduling while atomic" check (__schedule_bug) with kernel.func.  Runs in the guests only:
the module is built for Debian's kernels, and this development kernel has neither kprobes
nor usable trampolines (there the node is unobservable and says why)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.faults import FAULT_WRITER, MISSING, MODULE, fault_module
from scenarios.procs import SCENARIO_S, processes, wait_alive

pytestmark = [pytest.mark.bpf, pytest.mark.second_kernel, pytest.mark.skipif(not MODULE.exists(), reason=MISSING)]


def test_sleep_in_atomic_context_names_the_task_and_the_call(tmp_path: Path) -> None:
    with fault_module(), processes() as ps:
        # msleep(20) with preemption disabled, in the kernel, every 0.3 s
        w = ps.spawn(FAULT_WRITER, name="atomic-writer", command="atomic-sleep 20", period=0.3, seconds=SCENARIO_S)
        wait_alive(w, 0.5)
        p = investigate("playbooks/context.yaml", "--window", "2", "--json", "--out", str(tmp_path / "b"))
    assert p.returncode == 1, p.stderr
    rep = json.loads(p.stdout)
    (v,) = [v for v in rep["verdicts"] if v["node"] == "atomic-sleep"]
    assert v["verdict"] == "wrong-context"
    assert [(t["tid"], t["role"]) for t in v["tasks"]] == [(w.pid, "culprit")]
    assert f"atomic-writer (tid {w.pid}) blocked in atomic context" in v["summary"], v["summary"]
    stack = " ".join(v["evidence"]["details"]["stack"])
    assert "msleep" in stack and "fault_atomic_sleep" in stack, stack
    assert v["evidence"]["details"]["calls"] >= 3          # one per write, every 0.3 s for 2 s
    # nothing else in that playbook fires on it
    assert [x["node"] for x in rep["verdicts"]] == ["atomic-sleep"]
