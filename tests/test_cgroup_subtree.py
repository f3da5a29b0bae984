"""--cgroup selects a cgroup v2 subtree in the kernel: in a test-owned folder
``top/{parent/child/grandchild, sibling}``, a napping task in the grandchild is recorded
with --cgroup top/parent, while look-alikes (the same program) in the sibling and in top
itself, the parent's own parent, are not."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from scenarios.procs import NAPPER, processes, remove_cgroup, wait_alive

pytestmark = [pytest.mark.bpf, pytest.mark.second_kernel]


BOOK = """apiVersion: investigator/v1
kind: Playbook
metadata: {name: cgroup-subtree-test, description: which tasks the cgroup filter lets through}
start: [off]
nodes:
  off:
    hypothesis: selected tasks spend their time blocked
    probes:
      - use: sched.offcpu
    conclude:
      - when: offcpu.tasks_count > 0
        verdict: contention
        about: >-
          {"tasks": [{"tid": offcpu.worst.tid, "comm": offcpu.worst.comm, "role": "victim"}]}
        explain: "{offcpu.worst.comm} blocked {offcpu.worst.total_ms} ms"
"""


def _cgroup2_root() -> Path | None:
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f if len(line.split()) > 2 and line.split()[2] == "cgroup2"]
    return Path(mounts[0]) if mounts else None




@pytest.mark.skipif(_cgroup2_root() is None, reason="needs a cgroup2 mount")
def test_cgroup_selects_the_subtree_not_its_neighbours(tmp_path: Path) -> None:
    root = _cgroup2_root()
    assert root is not None
    top = root / f"investigator-test-{os.getpid()}"
    grandchild = top / "parent" / "child" / "grandchild"
    sibling = top / "sibling"
    book = tmp_path / "cg.yaml"
    book.write_text(BOOK)
    with processes() as ps:
        try:
            grandchild.mkdir(parents=True)
            sibling.mkdir()
            inside, beside, above = (ps.spawn_argv(NAPPER) for _ in range(3))
            for p, cg in ((inside, grandchild), (beside, sibling), (above, top)):
                (cg / "cgroup.procs").write_text(str(p.pid))
            wait_alive(inside, 0.3)
            inv = subprocess.run([sys.executable, "-m", "investigator", str(book), "--window", "1.5",
                                  "--json", "--cgroup", str(top / "parent"), "--out", str(tmp_path / "b")],
                                 cwd=REPO, capture_output=True, text=True, timeout=240)
            for p in (inside, beside, above):
                assert p.poll() is None, "a napper died during the window"
        finally:
            ps.kill_all()
            remove_cgroup(top)
    assert inv.returncode in (0, 1), inv.stderr
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["off"]["offcpu"]
    # only the subtree's one task was recorded (unfiltered, every sleeping task of the
    # machine would be; filtered on the parent alone, none)
    assert {t["tid"] for t in ev["tasks"]} == {inside.pid}, ev["tasks"]
    assert {s["tid"] for s in ev["stacks"]} == {inside.pid}, ev["stacks"]
    (v,) = [v for v in json.loads(inv.stdout)["verdicts"] if v["node"] == "off"]
    assert [(t["tid"], t["role"]) for t in v["tasks"]] == [(inside.pid, "victim")], v


def test_cgroup_outside_the_cgroup2_mount_is_a_one_line_error(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "investigator", "playbooks/freeze.yaml", "--cgroup", str(tmp_path),
                        "--out", str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert p.returncode != 0 and p.returncode != 1
    # (where no cgroup2 is mounted, that is what the line says)
    assert re.search(r"not a cgroup v2 folder|no cgroup2 filesystem is mounted", p.stderr), p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "b").exists()
