"""The descriptor table is sized for what the playbook attaches (system/fds.py), while the
process has one thread; a playbook whose probes need more descriptors than the hard limit
allows is refused before anything attaches."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from investigator.playbook import load_playbook
from investigator.system.fds import playbook_descriptors, wanted

pytestmark = pytest.mark.bpf

NODE = """\
  n{i}:
    hypothesis: Probe instance {i}.
    probes:
      - use: sched.runqlat
        with: {{min_wait: {i}us}}
      - use: irq.time
    conclude:
      - when: "true"
        verdict: refuted
"""


def _book(tmp: Path, nodes: int) -> Path:
    p = tmp / f"wide-{nodes}.yaml"
    p.write_text("apiVersion: investigator/v1\nkind: Playbook\nmetadata:\n  name: wide\n"
                 "  description: Many probe instances at once.\n"
                 f"start: [{', '.join(f'n{i}' for i in range(nodes))}]\nnodes:\n"
                 + "".join(NODE.format(i=i) for i in range(nodes)))
    return p


def _run(book: Path, out: Path, nofile: int | None = None) -> subprocess.Popen[str]:
    def limit() -> None:
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    return subprocess.Popen([sys.executable, "-m", "investigator", str(book), "--window", "1", "--json",
                             "--quiet", "--out", str(out)], cwd=REPO, text=True, preexec_fn=limit,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_the_table_covers_what_the_playbook_holds(tmp_path: Path) -> None:
    """A run of the flagship: its descriptor count, sampled while it runs, never exceeds the
    count derived from its manifests, and the table was sized for that count at start."""
    book = REPO / "playbooks" / "freeze.yaml"
    need = playbook_descriptors(load_playbook(str(book)), os.cpu_count() or 1)
    p = _run(book, tmp_path / "b")
    peak, fdsize = 0, 0
    deadline = time.monotonic() + 90
    try:
        while p.poll() is None and time.monotonic() < deadline:
            try:
                peak = max(peak, len(os.listdir(f"/proc/{p.pid}/fd")))
                with open(f"/proc/{p.pid}/status") as f:
                    fdsize = max(fdsize, next(int(ln.split()[1]) for ln in f if ln.startswith("FDSize:")))
            except (OSError, StopIteration):
                pass
            time.sleep(0.02)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode in (0, 1), err
    assert json.loads(out)["nodes"]
    assert 40 < peak <= need, (peak, need)
    assert fdsize >= wanted(os.cpu_count() or 1, need)


def test_a_playbook_needing_more_than_the_hard_limit_is_refused_before_attaching(tmp_path: Path) -> None:
    wide = _book(tmp_path, 12)
    need = playbook_descriptors(load_playbook(str(wide)), os.cpu_count() or 1)
    assert need > 256
    p = _run(wide, tmp_path / "b", nofile=256)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 3, err
    assert f"up to {need} file descriptors" in err and "(256, the hard RLIMIT_NOFILE)" in err
    assert "nothing was attached" in err and "Traceback" not in err and out == ""
    # the look-alike: one such node fits under the same limit and runs
    narrow = _book(tmp_path, 1)
    assert playbook_descriptors(load_playbook(str(narrow)), os.cpu_count() or 1) < 256
    p = _run(narrow, tmp_path / "n", nofile=256)
    out, err = p.communicate(timeout=60)
    assert p.returncode in (0, 1), err
    assert [n["status"] for n in json.loads(out)["nodes"]] == ["refuted"]
