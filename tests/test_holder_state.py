"""Follow a stuck chain into its holder: freeze.yaml's first look finds a waiter stuck
behind the holder of a process-shared pthread mutex and sends it on to user-deadlock and,
aimed at the holder alone, to holder-state, which says why it does not let go (sched.progress: where its time went).

Each condition is real and set up before the investigation (tests/scenarios/held.c): the
holder spins with the lock held, sleeps with it while stopped by SIGSTOP or held under
ptrace by this test, or blocks writing to a frozen filesystem.  The look-alike holds the
lock 50 ms at a time and lets go in between: its waiter gets it, so no chain is stuck
and no follow-up starts."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.build import c_helper
from scenarios.procs import SCENARIO_S, frozen_filesystem, processes, wait_alive

pytestmark = [pytest.mark.bpf]


def _wchan(tid: int) -> str:
    try:
        return Path(f"/proc/{tid}/wchan").read_text()
    except OSError:
        return ""


def _start(ps, exe: Path, mode: str, *extra: str) -> tuple[subprocess.Popen[str], dict[str, int], str]:
    proc = subprocess.Popen([str(exe), str(SCENARIO_S), mode, *extra], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    ps.procs.append(proc)
    printed = dict(part.split("=") for part in proc.stdout.readline().split())  # type: ignore[union-attr]
    tids = {k: int(printed[k]) for k in ("holder", "waiter")}
    _wait_for("the waiter never waited for the mutex", lambda: "futex" in _wchan(tids["waiter"]))
    return proc, tids, hex(int(printed["mutex"], 16))


def _wait_for(what: str, cond, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _run(tmp_path: Path) -> dict:
    p = investigate("playbooks/freeze.yaml", "--window", "2", "--json", "--out", str(tmp_path / "b"), timeout=240)
    assert p.returncode == 1, p.stdout + p.stderr
    return json.loads(p.stdout)


def _chain_then_holder(rep: dict, tids: dict[str, int], mutex: str) -> dict:
    """The first hop (waiter stuck behind holder) and the follow-up's verdict."""
    (chain,) = [v for v in rep["verdicts"] if v["node"] == "user-deadlock"]
    assert chain["verdict"] == "hung-task", chain
    assert {t["role"]: t["tid"] for t in chain["tasks"]} == {"waiter": tids["waiter"], "holder": tids["holder"]}
    (node,) = [n for n in rep["nodes"] if n["id"] == "holder-state"]
    # sent by the first look's stuck chain, beside user-deadlock's own window
    assert node["reached_from"] == ["triage"] and node["focus"]["tids"] == [tids["holder"]]
    assert node["focus"]["from"] == "triage"
    (v,) = [v for v in rep["verdicts"] if v["node"] == "holder-state"]
    roles = {t["role"]: t["tid"] for t in v["tasks"]}
    assert roles["holder"] == tids["holder"] and roles["waiter"] == tids["waiter"], v["tasks"]
    (lk,) = v["locks"]
    assert lk["addr"] == mutex and lk["holder_tid"] == tids["holder"], lk
    # one incident, one story: the stuck waiter is the symptom, the holder's state the cause
    assert chain["symptom_of"] == "holder-state" and "user-deadlock" in v["symptoms"], (chain, v)
    assert "holder-state" in rep["root_causes"] and "user-deadlock" not in rep["root_causes"]
    return v


def _progress(tmp_path: Path, tid: int) -> dict:
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["holder-state"]["progress"]
    assert ev["focused"] and [t["tid"] for t in ev["tasks"]] == [tid], ev["tasks"]
    return ev["tasks"][0]


@pytest.mark.cpu_heavy
def test_a_holder_busy_with_the_lock_held_is_contention(tmp_path: Path) -> None:
    exe = c_helper("held", tmp_path)
    with processes() as ps:
        proc, tids, mutex = _start(ps, exe, "busy")
        rep = _run(tmp_path)
        wait_alive(proc, 0)
    v = _chain_then_holder(rep, tids, mutex)
    print(v["summary"])
    assert v["verdict"] == "contention", v
    assert "is busy with" in v["summary"] and "in user space" in v["summary"], v["summary"]
    # its hottest code, sampled: the spin loop in the scenario's own binary
    d = v["evidence"]["details"]
    assert d["hottest"]["tid"] == tids["holder"] and d["hottest"]["samples"] >= 10, d["hottest"]
    assert d["where"].startswith("held+0x") and f"of its samples in {d['where']}" in v["summary"], v["summary"]
    t = _progress(tmp_path, tids["holder"])
    assert t["pct"]["running"] + t["pct"]["runq"] >= 95.0 and t["pct"]["running"] >= 80.0, t
    assert t["user_ms"] >= 0.5 * t["observed_ms"], t


@pytest.mark.second_kernel
def test_a_stopped_holder_is_a_hung_task(tmp_path: Path) -> None:
    exe = c_helper("held", tmp_path)
    with processes() as ps:
        proc, tids, mutex = _start(ps, exe, "sleep")
        os.kill(tids["holder"], signal.SIGSTOP)
        _wait_for("the holder never stopped", lambda: "State:\tT" in Path(f"/proc/{tids['holder']}/status").read_text())
        try:
            rep = _run(tmp_path)
        finally:
            os.kill(tids["holder"], signal.SIGCONT)
        wait_alive(proc, 0)
    v = _chain_then_holder(rep, tids, mutex)
    assert v["verdict"] == "hung-task" and v["confidence"] == "high", v
    assert "is stopped by a signal" in v["summary"], v["summary"]
    assert "culprit" not in {t["role"] for t in v["tasks"]}
    assert any(f.startswith("do_signal_stop") for f in v["evidence"]["details"]["stack"])
    t = _progress(tmp_path, tids["holder"])
    assert t["pct"]["stopped"] >= 95.0 and t["longest"]["ongoing"], t


def test_a_holder_under_ptrace_names_its_tracer(tmp_path: Path) -> None:
    """This test's own thread attaches (PTRACE_ATTACH), so the holder sits in a ptrace stop
    with the test as its tracer, which the verdict names as the culprit."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    exe = c_helper("held", tmp_path)
    with processes() as ps:
        proc, tids, mutex = _start(ps, exe, "sleep")
        assert libc.ptrace(16, tids["holder"], None, None) == 0, os.strerror(ctypes.get_errno())  # PTRACE_ATTACH
        try:
            os.waitpid(tids["holder"], 0x40000000)        # __WALL: it is in its ptrace stop
            rep = _run(tmp_path)
        finally:
            libc.ptrace(17, tids["holder"], None, None)   # PTRACE_DETACH
        wait_alive(proc, 0)
    v = _chain_then_holder(rep, tids, mutex)
    print(v["summary"])
    assert v["verdict"] == "hung-task", v
    (culprit,) = [t for t in v["tasks"] if t["role"] == "culprit"]
    assert culprit["pid"] == os.getpid(), culprit
    assert f"traced by" in v["summary"] and "is stopped" in v["summary"], v["summary"]


def test_a_holder_asleep_with_the_lock_held_is_a_hung_task(tmp_path: Path) -> None:
    """The holder naps 100 ms at a time, the lock held all along: no single long sleep, but
    asleep for all of the window."""
    exe = c_helper("held", tmp_path)
    with processes() as ps:
        proc, tids, mutex = _start(ps, exe, "sleep")
        rep = _run(tmp_path)
        wait_alive(proc, 0)
    v = _chain_then_holder(rep, tids, mutex)
    assert v["verdict"] == "hung-task" and v["confidence"] == "medium", v
    assert "but does not run" in v["summary"] and "sleeps on a timer" in v["summary"], v["summary"]
    t = _progress(tmp_path, tids["holder"])
    assert t["pct"]["sleep"] >= 90.0 and t["wakeups"] >= 5, t
    assert t["longest"]["ms"] < 1000.0, t["longest"]


@pytest.mark.skipif(not all(shutil.which(t) for t in ("mkfs.ext4", "fsfreeze", "losetup")),
                    reason="needs mkfs.ext4, fsfreeze and loop devices")
def test_a_holder_blocked_on_a_frozen_filesystem(tmp_path: Path) -> None:
    exe = c_helper("held", tmp_path)
    # the holder is killed (processes() ends first) before the filesystem is thawed
    with frozen_filesystem(str(tmp_path)) as mnt, processes() as ps:
        proc, tids, mutex = _start(ps, exe, "write", f"{mnt}/file")
        _wait_for("the holder never blocked on the filesystem",
                  lambda: "State:\tD" in Path(f"/proc/{tids['holder']}/status").read_text())
        rep = _run(tmp_path)
        wait_alive(proc, 0)
    v = _chain_then_holder(rep, tids, mutex)
    print(v["summary"])
    assert v["verdict"] == "hung-task", v
    assert "waits for a frozen filesystem to thaw" in v["summary"], v["summary"]
    t = _progress(tmp_path, tids["holder"])
    assert t["pct"]["blocked"] + t["pct"]["io"] >= 95.0 and t["longest"]["ongoing"], t
    assert any(f.startswith(("percpu_rwsem_wait", "mnt_want_write", "__sb_start_write"))
               for f in t["longest"]["kernel_stack"]), t["longest"]


@pytest.mark.cpu_heavy
def test_a_holder_that_lets_go_between_holds_is_not_followed(tmp_path: Path) -> None:
    exe = c_helper("held", tmp_path)
    with processes() as ps:
        proc, tids, _ = _start(ps, exe, "pulse")
        p = investigate("playbooks/freeze.yaml", "--window", "2", "--json", "--out", str(tmp_path / "b"),
                        timeout=240)
        wait_alive(proc, 0)
    assert p.returncode in (0, 1), p.stderr
    rep = json.loads(p.stdout)
    # no stuck chain and nothing about the lock (its 50 ms spins may starve another task on
    # a slow machine: a real finding, about the CPU)
    mine = [v for v in rep["verdicts"] if {t["tid"] for t in v["tasks"]} & set(tids.values())
            and (v["node"] in ("user-deadlock", "holder-state") or v["verdict"] in ("hung-task", "deadlock"))]
    assert not mine, mine
    assert not [n for n in rep["nodes"] if n["id"] == "holder-state"], "no stuck chain, no follow-up"
    # the first look looked at the lock waits (its user.futex attached), and user-deadlock, when
    # a wait caught by the first look sent it there, saw no stuck wait
    futex = [r for n in rep["nodes"] if n["id"] == "triage" for r in n["probes"] if r["probe"] == "user.futex"]
    assert futex and futex[0].get("hook") and not futex[0].get("error"), futex
    for node in [n for n in rep["nodes"] if n["id"] == "user-deadlock"]:
        assert node["verdict"] in ("refuted", "contention"), node
