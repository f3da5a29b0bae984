"""sched.offcpu on real blocking: a task napping 200 ms at a time (back and forth through
do_nanosleep) and a task that blocks on an empty pipe once the probe is attached and is
still away when the window closes.  Checks the time, the kernel and user stacks, and the
ongoing wait.  (A task blocked since before the window never switches out while the probe
watches: sched.blocked's snapshot is what finds those.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from scenarios.procs import SCENARIO_S, processes, wait_alive

pytestmark = [pytest.mark.bpf, pytest.mark.second_kernel]

NAPPER = """
import time
open("/proc/self/comm", "w").write("{name}")
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    time.sleep(0.2)
"""

PIPE_READER = """
import os, time
open("/proc/self/comm", "w").write("{name}")
r, w = os.pipe()
os.read(r, 1)          # nobody writes: blocked until killed
"""


def test_offcpu_time_and_stacks_of_napping_and_blocked_tasks(tmp_path: Path) -> None:
    book = tmp_path / "off.yaml"
    book.write_text("""apiVersion: investigator/v1
kind: Playbook
metadata: {name: offcpu-test, description: where do tasks wait}
start: [off]
nodes:
  off:
    hypothesis: tasks spend their time blocked
    probes:
      - use: sched.offcpu
    conclude:
      - when: offcpu.total_ms > 0.0
        verdict: inconclusive
        explain: "{offcpu.worst.comm} blocked {offcpu.worst.total_ms} ms"
""")
    with processes() as ps:
        napper = ps.spawn(NAPPER, name="napper", seconds=SCENARIO_S)
        wait_alive(napper, 0.5)
        inv = subprocess.Popen([sys.executable, "-m", "investigator", str(book), "--window", "2",
                                "--out", str(tmp_path / "b")], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
        try:
            for line in inv.stderr:                    # the live view's plain lines
                if "attached sched.offcpu" in line:
                    break
            t_blocked = time.monotonic()
            reader = ps.spawn(PIPE_READER, name="pipe-reader")
            rest = inv.communicate(timeout=60)[1]
        finally:
            if inv.poll() is None:
                inv.kill()
        away_ms = (time.monotonic() - t_blocked) * 1000
    assert inv.returncode in (0, 1), rest
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["off"]["offcpu"]
    tasks = {t["tid"]: t for t in ev["tasks"]}
    # napping: away almost the whole 2 s window, in ~10 blocks of 200 ms -- and at most the
    # time the probe was attached, which under emulation runs seconds past the window while
    # the evidence is read (5.4 s in all in the 6.12 guest).  Only naps that began and ended
    # while attached are whole blocks: the one under way at attach is not counted and the one
    # under way at the end is ongoing, so a 2 s window holds 8 to 10 of them.
    nap = tasks[napper.pid]
    attached_ms = ev["probe"]["observed_s"] * 1000
    assert 7 <= nap["blocks"] <= attached_ms / 200 + 2, (nap, attached_ms)
    assert 199 * nap["blocks"] <= nap["offcpu_ms"] <= attached_ms + 250, (nap, attached_ms)
    assert nap["offcpu_ms"] + nap["ongoing_ms"] <= attached_ms + 250, (nap, attached_ms)
    nap_stack = next(s for s in ev["stacks"] if s["tid"] == napper.pid and s["count"])
    assert "do_nanosleep" in " ".join(nap_stack["kernel_stack"]), nap_stack
    assert not nap_stack["kernel_stack"][0].startswith("bpf_"), nap_stack["kernel_stack"][:2]
    # one nap at a time, however late its timer fires on a loaded emulated machine (544 ms
    # seen in the 6.12 guest beside a busy host): never two merged into one block
    assert 195 <= nap_stack["max_ms"] <= min(1000, attached_ms / 2), (nap_stack, attached_ms)
    # user frames as file+offset (libc's nanosleep) where the unwinder got one
    assert all("+0x" in f or f.startswith("0x") for f in nap_stack["user_stack"]), nap_stack["user_stack"]
    assert any(f.startswith("libc.so") for s in ev["stacks"] if s["tid"] == napper.pid
               for f in s["user_stack"]) or os.uname().release.startswith(("6.1.", "6.12.")), ev["stacks"]
    # blocked during the window and never back: ongoing, sleeping, in the pipe read
    rd = next(s for s in ev["stacks"] if s["tid"] == reader.pid and s["ongoing_ms"])
    # (it blocks once its interpreter has started: ~0.1 s here, seconds under emulation)
    assert 0 < rd["ongoing_ms"] <= away_ms and rd["state"] == "S" and rd["count"] == 0, (rd, away_ms)
    # (a stack lost to a collision in the stack map is counted as a drop: seen once under
    # emulation on 6.1)
    assert "pipe_read" in " ".join(rd["kernel_stack"]) or (not rd["kernel_stack"] and ev["probe"]["drops"]), rd
