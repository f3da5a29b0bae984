"""The live view as a person sees it: the tool runs in a real terminal (tmux), and the
screen is read while the nodes observe and after the run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from scenarios.procs import PERIODIC, RT_HOG, SCENARIO_S, processes, wait_alive

pytestmark = [pytest.mark.bpf, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]


def _screen(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-J", "-S", "-200", "-t", session],
                          capture_output=True, text=True).stdout


@pytest.mark.cpu_heavy
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs a second CPU to starve")
def test_live_view_in_a_terminal(tmp_path: Path) -> None:
    session = f"inv-live-{os.getpid()}"
    cmd = (f"cd {REPO} && {sys.executable} -m investigator playbooks/freeze.yaml --window 4 "
           f"--out {tmp_path}/b; echo EXIT=$?; sleep 60")
    with processes() as ps:
        ps.spawn(RT_HOG, name="rt-hog", cpu=1, rtprio=10, seconds=SCENARIO_S)
        victim = ps.spawn(PERIODIC, name="periodic", cpu=1, period=0.005, work=0.02, seconds=SCENARIO_S)
        wait_alive(victim, 2.0)
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "180", "-y", "60",
                        "-e", "TERM=xterm-256color", cmd], check=True)
        try:
            during = ""
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                during = _screen(session)
                if "s left" in during and "sched.runqlat via" in during:
                    break
                time.sleep(0.2)
            deadline = time.monotonic() + 30
            after = ""
            while time.monotonic() < deadline:
                after = _screen(session)
                if "EXIT=" in after:
                    break
                time.sleep(0.3)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    # while observing: the tree (the first look, concluded, and the node it routed to), the
    # hooks, a countdown
    assert "investigating: freeze" in during and "triage" in during
    assert "observing," in during and "s left" in during
    assert "sched.runqlat via tp_btf" in during
    # at the end: the findings, then the report, and the exit code for a problem found
    assert "findings:" in after and "STARVATION" in after
    assert "VERDICTS" in after and "culprit" in after and "rt-hog" in after
    assert "EXIT=1" in after
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "live-view.txt").write_text(f"--- while observing ---\n{during}\n--- after ---\n{after}")
