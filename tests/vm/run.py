"""Boot a second kernel under qemu (software emulation) and run a shell script in it.

The guest's PID 1 (tests/vm/init) mounts this machine's / read-only over 9p and chroots into
it, so the guest runs the host's own Python, venv, libbpf and compiled probes as they are;
one work folder is shared read-write for results. Used by tests/test_second_kernel.py and
by hand:

    python3 tests/vm/run.py 6.12 'uname -r; python3 -m investigator probes' [FILE...]

(the FILEs are copied into the work folder, the script's current directory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VM_DIR = Path(os.environ.get("INVESTIGATOR_VM_DIR", "/var/cache/investigator-vm"))
QBOOT = Path("/usr/share/qemu/qboot.rom")


@dataclass
class Kernel:
    version: str        # e.g. 6.12.117+deb12-amd64
    dir: Path

    @property
    def series(self) -> str:   # "6.12"
        return ".".join(self.version.split(".")[:2])


@dataclass
class GuestRun:
    kernel: Kernel
    rc: int | None       # the script's exit code; None if the guest never reported one
    seconds: float
    serial: str          # the guest's console
    workdir: Path


OOPS_TITLES = ("BUG:", "Oops", "general protection fault", "invalid opcode", "kernel BUG",
               "WARNING:", "watchdog:", "INFO: task")


def console_excerpt(serial: str, limit: int = 8000) -> str:
    """The part of a guest's console that says what went wrong: from the title of the last
    oops, warning or lockup report before the console's end (or its panic line) on, else the
    console's end.  Tests that cause kernel bugs on purpose report some before that."""
    end = serial.rfind("Kernel panic")
    end = len(serial) if end < 0 else end
    start = max((serial.rfind(m, 0, end) for m in OOPS_TITLES), default=-1)
    if start < 0:
        return serial[-limit:]
    part = serial[serial.rfind("\n", 0, start) + 1:]
    if len(part) <= limit:
        return part
    return f"{part[:limit // 2]}\n[...]\n{part[-limit // 2:]}"


def setup() -> list[Kernel]:
    """Run tests/vm/setup.sh (idempotent) and return the kernels it prepared."""
    p = subprocess.run(["sh", str(HERE / "setup.sh"), str(VM_DIR)], capture_output=True,
                       text=True, timeout=1800)
    if p.returncode != 0:
        raise RuntimeError(f"tests/vm/setup.sh failed ({p.returncode}):\n{p.stderr[-3000:]}")
    kernels = []
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and (Path(parts[1]) / "initramfs.cpio.gz").exists():
            kernels.append(Kernel(parts[0], Path(parts[1])))
    return kernels


# Guests run every vCPU on one host thread (TCG thread=single).  With a host thread per
# vCPU, kernel text patched while another vCPU runs it (a static key flipped as a tracepoint
# is attached or detached, text_poke_bp's int3) can still be executed after the patch is
# over: "Oops: int3" in __tasklet_schedule_common (the softirq storm, 1 run in 3 on 6.12),
# in handle_softirqs and try_to_wake_up (the probe matrix, 3 runs of 3), and in __schedule
# from a kworker (the whole suite on 6.12, 1 CI run of 3); another run hung with CPU0's
# timer stopped.  Real CPUs serialize on the IPI text_poke_sync() sends; emulated ones do
# not always.  One thread per guest did not show it; the stage boots its guests side by side.
TCG_MULTI = "tcg"
TCG_SINGLE = "tcg,thread=single"


def boot(kernel: Kernel, script: str, *, timeout: float = 900, mem: str = "1G",
         cpus: int = 2, workdir: Path | None = None, files: dict[str, str] | None = None,
         accel: str = TCG_SINGLE) -> GuestRun:
    """Boot ``kernel``, run ``script`` (sh) as root in the work folder (which also holds
    ``files``; the guest's /tmp is its own tmpfs), power off."""
    # scripts/slow-machine.sh runs every guest on one host thread: a slower machine
    accel = os.environ.get("INVESTIGATOR_VM_ACCEL") or accel
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise RuntimeError("qemu-system-x86_64 is not installed (tests/vm/setup.sh installs it)")
    work = workdir or Path(tempfile.mkdtemp(prefix="investigator-vm-"))
    (work / "guest.sh").write_text(script)
    for name, text in (files or {}).items():
        (work / name).write_text(text)
    (work / "rc").unlink(missing_ok=True)
    pybin = os.path.dirname(os.path.realpath(sys.executable))
    bios = ["-bios", str(QBOOT)] if QBOOT.exists() else []
    # KVM hangs with a stock kernel on these hosts (paravirtual KVM): software emulation.
    cmd = [qemu, "-accel", accel, "-cpu", "max", "-smp", str(cpus), "-m", mem,
           "-nographic", "-no-reboot", *bios,
           "-kernel", str(kernel.dir / "boot" / "vmlinuz"),
           "-initrd", str(kernel.dir / "initramfs.cpio.gz"),
           "-append", f"console=ttyS0 quiet loglevel=4 panic=-1 vm_workdir={work} vm_pybin={pybin} "
                      f"vm_repo={REPO}",
           "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
           "-virtfs", f"local,path={work},mount_tag=work,security_model=none,multidevs=remap",
           "-virtfs", f"local,path={REPO},mount_tag=repo,security_model=none,readonly=on,multidevs=remap",
           "-nic", "none"]
    t0 = time.monotonic()
    with open(work / "serial.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - t0
    rc_file = work / "rc"
    rc = int(rc_file.read_text().strip()) if rc_file.exists() else None
    serial = (work / "serial.log").read_text(errors="replace")
    return GuestRun(kernel, rc, seconds, serial, work)


def kernel(series: str) -> Kernel:
    for k in setup():
        if k.series == series:
            return k
    raise LookupError(f"no prepared kernel of series {series}")


def main() -> int:
    series, script, *names = sys.argv[1:]
    run = boot(kernel(series), script, files={Path(n).name: Path(n).read_text() for n in names})
    sys.stdout.write(run.serial)
    print(f"[{run.kernel.version}: rc={run.rc} in {run.seconds:.1f}s, work folder {run.workdir}]")
    return 0 if run.rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
