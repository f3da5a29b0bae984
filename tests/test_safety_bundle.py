"""Root-safe bundles, and the verdict before the bundle.

A local user who plants symlinks and folders at every name the tool may use (in a
world-writable working directory, at --out, in the temp dir) cannot make root create,
change or chmod anything outside the bundle; the bundle folder is made fresh (0700) and
every file in it is root's, 0600.  A full, read-only or frozen disk, or a second signal,
costs the bundle its place, never the verdict: the report is printed first, the bundle goes
to a fresh temp folder, and the run says so in one line.  These are real runs of the tool
on the real kernel, against real mounts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, investigate, wait_for_event
from scenarios.procs import ext4_loop, small_tmpfs

pytestmark = pytest.mark.bpf

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
PLAYBOOK = str(REPO / "playbooks" / "interrupts.yaml")     # two quick nodes, three probes


def as_nobody(*argv: str) -> None:
    subprocess.run([*NOBODY, *argv], check=True)


def tree_state(root: Path) -> dict[str, tuple[int, int, int, float]]:
    """Every entry under root (not following links): mode, owner, size, mtime."""
    out = {}
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for name in ["."] + dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p)] = (st.st_mode, st.st_uid, st.st_size, st.st_mtime)
    return out


def run_tool(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "investigator", PLAYBOOK, "--window", "0.5", "--json", *args],
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                          capture_output=True, text=True, timeout=120)


def bundle_of(p: subprocess.CompletedProcess[str]) -> Path:
    """Where the run says its bundle went (a note on stderr; else the folder asked for)."""
    for line in p.stderr.splitlines():
        if "the bundle goes to " in line:
            return Path(line.rsplit("the bundle goes to ", 1)[1])
    raise AssertionError(p.stderr)


def assert_private_bundle(where: Path) -> None:
    st = where.lstat()
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
    names = sorted(os.listdir(where))
    assert names == ["events.jsonl", "evidence.json", "playbook.yaml", "report.html", "report.json",
                     "report.md"], names
    for n in names:
        fst = (where / n).lstat()
        assert stat.S_ISREG(fst.st_mode) and fst.st_uid == 0 and stat.S_IMODE(fst.st_mode) == 0o600, (n, oct(fst.st_mode))
    rep = json.loads((where / "report.json").read_text())
    assert rep["playbook"] == "interrupts" and rep["nodes"]
    events = [json.loads(line)["event"] for line in (where / "events.jsonl").read_text().splitlines()]
    assert events[0] == "run_started" and "run_finished" in events


@pytest.fixture
def open_tmp() -> Path:
    """A folder other users can reach (pytest's own tmp is root's alone), removed afterwards."""
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="investigator-test-", dir="/tmp"))
    d.chmod(0o755)
    yield d  # type: ignore[misc]
    shutil.rmtree(d, ignore_errors=True)


def test_names_planted_by_a_local_user_are_never_followed(open_tmp: Path) -> None:
    tmp_path = open_tmp
    work = tmp_path / "work"             # a world-writable working directory, like /tmp
    work.mkdir(mode=0o777)
    work.chmod(0o1777)
    victim = tmp_path / "victim"         # what a planted link points at: root's, must stay as it is
    victim.mkdir(mode=0o755)
    (victim / "keep").write_text("root's file\n")
    shared = tmp_path / "shared"         # an existing world-writable --out, like /tmp
    shared.mkdir()
    shared.chmod(0o1777)
    before = tree_state(victim)
    made: list[Path] = []
    try:
        # ./investigations a link to root's folder: not followed, the bundle goes to a temp folder
        as_nobody("ln", "-s", str(victim), str(work / "investigations"))
        p = run_tool(cwd=work)
        assert p.returncode in (0, 1), p.stderr
        assert json.loads(p.stdout)["playbook"] == "interrupts"       # the verdict, whole
        made.append(bundle_of(p))
        assert "investigations" in p.stderr and made[-1].parent == Path("/tmp")
        assert_private_bundle(made[-1])
        assert tree_state(victim) == before
        # ./investigations a folder the local user owns: not used either
        (work / "investigations").unlink()
        as_nobody("mkdir", "-m", "0777", str(work / "investigations"))
        p = run_tool(cwd=work)
        assert p.returncode in (0, 1), p.stderr
        made.append(bundle_of(p))
        assert os.listdir(work / "investigations") == [] and made[-1].parent == Path("/tmp")
        assert_private_bundle(made[-1])
        # --out a link planted where the operator asked: never followed, a new name beside it
        as_nobody("ln", "-s", str(victim), str(work / "bundle"))
        p = run_tool("--out", str(work / "bundle"), cwd=work)
        assert p.returncode in (0, 1), p.stderr
        made.append(bundle_of(p))
        assert made[-1].parent == work and made[-1].name.startswith("bundle.") and (work / "bundle").is_symlink()
        assert_private_bundle(made[-1])
        assert tree_state(victim) == before
        # --out an existing shared folder: a fresh folder inside it, the folder's mode untouched
        p = run_tool("--out", str(shared), cwd=work)
        assert p.returncode in (0, 1), p.stderr
        made.append(bundle_of(p))
        assert made[-1].parent == shared and stat.S_IMODE(shared.stat().st_mode) == 0o1777
        assert_private_bundle(made[-1])
        # ./investigations absent: made by root, 0700, the bundle inside
        shutil.rmtree(work / "investigations")
        p = run_tool(cwd=work)
        assert p.returncode in (0, 1) and "note" not in p.stderr, p.stderr
        inv = work / "investigations"
        assert inv.lstat().st_uid == 0 and stat.S_IMODE(inv.lstat().st_mode) == 0o700
        (made_here,) = inv.iterdir()
        assert made_here.name.startswith("interrupts-")
        assert_private_bundle(made_here)
    finally:
        for m in made:
            if m.parent == Path("/tmp"):
                shutil.rmtree(m, ignore_errors=True)
    assert tree_state(victim) == before
    assert stat.S_IMODE(Path("/tmp").stat().st_mode) == 0o1777


def test_a_full_disk_costs_the_bundle_its_place_not_the_verdict(tmp_path: Path) -> None:
    with small_tmpfs(str(tmp_path), "256k") as mnt:
        with open(f"{mnt}/filler", "wb", buffering=0) as f:     # fill it: writes fail with ENOSPC
            try:
                while True:
                    f.write(b"x" * 4096)
            except OSError:
                pass
        p = run_tool("--out", f"{mnt}/b", cwd=tmp_path)
        leftovers = sorted(os.listdir(f"{mnt}/b")) if os.path.isdir(f"{mnt}/b") else []
    assert p.returncode in (0, 1), p.stderr
    assert "Traceback" not in p.stderr
    assert json.loads(p.stdout)["nodes"]
    notes = [ln for ln in p.stderr.splitlines() if ln.startswith("investigate: note: the bundle could not be written")]
    assert len(notes) == 1 and "No space left on device" in notes[0], p.stderr
    where = bundle_of(p)
    try:
        assert_private_bundle(where)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    assert not [n for n in leftovers if n.endswith(".part")], leftovers     # whole or absent


def test_a_read_only_disk_costs_the_bundle_its_place_not_the_verdict(tmp_path: Path) -> None:
    with small_tmpfs(str(tmp_path), "1m", read_only=True) as mnt:
        p = run_tool("--out", f"{mnt}/b", cwd=tmp_path)
    assert p.returncode in (0, 1), p.stderr
    assert json.loads(p.stdout)["nodes"]
    assert "Read-only file system" in p.stderr and "Traceback" not in p.stderr
    where = bundle_of(p)
    try:
        assert_private_bundle(where)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def test_the_verdict_is_printed_while_a_frozen_disk_holds_the_bundle(tmp_path: Path) -> None:
    """The bundle's disk freezes during the run: the report is on stdout while the tool
    still waits for the disk, a second signal then changes nothing, and the bundle goes to
    a temp folder -- with the event log from the first line."""
    with ext4_loop(str(tmp_path)) as mnt:
        out = Path(mnt) / "b"
        p = subprocess.Popen([sys.executable, "-m", "investigator", PLAYBOOK, "--window", "1", "--json",
                              "--out", str(out)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        chunks: list[str] = []
        reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: p.stdout.read(1), "")))  # type: ignore[union-attr]
        reader.start()
        try:
            wait_for_event(out / "events.jsonl", "first_attached", p)
            subprocess.run(["fsfreeze", "-f", mnt], check=True)
            deadline = time.monotonic() + 60
            while p.poll() is None and time.monotonic() < deadline:
                try:
                    rep = json.loads("".join(chunks))
                    break
                except ValueError:
                    time.sleep(0.02)
            still_waiting = p.poll() is None           # the verdict is out, the bundle is not
            p.send_signal(signal.SIGINT)               # a second thought: changes nothing now
            p.wait(timeout=60)
        finally:
            subprocess.run(["fsfreeze", "-u", mnt], check=False)
            if p.poll() is None:
                p.kill()
            reader.join(timeout=10)
        err = p.stderr.read()  # type: ignore[union-attr]
    assert still_waiting, err
    assert rep["complete"] is True and {n["id"] for n in rep["nodes"]} == {"irq-overload", "softirq-wrong-context"}
    assert p.returncode in (0, 1), err
    assert "Traceback" not in err
    assert "did not answer within" in err, err
    where = bundle_of(subprocess.CompletedProcess(p.args, p.returncode, "", err))
    try:
        assert_private_bundle(where)
        assert json.loads((where / "report.json").read_text()) == rep
    finally:
        shutil.rmtree(where, ignore_errors=True)


HELD_LOAD = """
import sys, time
from investigator.probes import instance
attach = instance.ProbeInstance.attach
def held(self):
    if self.name == "sched.runqlat":       # as when the kernel holds a load: never returns
        sys.stderr.write("HELD\\n"); sys.stderr.flush()
        while True:
            time.sleep(1)
    return attach(self)
instance.ProbeInstance.attach = held
from investigator.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_ctrl_c_while_a_load_is_held_still_gives_the_partial_report(tmp_path: Path) -> None:
    """The kernel can hold a BPF load for as long as it likes (synchronize_rcu under an RCU
    stall); the load cannot be cancelled.  The load is held here by the tool's own attach
    function replaced in a subprocess -- the rest is the real tool, loading real probes."""
    p = subprocess.Popen([sys.executable, "-c", HELD_LOAD, "playbooks/starvation.yaml", "--window", "5", "--json",
                          "--out", str(tmp_path / "b")], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr is not None
        line = p.stderr.readline()
        assert line == "HELD\n", line
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err
    rep = json.loads(out)
    assert rep["complete"] is False and rep["interrupted_by"] == "SIGINT"
    skipped = [n for n in rep["nodes"] if n["status"] == "skipped"]
    assert skipped and all("sched.runqlat" in n["errors"][0] for n in skipped), rep["nodes"]
    assert (tmp_path / "b" / "report.json").exists()


BPFTRACE_BOOK = "playbooks/runqueue-bpftrace.yaml"


@pytest.mark.skipif(shutil.which("bpftrace") is None, reason="bpftrace is not installed")
def test_a_mount_the_tool_made_is_reported_and_undone(tmp_path: Path) -> None:
    """In a private mount namespace without tracefs and securityfs: bpftrace needs tracefs
    and doctor reads securityfs; each is mounted, reported, and unmounted afterwards."""
    script = f"""
set -e
umount /sys/kernel/tracing 2>/dev/null || true
umount /sys/kernel/debug/tracing 2>/dev/null || true
umount /sys/kernel/security 2>/dev/null || true
before=$(grep -c -e ' tracefs ' -e ' securityfs ' /proc/self/mounts || true)
"{sys.executable}" -m investigator doctor > {tmp_path}/doctor.txt || true
"{sys.executable}" -m investigator {BPFTRACE_BOOK} --window 1 --json --allow-custom-probes \
    --out {tmp_path}/b > {tmp_path}/report.json || true
after=$(grep -c -e ' tracefs ' -e ' securityfs ' /proc/self/mounts || true)
echo "$before $after"
"""
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "0"], p.stdout       # none before, none left after
    doctor = (tmp_path / "doctor.txt").read_text()
    assert "mounted securityfs at /sys/kernel/security to look, and unmounted it again" in doctor
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["mounts"] == [{"fs": "tracefs", "path": "/sys/kernel/tracing", "unmounted": True}], rep.get("mounts")
    events = [json.loads(line) for line in (tmp_path / "b" / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "unmounted" and e["fs"] == "tracefs" for e in events)
