"""Shared fixtures: the tool as a subprocess, the kernel's own BPF listings, scenario
processes that clean up after themselves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="loads BPF into the kernel: needs root")
    for item in items:
        if "bpf" in item.keywords:
            item.add_marker(skip)


def investigate(*args: str, timeout: float = 300, check: bool = False,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed tool as a user would (``python -m investigator``)."""
    p = subprocess.run([sys.executable, "-m", "investigator", *args], capture_output=True,
                       text=True, timeout=timeout, cwd=cwd or REPO)
    if check and p.returncode not in (0, 1):
        raise AssertionError(f"investigate {args} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def libc_path() -> str:
    """The libc this process runs (from its own memory map)."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "/libc.so" in path or "/libc-" in path:
                return path
    raise RuntimeError("libc not mapped")


def events_of(path: Path) -> list[dict[str, object]]:
    """The complete lines of a run's event log so far (the tool writes it as it runs)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def wait_for_event(log: Path, event: str, proc: subprocess.Popen[str] | subprocess.Popen[bytes],
                   timeout: float = 120) -> dict[str, object]:
    """Wait until the tool's event log has ``event`` (the tool's own word that it happened,
    not an elapsed time); fail if the tool exits first.  The bound is only against a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in events_of(log):
            if e["event"] == event:
                return e
        assert proc.poll() is None, f"the tool exited with {proc.returncode} before '{event}'"
        time.sleep(0.02)
    raise AssertionError(f"no '{event}' in {log} within {timeout} s")


def kernel_bpf_listing() -> dict[str, list[dict[str, object]]]:
    """Programs and links as the kernel lists them (bpftool walks the kernel's IDs)."""
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    out = {}
    for what in ("prog", "link", "map"):
        for attempt in range(20):
            p = subprocess.run([bpftool, "-j", what, "show"], capture_output=True, text=True, timeout=30)
            # EAGAIN: a link another process is creating has an ID but is not settled yet
            # (bpf_link_by_id); it is settled, or gone, a moment later
            if p.returncode == 0 or "Resource temporarily unavailable" not in p.stdout + p.stderr:
                break
            time.sleep(0.05)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr
        out[what] = json.loads(p.stdout or "[]")
    return out


def bpf_ids_of_pid(pid: int) -> dict[str, set[int]]:
    """IDs of the BPF programs, links and maps a process holds, from the kernel's fdinfo."""
    out: dict[str, set[int]] = {"prog": set(), "link": set(), "map": set()}
    try:
        fds = os.listdir(f"/proc/{pid}/fdinfo")
    except OSError:
        return out
    for fd in fds:
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if "link_id" in info:
            out["link"].add(int(info["link_id"]))
        elif "prog_id" in info:
            out["prog"].add(int(info["prog_id"]))
        elif "map_id" in info:
            out["map"].add(int(info["map_id"]))
    return out


def programs_of_pid(pid: int) -> list[dict[str, object]]:
    """Programs (as the kernel lists them) whose fds a process holds."""
    ids = bpf_ids_of_pid(pid)
    return [p for p in kernel_bpf_listing()["prog"] if p["id"] in ids["prog"]]


def still_loaded(ids: dict[str, set[int]]) -> dict[str, set[int]]:
    """Which of these program, link and map IDs the kernel still lists."""
    listing = kernel_bpf_listing()
    return {k: ids.get(k, set()) & {int(e["id"]) for e in listing[k]}  # type: ignore[call-overload]
            for k in ("prog", "link", "map")}


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return tmp_path / "bundle"


def repo_probe_names() -> set[str]:
    """Names of every BPF program in the project's objects (bpftool shows 15 chars)."""
    from investigator.bpf import BpfObject
    names = set()
    for obj in sorted((REPO / "probes").glob("*.bpf.o")):
        with BpfObject(obj) as o:
            names |= {n[:15] for n in o.programs}
    return names


def wait_unloaded(ids: dict[str, set[int]], timeout: float = 10) -> dict[str, set[int]]:
    """Poll until none of these IDs is listed (the kernel frees programs after an RCU
    grace period); returns what is still listed."""
    import time
    deadline = time.monotonic() + timeout
    left = still_loaded(ids)
    while any(left.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
        left = still_loaded(ids)
    return left
