"""workqueue.latency keys an item's execution time by what it saw at queue_work (function,
pool CPU), carried to execute_end with the running item, never guessed from the worker's
affinity there.  The look-alike that a guess gets wrong: an unbound workqueue whose cpumask
holds one CPU, so its workers may run on that CPU only (nr_cpus_allowed == 1) while the
pool is unbound (cpu -1).  The writeback workqueue is set so for the test (restored
after); sync() on a small ext4 waits for its wb_workfn items, whose executions must be
counted under the unbound pool.  The map drops are in the evidence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from scenarios.procs import ext4_loop, written

pytestmark = [pytest.mark.bpf]

WB_CPUMASK = "/sys/devices/virtual/workqueue/writeback/cpumask"

BOOK = """apiVersion: investigator/v1
kind: Playbook
metadata: {name: wq-key-test, description: workqueue execution times by pool}
start: [wq]
nodes:
  wq:
    hypothesis: work items wait and run
    probes:
      - use: workqueue.latency
    conclude:
      - when: workqueue.count > 0
        verdict: inconclusive
        explain: "{workqueue.count} items"
"""


@pytest.mark.skipif(not os.path.exists(WB_CPUMASK), reason="no sysfs writeback workqueue")
def test_execution_of_an_unbound_item_on_a_one_cpu_pool_is_counted(tmp_path: Path) -> None:
    book = tmp_path / "wq.yaml"
    book.write_text(BOOK)
    with written(WB_CPUMASK, "1"), ext4_loop(str(tmp_path)) as mnt:
        inv = subprocess.Popen([sys.executable, "-m", "investigator", str(book), "--window", "2",
                                "--plain", "--out", str(tmp_path / "b")], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert inv.stderr is not None
            for line in inv.stderr:                    # the live view's plain lines
                if "attached workqueue.latency" in line:
                    break
            end = time.monotonic() + 1.0
            while time.monotonic() < end:              # writeback work on the unbound pool
                with open(os.path.join(mnt, "f"), "wb") as f:
                    f.write(os.urandom(64 << 10))
                os.sync()
            rest = inv.communicate(timeout=60)[1]
        finally:
            if inv.poll() is None:
                inv.kill()
                inv.wait()
    assert inv.returncode in (0, 1), rest
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["wq"]["workqueue"]
    wb = [f for f in ev["functions"] if f["function"].startswith("wb_workfn")]
    assert wb, [f["function"] for f in ev["functions"]]
    assert {f["cpu"] for f in wb} == {-1}, wb                 # the pool, not the CPU it ran on
    (f,) = wb
    # sync() returned after each item ran: their executions are all here (one may still run)
    assert f["count"] >= 1 and f["count"] - 1 <= f["exec_count"] <= f["count"], f
    assert f["max_exec_ms"] > 0, f
    assert (ev["queued_dropped"], ev["stats_dropped"], ev["exec_dropped"]) == (0, 0, 0), ev
    assert ev["probe"]["drops"] == 0
