"""Compile a scenario's small C helper once per test session (gcc is a test dependency)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def c_helper(name: str, out_dir: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler: scripts/setup.sh test installs gcc")
    exe = out_dir / name
    if not exe.exists():
        subprocess.run([cc, "-O1", "-pthread", "-o", str(exe), str(HERE / f"{name}.c")], check=True)
    return exe
