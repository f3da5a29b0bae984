"""sched.hung sees the kernel's own hung-task reports: a writer blocked on a frozen ext4
(uninterruptible, not killable: percpu_rwsem_wait) with kernel.hung_task_timeout_secs
lowered to 1 s for the test (restored after)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.procs import frozen_filesystem, processes, sysctl, wait_alive

pytestmark = [pytest.mark.bpf]

WRITER = """
open("/proc/self/comm", "w").write("{name}")
with open("{path}", "w") as f:
    f.write("x")           # blocks: the filesystem is frozen
"""


def test_hung_task_report_names_the_frozen_writer(tmp_path: Path) -> None:
    book = tmp_path / "hung.yaml"
    book.write_text("""apiVersion: investigator/v1
kind: Playbook
metadata: {name: hung-test, description: does the kernel report hung tasks}
start: [hung]
nodes:
  hung:
    hypothesis: the kernel's hung-task detector reports a task
    probes:
      - use: sched.hung
    conclude:
      - when: hung.tasks_count > 0
        verdict: hung-task
        about: hung.worst
        explain: "{hung.worst.task.comm} (tid {hung.worst.task.tid}) reported hung in {hung.worst.wchan}"
""")
    with frozen_filesystem(str(tmp_path)) as mnt, processes() as ps:
        born = time.monotonic()
        w = ps.spawn(WRITER, name="frozen-writer", path=f"{mnt}/file")
        wait_alive(w, 1.5)
        with sysctl("kernel.hung_task_timeout_secs", "1"):
            p = investigate(str(book), "--window", "3", "--json", "--out", str(tmp_path / "b"))
        lived_s = time.monotonic() - born
    assert p.returncode == 1, p.stderr
    (v,) = json.loads(p.stdout)["verdicts"]
    assert v["verdict"] == "hung-task"
    assert {"tid": w.pid, "pid": w.pid, "comm": "frozen-writer", "role": "waiter"} in \
        [{k: t[k] for k in ("tid", "pid", "comm", "role")} for t in v["tasks"]]
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["hung"]["hung"]
    t = next(t for t in ev["tasks"] if t["tid"] == w.pid)
    # not run since it blocked, by the scheduler's clocks: no longer than it has existed
    assert t["state"] == "D" and t["reports"] >= 1 and 1.5 <= t["blocked_s"] <= lived_s, (t, lived_s)
    assert "percpu_rwsem" in " ".join(t["stack"]) or "sb_start_write" in " ".join(t["stack"]), t["stack"]
    assert ev["timeout_s"] == 1
