"""The second-kernel stage: the tests marked ``second_kernel`` (function probes through
kprobe/kretprobe and fentry/fexit, lock hold times) run for real under Debian's 6.1 and
6.12 kernels, booted in qemu with software emulation (tests/vm/).  The guest runs this
machine's own Python, venv and compiled probes over 9p: the same CO-RE objects load on
6.1, 6.12 and the host's kernel."""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tests" / "vm"))
import run as vm  # noqa: E402

pytestmark = [pytest.mark.bpf,
              pytest.mark.skipif(os.environ.get("INVESTIGATOR_IN_VM") == "1", reason="already in the guest"),
              pytest.mark.timeout(1200)]
SERIES = ("6.1", "6.12")


@pytest.fixture(scope="module")
def kernels() -> dict[str, vm.Kernel]:
    return {k.series: k for k in vm.setup()}


@pytest.mark.parametrize("series", SERIES)
def test_second_kernel_stage(kernels: dict[str, vm.Kernel], series: str) -> None:
    assert series in kernels, f"tests/vm/setup.sh prepared {sorted(kernels)}"
    k = kernels[series]
    script = (f"export INVESTIGATOR_IN_VM=1 PYTHONDONTWRITEBYTECODE=1; W=$PWD; cd {REPO} && "
              f"{sys.executable} -m pytest -m second_kernel tests -p no:cacheprovider -q -rs "
              f"--junitxml=$W/junit.xml > $W/pytest.log 2>&1; rc=$?; uname -r >> $W/pytest.log; exit $rc")
    run = vm.boot(k, script, timeout=1100)
    log = (run.workdir / "pytest.log").read_text(errors="replace") if (run.workdir / "pytest.log").exists() else ""
    art = REPO / "test-artifacts"
    art.mkdir(exist_ok=True)
    (art / f"second-kernel-{series}.log").write_text(f"{run.serial}\n----- pytest -----\n{log}")
    assert run.rc is not None, f"the guest never reported (timeout after {run.seconds:.0f}s?)\n{run.serial[-3000:]}"
    assert k.version in log, log[-2000:]
    suite = ET.parse(run.workdir / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None
    n, fail, err, skip = (int(suite.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
    assert run.rc == 0 and fail == 0 and err == 0, log[-6000:]
    assert n >= 6, log[-2000:]
    # every second-kernel test ran there: none may be skipped for want of a hook
    assert skip == 0, log[-3000:]
    print(f"{k.version}: {n} tests passed in {run.seconds:.0f}s (qemu TCG)")
