"""The investigation must not hang on the kernel it investigates.  The real condition (an
RT hog that stalls RCU grace periods before 6.12) is test_freeze_scenarios.py's
test_rt_hog_with_throttling_off_does_not_stall_the_investigation, run in the 6.1 guest;
these check the two mechanisms on any kernel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, investigate
from scenarios.procs import frozen_filesystem

from investigator.system import fds, procfs


def _has_bpf_fd(pid: int) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("anon_inode:bpf")
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_the_descriptor_table_is_sized_before_bpf_is_loaded(tmp_path: Path) -> None:
    """`investigate` sizes its descriptor table first thing, while it has one thread: every
    BPF object it opens later fits without the table growing (which waits for RCU)."""
    want = fds.wanted(os.cpu_count() or 1)
    p = subprocess.Popen([sys.executable, "-m", "investigator", "playbooks/freeze.yaml", "--window", "1",
                          "--quiet", "--out", str(tmp_path / "b")], cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = 0
    try:
        deadline = time.monotonic() + 30
        while p.poll() is None and time.monotonic() < deadline:
            st = procfs.status(p.pid)
            # a second thread, or a BPF object: by then the table must be sized
            if int(st.get("Threads", "0")) > 1 or _has_bpf_fd(p.pid):
                seen = int(st.get("FDSize", "0"))
                break
            time.sleep(0.002)
    finally:
        p.kill()
        p.wait()
    assert seen >= want, f"FDSize {seen} when the first thread or BPF object appeared; wanted {want}"


def test_reserving_needs_a_single_thread() -> None:
    code = ("import threading, time; from investigator.system import fds;"
            "t = threading.Thread(target=time.sleep, args=(1,)); t.start();"
            "print(fds.reserve_fd_table(), fds.table_size())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    reserved, size = map(int, out.stdout.split())
    assert reserved == 0 and size < fds.wanted(1), out.stdout
    code = "from investigator.system import fds; print(fds.reserve_fd_table(), fds.table_size())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    reserved, size = map(int, out.stdout.split())
    assert reserved == fds.wanted(os.cpu_count() or 1) and size >= reserved, out.stdout


def test_a_kernel_file_that_never_answers_is_given_up(tmp_path: Path) -> None:
    """read_in_child gives up after its timeout and leaves the reader behind, unwaited: a
    FIFO without a writer never answers."""
    fifo = tmp_path / "never"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish in 0.5 s"):
        procfs.read_in_child(str(fifo), 0.5)
    assert time.monotonic() - t0 < 5
    (tmp_path / "some").write_text("x" * 100_000)
    assert procfs.read_in_child(str(tmp_path / "some"), 5) == "x" * 100_000
    with pytest.raises(OSError, match="No such file"):
        procfs.read_in_child(str(tmp_path / "missing"), 5)


def test_a_bundle_folder_on_a_frozen_filesystem_does_not_hang_the_run(tmp_path: Path) -> None:
    """Run from (or --out into) a frozen filesystem: mkdir there waits for the thaw.  The
    folder is made by a child given up after 3 s, and the bundle goes to the temp dir."""
    with frozen_filesystem(str(tmp_path)) as mnt:
        p = investigate("playbooks/interrupts.yaml", "--window", "1", "--quiet", "--out", f"{mnt}/bundle",
                        timeout=60)
    assert p.returncode in (0, 1), p.stderr
    line = next(ln for ln in p.stderr.splitlines() if "creating it did not finish in 3 s" in ln)
    where = Path(line.rsplit("the bundle goes to ", 1)[1])
    try:
        assert (where / "report.json").exists()
    finally:
        shutil.rmtree(where, ignore_errors=True)
