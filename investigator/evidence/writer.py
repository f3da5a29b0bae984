"""Writing a bundle where the disk cannot stall, mislead or cost the investigation.

Every write of a bundle is done by a child process (``python -I -S``, started before the
probes are attached) that the tool feeds through a pipe:

- it creates the bundle folder fresh: ``mkdir`` of the last component with mode 0700
  relative to its parent's descriptor, never with ``-p``, never a ``chmod`` of something
  that existed.  ``--out DIR`` naming a folder that exists puts the bundle in a fresh
  folder inside it (NAME-STAMP-PID); naming anything else that exists (a file, a symlink,
  which is never followed) gets a new random suffix beside it.  The default parent
  (``./investigations``) is opened with O_NOFOLLOW and used only if it is a real folder
  of ours that no one else can write; otherwise, or when the folder cannot be made, the
  bundle goes to a fresh ``mkdtemp`` folder in the temp dirs, and the run says so;
- it opens every file relative to the folder's descriptor with
  O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600 (a temp name, then a rename inside the folder, so
  that a file is whole or absent), the event log too;
- it ignores the terminal's signals and ends when its input ends, writing what it has:
  a SIGKILL of the tool still leaves the event log up to that moment.

The tool never waits for it longer than a bound: a full disk (ENOSPC), a read-only or
failing one (EROFS, EIO) or a frozen filesystem (the child waits in the kernel until the
thaw) costs the bundle -- written to a fallback folder instead, or reported in one line --
never the verdict, which is printed first, nor the exit.  A child that does not answer is
killed and never waited for.  Event-log writes never block: lines the pipe cannot take are
kept (bounded) and written later, or counted as dropped.
"""

from __future__ import annotations

import os
import selectors
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# the child: a program of its own (python -I -S: no site, no environment, no user paths)
_CHILD = r'''
import errno, os, signal, struct, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(s, signal.SIG_IGN)
mode, where, name, prefix = sys.argv[1:5]
out = os.fdopen(1, "w", buffering=1)
D = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

def say(*words):
    out.write(" ".join(w.replace("\n", " ") for w in words) + "\n")

def fresh(parent, last):
    """mkdir last (0700) in parent's descriptor; a new suffix if it exists.  The folder's fd."""
    import random
    cand = last
    for _ in range(100):
        try:
            os.mkdir(cand, 0o700, dir_fd=parent)
        except FileExistsError:
            cand = "%s.%06x" % (last, random.getrandbits(24))
            continue
        fd = os.open(cand, D, dir_fd=parent)
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise OSError(errno.EPERM, "%s is not ours" % cand)
        os.fchmod(fd, 0o700)     # made by us just now: umask aside
        return fd, cand
    raise OSError(errno.EEXIST, "no free name for %s" % last)

def ours(fd, what):
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise OSError(errno.EPERM, "%s is not a folder of ours that only we can write" % what)

def make():
    if mode == "out":                       # the operator's own path: its parents as given
        parent_path, last = os.path.split(os.path.abspath(where))
        parent = os.open(parent_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.mkdir(last, 0o700, dir_fd=parent)
        except FileExistsError:
            try:                            # a real folder (not a link to one): inside it
                inside = os.open(last, D, dir_fd=parent)
            except OSError:
                fd, got = fresh(parent, last)
                return fd, os.path.join(parent_path, got)
            fd, got = fresh(inside, name)
            return fd, os.path.join(parent_path, last, got)
        fd = os.open(last, D, dir_fd=parent)
        if os.fstat(fd).st_uid != os.geteuid():
            raise OSError(errno.EPERM, "%s is not ours" % where)
        os.fchmod(fd, 0o700)
        return fd, os.path.join(parent_path, last)
    cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.mkdir(where, 0o700, dir_fd=cwd)
    except FileExistsError:
        pass
    parent = os.open(where, D, dir_fd=cwd)
    ours(parent, os.path.abspath(where))
    fd, got = fresh(parent, name)
    return fd, os.path.abspath(os.path.join(where, got))

def fallback():
    import tempfile
    for base in dict.fromkeys((tempfile.gettempdir(), "/dev/shm", "/run")):
        try:
            path = tempfile.mkdtemp(prefix=prefix, dir=base)
            return os.open(path, D), path
        except OSError:
            continue
    raise OSError(errno.ENOSPC, "no temp dir could hold it")

try:
    if mode == "fallback":
        dfd, path = fallback()
    else:
        dfd, path = make()
except OSError as e:
    say("nodir", str(e))
    sys.exit(1)
say("dir", path)

inp = os.fdopen(0, "rb", buffering=0)
def read(n):
    b = bytearray()
    while len(b) < n:
        c = inp.read(n - len(b))
        if not c:
            return None
        b += c
    return bytes(b)

W = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
streams, failed = {}, set()
while True:
    head = read(7)
    if head is None:
        break
    op, nlen, dlen = struct.unpack("<cHI", head)
    fname = (read(nlen) or b"").decode()
    data = read(dlen) if dlen else b""
    if data is None or "/" in fname or fname in ("", ".", ".."):
        break
    if fname in failed:
        continue
    try:
        if op == b"A":                       # append to a stream (the event log)
            if fname not in streams:
                streams[fname] = os.open(fname, W | os.O_APPEND, 0o600, dir_fd=dfd)
            os.write(streams[fname], data)
        elif op == b"F":                     # a whole file: whole or absent
            tmp = ".%s.part" % fname
            fd = os.open(tmp, W, 0o600, dir_fd=dfd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError:
                os.close(fd)
                os.unlink(tmp, dir_fd=dfd)
                raise
            os.close(fd)
            os.rename(tmp, fname, src_dir_fd=dfd, dst_dir_fd=dfd)
            say("ok", fname)
        elif op == b"Q":
            break
    except OSError as e:
        failed.add(fname)
        say("err", fname, e.strerror or str(e))
for fname, fd in streams.items():
    try:
        os.fsync(fd)
        os.close(fd)
        if fname not in failed:
            say("ok", fname)
    except OSError as e:
        say("err", fname, e.strerror or str(e))
try:
    os.fsync(dfd)
except OSError:
    pass
say("done")
'''

STREAM_PENDING_MAX = 4 << 20      # event-log bytes kept while the child does not take them
FILE_MAX = 256 << 20              # one bundle file, at most
CREATE_TIMEOUT_S = 3.0            # for the folder, counted from the end of the run


@dataclass
class WriteResult:
    path: Path | None                   # the folder the bundle is in, None when nowhere
    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.path is not None and not self.failed


class _Child:
    """One writer child and the pipe that feeds it."""

    def __init__(self, mode: str, where: str, name: str, prefix: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _CHILD, mode, where, name, prefix],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            close_fds=True, start_new_session=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.fd_in = self.proc.stdin.fileno()
        os.set_blocking(self.fd_in, False)
        self.pending = bytearray()
        self.dead = False
        self.dropped = 0
        self.lines: list[str] = []
        self._partial = b""

    def send(self, frame: bytes, keep: bool = True) -> None:
        """Queue a frame and write what the pipe takes now, without blocking."""
        if self.dead:
            return
        if keep and len(self.pending) + len(frame) > STREAM_PENDING_MAX:
            self.dropped += len(frame)
            return
        self.pending += frame
        self.flush()

    def flush(self) -> None:
        while self.pending and not self.dead:
            try:
                n = os.write(self.fd_in, self.pending)
            except BlockingIOError:
                return
            except OSError:              # the child is gone (EPIPE)
                self.dead = True
                return
            del self.pending[:n]

    def finish(self, deadline: float) -> bool:
        """Send what is pending, close the pipe, read the child's answers until ``done`` or
        the deadline; a child that does not finish is killed and left.  True when done."""
        def drain() -> None:
            os.set_blocking(self.fd_in, True)
            try:
                while self.pending:
                    n = os.write(self.fd_in, self.pending)
                    del self.pending[:n]
            except OSError:
                pass
            try:
                os.close(self.fd_in)
            except OSError:
                pass
        threading.Thread(target=drain, name="bundle-feed", daemon=True).start()
        done = self.wait_for(deadline, "done")
        if not done:
            _abandon(self.proc)
        return done

    def wait_for(self, deadline: float, word: str) -> bool:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while not any(ln.split(" ", 1)[0] in (word, "nodir") for ln in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return False
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                data = self._partial + chunk
                *full, self._partial = data.split(b"\n")
                self.lines += [ln.decode(errors="replace") for ln in full]
        return any(ln.split(" ", 1)[0] == word for ln in self.lines)

    def answer(self, word: str) -> list[str]:
        return [ln[len(word) + 1:] for ln in self.lines if ln.split(" ", 1)[0] == word]


def _abandon(p: subprocess.Popen[bytes]) -> None:
    """Kill a child stuck in the kernel; it dies once its call returns, and is not waited for."""
    try:
        p.kill()
    except OSError:
        pass
    from ..system.procfs import abandon
    abandon(p)


def by_reason(failed: dict[str, str]) -> list[str]:
    """{file: reason} as "reason (file, file)" once per reason."""
    out: dict[str, list[str]] = {}
    for name, why in failed.items():
        out.setdefault(why, []).append(name)
    return [why if names == ["*"] else f"{why} ({', '.join(n for n in names if n != '*')})"
            for why, names in out.items()]


def _frame(op: bytes, name: str, data: bytes) -> bytes:
    n = name.encode()
    return struct.pack("<cHI", op, len(n), len(data)) + n + data


class BundleWriter:
    """The bundle of one run: started at once (the folder is made while the probes attach),
    fed the event log as it is written, given the report files at the end."""

    EVENTS = "events.jsonl"

    def __init__(self, out: Path | None, default_parent: str, name: str, prefix: str) -> None:
        self.name, self.prefix = name, prefix
        self.asked = os.path.abspath(out if out is not None else os.path.join(default_parent, name))
        self.events: list[bytes] = []       # the log as sent, for a fallback folder
        self.events_bytes = 0
        self.events_dropped = 0
        self._child = _Child("out" if out is not None else "default",
                             str(out) if out is not None else default_parent, name, prefix)

    def event_line(self, line: str) -> None:
        """One line of the event log: never blocks, never raises."""
        data = line.encode(errors="replace")
        if self.events_bytes + len(data) > STREAM_PENDING_MAX:
            self.events_dropped += 1
            return
        self.events.append(data)
        self.events_bytes += len(data)
        self._child.send(_frame(b"A", self.EVENTS, data))

    def finish(self, files: dict[str, bytes], timeout: float = 10.0) -> WriteResult:
        """Write ``files`` (name -> content) beside the event log, within ``timeout`` s for
        the folder asked for and as long again for a fallback one."""
        files = {k: v for k, v in files.items() if len(v) <= FILE_MAX}
        res = self._write(self._child, files, timeout)
        if res.ok:
            if str(res.path) != self.asked:
                res.notes.insert(0, f"{self.asked} exists; the bundle goes to {res.path}")
            return res
        why = (f"creating it did not finish in {CREATE_TIMEOUT_S:g} s" if res.path is None and not res.notes
               else "; ".join(res.notes + by_reason(res.failed)))
        fb = _Child("fallback", "", self.name, self.prefix)
        for data in self.events:
            fb.send(_frame(b"A", self.EVENTS, data), keep=False)
        res2 = self._write(fb, files, timeout)
        if res2.path is None:
            return WriteResult(None, [], {**res.failed, **res2.failed},
                               [f"the bundle could not be written ({why}), nor in the temp dirs "
                                f"({'; '.join(res2.notes) or 'no answer'})"])
        res2.notes.insert(0, f"the bundle could not be written to {res.path or self.asked} ({why}); "
                             f"the bundle goes to {res2.path}")
        return res2

    def _write(self, child: _Child, files: dict[str, bytes], timeout: float) -> WriteResult:
        # the folder has had the whole run to be made: a child still making it is stuck
        if not child.wait_for(time.monotonic() + CREATE_TIMEOUT_S, "dir"):
            _abandon(child.proc)
            if not child.answer("nodir"):
                return WriteResult(None)
        for name, data in files.items():
            child.send(_frame(b"F", name, data), keep=False)
        child.send(_frame(b"Q", "", b""), keep=False)
        done = child.finish(time.monotonic() + timeout)
        dirs = child.answer("dir")
        res = WriteResult(Path(dirs[0]) if dirs else None)
        res.notes += [f"the bundle folder could not be made: {x}" for x in child.answer("nodir")]
        for a in child.answer("err"):
            name, _, why = a.partition(" ")
            res.failed[name] = why
        res.written = child.answer("ok")
        if res.path is not None and not done:
            res.failed.setdefault("*", f"the disk did not answer within {timeout:g} s")
        missing = [n for n in files if n not in res.written and n not in res.failed]
        if res.path is not None and done and missing:
            res.failed.update({n: "not written" for n in missing})
        if self.events_dropped or child.dropped:
            res.notes.append(f"{self.events_dropped + child.dropped} event-log line(s) or bytes were dropped: "
                             "the disk did not take them in time")
        return res

