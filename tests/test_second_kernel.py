"""The second-kernel stage: the tests marked ``second_kernel`` (function probes through
kprobe/kretprobe and fentry/fexit, lock hold times) run for real under Debian's 6.1 and
6.12 kernels, and those marked ``kernel_510`` under Debian 11's 5.10, booted in qemu with
software emulation (tests/vm/).  The guest runs this machine's own Python, venv and
compiled probes over 9p: the same CO-RE objects load on 5.10, 6.1, 6.12 and the host's
kernel."""

from __future__ import annotations

import concurrent.futures
import os
import sys
import xml.etree.ElementTree as ET

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tests" / "vm"))
import run as vm  # noqa: E402

# Two guests boot at once, each on one host thread (TCG thread=single, see tests/vm/run.py),
# and the third when one is done: a guest's whole suite takes ~20 min here; the bound is only against a hung guest, and
# make test-slow's guests (a busy host) take up to three times as long
SLOWER = 3 if os.environ.get("INVESTIGATOR_VM_ACCEL") else 1
GUEST_BOUND = 2400 * SLOWER
pytestmark = [pytest.mark.bpf,
              pytest.mark.skipif(os.environ.get("INVESTIGATOR_IN_VM") == "1", reason="already in the guest"),
              pytest.mark.timeout(GUEST_BOUND + 600)]
# the tests each guest runs: 6.1 and 6.12 every second-kernel test; Debian 11's 5.10 the
# freeze conditions it can show (starvation, workqueue, hung tasks, pthread and flock
# deadlocks, a softirq storm) and their look-alikes, queued behind the other two
MARKS = {"6.1": "second_kernel", "6.12": "second_kernel", "5.10": "kernel_510"}
SERIES = tuple(MARKS)
PARALLEL = 2


@pytest.fixture(scope="module")
def kernels() -> dict[str, vm.Kernel]:
    return {k.series: k for k in vm.setup()}


@pytest.fixture(scope="module")
def guest_runs(kernels: dict[str, vm.Kernel]):
    """Every prepared guest, booted at once, each running the second-kernel tests."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL)
    futures = {s: pool.submit(_boot_suite, kernels[s], MARKS[s], f"second-kernel-{s}")
               for s in SERIES if s in kernels}
    yield futures
    pool.shutdown(wait=True)


def _boot_suite(k: vm.Kernel, marks: str, name: str) -> tuple[vm.GuestRun, str]:
    script = (f"export INVESTIGATOR_IN_VM=1 PYTHONDONTWRITEBYTECODE=1; W=$PWD; cd {REPO} && "
              f"{sys.executable} -m pytest -m '{marks}' tests -p no:cacheprovider -q -rs "
              f"--junitxml=$W/junit.xml > $W/pytest.log 2>&1; rc=$?; uname -r >> $W/pytest.log; exit $rc")
    run = vm.boot(k, script, timeout=GUEST_BOUND, accel=vm.TCG_SINGLE)
    log = (run.workdir / "pytest.log").read_text(errors="replace") if (run.workdir / "pytest.log").exists() else ""
    art = REPO / "test-artifacts"
    art.mkdir(exist_ok=True)
    (art / f"{name}.log").write_text(f"{run.serial}\n----- pytest -----\n{log}")
    return run, log


def _check(k: vm.Kernel, run: vm.GuestRun, log: str) -> int:
    """Every test the guest ran passed and none was skipped for want of a hook; returns
    how many ran."""
    assert run.rc is not None, (f"the guest never reported (after {run.seconds:.0f}s)\n"
                                f"{vm.console_excerpt(run.serial)}\n----- pytest so far -----\n{log[-3000:]}")
    assert k.version in log, log[-2000:]
    suite = ET.parse(run.workdir / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None
    n, fail, err, skip = (int(suite.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
    assert run.rc == 0 and fail == 0 and err == 0, log[-6000:]
    assert skip == 0, log[-3000:]
    return n


@pytest.mark.parametrize("series", SERIES)
def test_second_kernel_stage(kernels: dict[str, vm.Kernel], guest_runs, series: str) -> None:
    assert series in kernels, f"tests/vm/setup.sh prepared {sorted(kernels)}"
    k = kernels[series]
    run, log = guest_runs[series].result()
    n = _check(k, run, log)
    assert n >= 7
    print(f"{k.version}: {n} tests passed in {run.seconds:.0f} s (qemu TCG, one thread)")
