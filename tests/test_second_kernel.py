"""The second-kernel stage: the tests marked ``second_kernel`` (function probes through
kprobe/kretprobe and fentry/fexit, lock hold times) run for real under Debian's 6.1 and
6.12 kernels, booted in qemu with software emulation (tests/vm/).  The guest runs this
machine's own Python, venv and compiled probes over 9p: the same CO-RE objects load on
6.1, 6.12 and the host's kernel."""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tests" / "vm"))
import run as vm  # noqa: E402

# a guest's whole suite takes ~6 min here; the bound is only against a hung guest, and
# make test-slow's guests (one emulator thread, a busy host) take up to three times as long
SLOWER = 3 if os.environ.get("INVESTIGATOR_VM_ACCEL") else 1
pytestmark = [pytest.mark.bpf,
              pytest.mark.skipif(os.environ.get("INVESTIGATOR_IN_VM") == "1", reason="already in the guest"),
              pytest.mark.timeout(2 * 1800 * SLOWER)]
SERIES = ("6.1", "6.12")


@pytest.fixture(scope="module")
def kernels() -> dict[str, vm.Kernel]:
    return {k.series: k for k in vm.setup()}


def _run_in_guest(k: vm.Kernel, marks: str, accel: str, name: str) -> tuple[int, float]:
    """Boot ``k`` with ``accel`` and run the tests selected by ``marks`` there; every one
    must pass and none may be skipped for want of a hook.  Returns (tests, seconds)."""
    script = (f"export INVESTIGATOR_IN_VM=1 PYTHONDONTWRITEBYTECODE=1; W=$PWD; cd {REPO} && "
              f"{sys.executable} -m pytest -m '{marks}' tests -p no:cacheprovider -q -rs "
              f"--junitxml=$W/junit.xml > $W/pytest.log 2>&1; rc=$?; uname -r >> $W/pytest.log; exit $rc")
    run = vm.boot(k, script, timeout=1800 * SLOWER, accel=accel)
    log = (run.workdir / "pytest.log").read_text(errors="replace") if (run.workdir / "pytest.log").exists() else ""
    art = REPO / "test-artifacts"
    art.mkdir(exist_ok=True)
    (art / f"{name}.log").write_text(f"{run.serial}\n----- pytest -----\n{log}")
    assert run.rc is not None, (f"the guest never reported (after {run.seconds:.0f}s)\n"
                                f"{vm.console_excerpt(run.serial)}\n----- pytest so far -----\n{log[-3000:]}")
    assert k.version in log, log[-2000:]
    suite = ET.parse(run.workdir / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None
    n, fail, err, skip = (int(suite.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
    assert run.rc == 0 and fail == 0 and err == 0, log[-6000:]
    # every second-kernel test ran there: none may be skipped for want of a hook
    assert skip == 0, log[-3000:]
    return n, run.seconds


@pytest.mark.parametrize("series", SERIES)
def test_second_kernel_stage(kernels: dict[str, vm.Kernel], series: str) -> None:
    assert series in kernels, f"tests/vm/setup.sh prepared {sorted(kernels)}"
    k = kernels[series]
    n, seconds = _run_in_guest(k, "second_kernel and not tcg_single", vm.TCG_MULTI, f"second-kernel-{series}")
    assert n >= 6
    n1, seconds1 = _run_in_guest(k, "second_kernel and tcg_single", vm.TCG_SINGLE,
                                 f"second-kernel-{series}-tcg-single")
    assert n1 >= 1
    print(f"{k.version}: {n} + {n1} tests passed in {seconds:.0f} + {seconds1:.0f} s (qemu TCG)")
