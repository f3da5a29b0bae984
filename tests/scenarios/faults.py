"""The second-kernel stage's fault module (tests/vm/faults/): kernel bugs on demand, built
by tests/vm/setup.sh for each guest kernel.  Only the guests load it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "vm"))
import kmod  # noqa: E402

CACHE = Path(os.environ.get("INVESTIGATOR_VM_DIR", "/var/cache/investigator-vm"))
MODULE = CACHE / f"k-{os.uname().release}" / "faults.ko"
MISSING = (f"no fault module for this kernel ({MODULE}): tests/vm/setup.sh builds one per guest "
           "kernel; the second-kernel stage runs this test there")

# writes a command to the module's file every `period` seconds until `seconds` have passed
FAULT_WRITER = """
import time
open("/proc/self/comm", "w").write("{name}")
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    try:
        with open("/proc/investigator_faults", "w") as f:
            f.write("{command}")
    except OSError:
        pass
    time.sleep({period})
"""


FAULTS = "/proc/investigator_faults"


def mmap_held() -> int:
    """The PID whose mmap_lock the module holds for writing now (``mmap-hold``), 0 for none."""
    with open(FAULTS) as f:
        words = f.read().split()
    return int(words[1]) if words[:1] == ["mmap-held"] else 0


def wait_mmap_held(pid: int, writer: Any, timeout: float = 60.0) -> None:
    """Wait until the module holds ``pid``'s mmap_lock (the writer may take a while to be
    scheduled on a slow guest); fail early if the writer died."""
    end = time.monotonic() + timeout
    while mmap_held() != pid:
        if writer.poll() is not None:
            raise RuntimeError(f"the mmap-hold writer exited with {writer.returncode} before holding")
        if time.monotonic() > end:
            raise RuntimeError(f"the module did not hold pid {pid}'s mmap_lock within {timeout} s")
        time.sleep(0.02)


def mmap_release() -> None:
    with open(FAULTS, "w") as f:
        f.write("mmap-release")


@contextmanager
def fault_module() -> Iterator[Path]:
    kmod.load(str(MODULE))
    try:
        yield MODULE
    finally:
        kmod.unload("faults")
