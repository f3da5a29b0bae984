"""bpftrace programs as probes, for quick hypotheses written in a playbook.

The program runs as ``bpftrace -f json -e PROGRAM`` in a child process that dies with this
one (PR_SET_PDEATHSIG): its BPF programs are bpftrace's, so its exit detaches them.  When
the node's window closes, SIGINT makes bpftrace print its maps; they become the evidence:
``@name`` as ``<as>.name`` (the unnamed ``@`` as ``<as>.map``), histograms as lists of
``{min, max, count}``, printf lines as ``<as>.output`` (at most MAX_LINES).
"""

from __future__ import annotations

import ctypes
import json
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .instance import ProbeUnavailable, ensure_tracefs
from .manifest import ProbeManifest

MAX_LINES = 1000
MAX_BYTES = 16 << 20
ATTACH_TIMEOUT_S = 30.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class BpftraceInstance:
    manifest: ProbeManifest
    program: str
    node: str
    proc: subprocess.Popen[str] | None = None
    hook: str | None = None
    attempts: list[dict[str, str]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    guard: dict[str, Any] | None = None
    attach_ms: float = 0.0
    attached_at: float = 0.0
    _records: list[dict[str, Any]] = field(default_factory=list)
    _lines: list[str] = field(default_factory=list)
    _attached: threading.Event = field(default_factory=threading.Event)
    _size: int = 0
    _result: dict[str, Any] | None = None
    obj: None = None

    @property
    def name(self) -> str:
        return "bpftrace"

    def attach(self) -> None:
        t0 = time.perf_counter()
        exe = shutil.which("bpftrace")
        if exe is None:
            raise ProbeUnavailable("bpftrace", [{"hook": "bpftrace", "reason": "bpftrace is not installed "
                                                 "(Debian/Ubuntu: apt-get install bpftrace)"}])
        if any(w in self.program for w in ("tracepoint:", "t:")):
            ensure_tracefs(self.notes)
        self.proc = subprocess.Popen([exe, "-f", "json", "-e", self.program], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=_die_with_parent, start_new_session=True)
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        deadline = time.monotonic() + ATTACH_TIMEOUT_S
        while not self._attached.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self._stderr_tail()
                self.close()
                raise ProbeUnavailable("bpftrace", [{"hook": "bpftrace", "reason": err or "did not attach"}])
        self.hook = "bpftrace"
        self.attach_ms = (time.perf_counter() - t0) * 1000
        self.attached_at = time.monotonic()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._size += len(line)
            if self._size > MAX_BYTES:
                continue          # keep draining, keep nothing more
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            kind = rec.get("type")
            if kind == "attached_probes":
                self.links = [f"bpftrace:{rec.get('data', {}).get('probes', '?')} probes"]
                self._attached.set()
            elif kind == "printf":
                if len(self._lines) < MAX_LINES:
                    self._lines.append(str(rec.get("data", "")).rstrip("\n"))
            elif kind in ("map", "hist", "stats"):
                self._records.append(rec)

    def _stderr_tail(self) -> str:
        if self.proc is None or self.proc.stderr is None:
            return ""
        try:
            self.proc.wait(timeout=2)
            text = self.proc.stderr.read()
        except (subprocess.TimeoutExpired, OSError, ValueError):
            return ""
        lines = [ln for ln in text.splitlines() if ln.strip() and "RLIMIT_MEMLOCK" not in ln]
        return " ".join(lines[-3:])[:500]

    def stats(self) -> dict[str, int]:
        return {"events": 0, "drops": 0}

    def detach_for_guard(self, why: dict[str, Any]) -> None:  # pragma: no cover - no counters
        self.guard = why

    def collect(self) -> dict[str, Any]:
        """Stop the program (SIGINT: it prints its maps) and return them as evidence."""
        if self._result is not None:
            return self._result
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        time.sleep(0.05)
        ev: dict[str, Any] = {}
        for rec in self._records:
            for k, v in (rec.get("data") or {}).items():
                name = k.lstrip("@") or "map"
                ev[name] = v
        ev["output"] = list(self._lines)
        ev["probe"] = {"name": "bpftrace", "hook": "bpftrace", "attempts": [],
                       "observed_s": round(time.monotonic() - self.attached_at, 3), "events": 0, "drops": 0,
                       "detached_by_guard": None, "program": self.program}
        self._result = ev
        return ev

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
