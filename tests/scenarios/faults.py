"""The second-kernel stage's fault module (tests/vm/faults/): kernel bugs on demand, built
by tests/vm/setup.sh for each guest kernel.  Only the guests load it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def fault_module() -> Iterator[Path]:
    kmod.load(str(MODULE))
    try:
        yield MODULE
    finally:
        kmod.unload("faults")
