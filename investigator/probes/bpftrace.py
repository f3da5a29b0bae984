"""bpftrace programs as probes, for quick hypotheses written in a playbook.

A bpftrace program is custom code run as root: the playbook loader refuses it unless the
run has ``--allow-custom-probes`` (playbook/load.py), and attach refuses one whose
attach points patch a function risky on this kernel (probes/risky.py).

The program runs as ``bpftrace -f json -e PROGRAM`` in a child process that dies with this
one: PR_SET_PDEATHSIG (SIGKILL) is set in the child before exec, and the child exits at
once if this process was already gone by then; its BPF programs are bpftrace's, so its exit
detaches them.  Its standard output and error are drained while it runs by reader threads
into bounded buffers (the records and printf lines up to MAX_BYTES / MAX_LINES, the tail of
stderr up to STDERR_TAIL; what is dropped is counted), so a chatty program never blocks on
a full pipe.  The overhead guard counts its CPU time (``cpu_seconds``) against
``--max-overhead`` and stops it over budget (``detach_for_guard``: SIGTERM, SIGKILL after
STOP_GRACE_S).  When the node's window closes, SIGINT makes bpftrace print its maps; they
become the evidence: ``@name`` as ``<as>.name`` (the unnamed ``@`` as ``<as>.map``),
histograms as lists of ``{min, max, count}``, printf lines as ``<as>.output``.

The child is started from the thread that runs the walk (PR_SET_PDEATHSIG fires when the
thread that forked it exits, not only the process).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from . import risky
from .instance import Observed, ProbeUnavailable, ensure_tracefs
from .manifest import ProbeManifest

MAX_LINES = 1000
MAX_BYTES = 16 << 20          # JSON records kept from stdout
MAX_LINE = 1 << 20            # one stdout line; longer ones are dropped
STDERR_TAIL = 64 << 10        # the end of stderr kept
ATTACH_TIMEOUT_S = 30.0
STOP_GRACE_S = 2.0            # SIGTERM, then SIGKILL
PR_SET_PDEATHSIG = 1


def _die_with_parent_fn() -> Callable[[], None]:
    """The child's preexec function, resolved in the parent (no dlopen after fork)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:      # the parent died before prctl: nobody will signal
            os._exit(1)
    return child


@dataclass
class _Tail:
    """The last ``limit`` bytes of a stream, and how many came before them."""
    limit: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        over = len(self.data) - self.limit
        if over > 0:
            del self.data[:over]
            self.dropped += over

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


@dataclass
class BpftraceInstance(Observed):
    manifest: ProbeManifest
    program: str
    node: str
    proc: subprocess.Popen[bytes] | None = None
    hook: str | None = None
    attempts: list[dict[str, str]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    guard: dict[str, Any] | None = None
    attach_ms: float = 0.0
    attached_at: float = 0.0
    detached_ns: int = 0          # when the overhead guard stopped it (CLOCK_MONOTONIC, ns)
    stdout_dropped: int = 0       # bytes of stdout read and not kept
    _records: list[dict[str, Any]] = field(default_factory=list)
    _lines: list[str] = field(default_factory=list)
    _attached: threading.Event = field(default_factory=threading.Event)
    _stderr: _Tail = field(default_factory=lambda: _Tail(STDERR_TAIL))
    _readers: list[threading.Thread] = field(default_factory=list)
    _size: int = 0
    _result: dict[str, Any] | None = None
    obj: None = None

    @property
    def name(self) -> str:
        return "bpftrace"

    def _refuse(self, reason: str) -> ProbeUnavailable:
        self.attempts.append({"hook": "bpftrace", "reason": reason})
        return ProbeUnavailable("bpftrace", self.attempts)

    def attach(self) -> None:
        t0 = time.perf_counter()
        exe = shutil.which("bpftrace")
        if exe is None:
            raise self._refuse("bpftrace is not installed (Debian/Ubuntu: apt-get install bpftrace)")
        why = risky.bpftrace_refusal(self.program)
        if why:
            raise self._refuse(why)
        if any(p.provider == "tracepoint" for p in risky.attach_points(self.program)):
            ensure_tracefs(self.notes)
        self.proc = subprocess.Popen([exe, "-f", "json", "-e", self.program], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=_die_with_parent_fn(), start_new_session=True)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for target, stream in ((self._read_stdout, self.proc.stdout), (self._read_stderr, self.proc.stderr)):
            t = threading.Thread(target=target, args=(stream,), daemon=True, name="bpftrace-reader")
            t.start()
            self._readers.append(t)
        deadline = time.monotonic() + ATTACH_TIMEOUT_S
        while not self._attached.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise self._refuse(self._stderr_summary() or "did not attach")
        self.hook = "bpftrace"
        self.attach_ms = (time.perf_counter() - t0) * 1000
        self.attached_at = time.monotonic()

    def _read_stdout(self, stream: IO[bytes]) -> None:
        partial = False                 # inside a line longer than MAX_LINE
        while True:
            line = stream.readline(MAX_LINE)
            if not line:
                return
            whole = line.endswith(b"\n")
            if partial or not whole or self._size + len(line) > MAX_BYTES:
                self.stdout_dropped += len(line)
                partial = not whole
                continue
            self._size += len(line)
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            kind = rec.get("type")
            if kind == "attached_probes":
                data = rec.get("data")
                self.links = [f"bpftrace:{data.get('probes', '?') if isinstance(data, dict) else '?'} probes"]
                self._attached.set()
            elif kind == "printf":
                if len(self._lines) < MAX_LINES:
                    self._lines.append(str(rec.get("data", "")).rstrip("\n"))
            elif kind in ("map", "hist", "stats"):
                self._records.append(rec)

    def _read_stderr(self, stream: IO[bytes]) -> None:
        fd = stream.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self._stderr.add(chunk)

    def _stderr_summary(self) -> str:
        """The last lines bpftrace wrote on stderr (why it did not attach)."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        for t in self._readers:
            t.join(timeout=1)
        lines = [ln for ln in self._stderr.text().splitlines() if ln.strip() and "RLIMIT_MEMLOCK" not in ln]
        return " ".join(lines[-3:])[:500]

    def stats(self) -> dict[str, int]:
        return {"events": 0, "drops": 0}

    def cpu_seconds(self) -> float | None:
        """CPU time of the bpftrace process and its children so far (the overhead guard's
        input); None once it has ended."""
        from ..system.procfs import cpu_seconds
        if self.proc is None or self.proc.poll() is not None:
            return None
        return cpu_seconds(self.proc.pid)

    def detach_for_guard(self, why: dict[str, Any]) -> None:
        """Stop the program (see ``pause``) on the overhead guard's word."""
        self.guard = {**why, "after_s": round(self.stop_observing(), 3)}
        self.pause()

    def pause(self) -> None:
        """Stop the program (SIGTERM: bpftrace prints its maps, kept as evidence), SIGKILL
        if it is still there after STOP_GRACE_S; the node concludes on what it gathered."""
        if not self.detached_ns:
            self.stop_observing()
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)

        def reap() -> None:
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        threading.Thread(target=reap, daemon=True, name="bpftrace-stop").start()

    def collect(self) -> dict[str, Any]:
        """Stop the program (SIGINT: it prints its maps) and return them as evidence."""
        if self._result is not None:
            return self._result
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for t in self._readers:     # the maps are printed just before it exits
            t.join(timeout=2)
        ev: dict[str, Any] = {}
        for rec in self._records:
            data = rec.get("data")
            for k, v in (data.items() if isinstance(data, dict) else ()):
                name = str(k).lstrip("@") or "map"
                ev[name] = v
        ev["output"] = list(self._lines)
        lines = [ln for ln in self._stderr.text().splitlines() if ln.strip()]
        ev["probe"] = {"name": "bpftrace", "hook": "bpftrace", "attempts": [],
                       "observed_s": round(self.observed_s(), 3), "events": 0, "drops": 0,
                       "detached_by_guard": self.guard, "program": self.program,
                       "stderr_tail": lines[-5:], "stderr_dropped_bytes": self._stderr.dropped,
                       "stdout_dropped_bytes": self.stdout_dropped}
        self._result = ev
        return ev

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
