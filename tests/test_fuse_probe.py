"""fuse.requests on a real FUSE filesystem (a scenario daemon serving /dev/fuse itself):
a RENAME the daemon read and never answers (processing), and a LOOKUP queued while the
daemon is stopped (pending).  Each request names its client and the daemon it waits for."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.procs import FUSE_RENAMER, SCENARIO_S, fuse_mount, processes, wait_alive

pytestmark = [pytest.mark.bpf, pytest.mark.second_kernel,
              pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")]

BOOK = """apiVersion: investigator/v1
kind: Playbook
metadata: {name: fuse-test, description: FUSE requests without an answer}
start: [fuse]
nodes:
  fuse:
    hypothesis: a FUSE client waits for its daemon
    probes:
      - use: fuse.requests
    conclude:
      - when: fuse.stuck_count > 0
        verdict: hung-task
        about: fuse.worst
        explain: "{fuse.worst.request.op} waits for {fuse.worst.tasks.1.comm}"
"""

LOOKUP = """
import os
open("/proc/self/comm", "w").write("{name}")
os.stat("{path}")          # LOOKUP: queued for a daemon that is stopped
"""


def run(tmp: Path) -> tuple[dict, dict]:
    book = tmp / "fuse.yaml"
    book.write_text(BOOK)
    p = investigate(str(book), "--window", "2", "--json", "--out", str(tmp / "b"))
    assert p.returncode == 1, p.stderr
    (v,) = json.loads(p.stdout)["verdicts"]
    return v, json.loads((tmp / "b" / "evidence.json").read_text())["fuse"]["fuse"]


def test_unanswered_rename_names_its_client_and_the_daemon(tmp_path: Path) -> None:
    with processes() as ps, fuse_mount(ps, str(tmp_path), "silent") as (daemon, mnt):
        c = ps.spawn(FUSE_RENAMER, name="fuse-client", src=f"{mnt}/a/x", dst=f"{mnt}/b/y")
        wait_alive(c, 1.0)
        v, ev = run(tmp_path)
    assert v["verdict"] == "hung-task"
    assert [(t["tid"], t["role"]) for t in v["tasks"]] == [(c.pid, "waiter"), (daemon.pid, "holder")]
    (r,) = ev["requests"]
    assert (r["op"], r["where"], r["stuck"], r["mountpoint"]) == ("RENAME", "processing", True, mnt), r
    assert r["client"]["tid"] == c.pid and r["client"]["wchan"] == "request_wait_answer", r["client"]
    assert r["daemon_pids"] == [daemon.pid] and r["waits_for"] == [daemon.pid]
    # the age comes from the request itself (6.14+): the client has waited since before the window
    assert r["age_s"] is None or r["age_s"] >= 2.5, r
    assert r["waited_s"] >= 2.0
    (d,) = ev["daemons"]
    assert d["pid"] == daemon.pid and d["mountpoint"] == mnt and d["unanswered"] == 1
    assert [(t["wchan"], t["busy"]) for t in d["threads"]] == [("fuse_dev_do_read", False)]
    assert ev["edges"] == [{"waiter": c.pid, "holder": daemon.pid, "lock": f"fuse RENAME #{r['unique']} {mnt}", "addr": mnt,
                            "kind": "fuse", "stuck": True, "waited_s": r["waited_s"]}]


def test_request_queued_for_a_stopped_daemon_is_pending(tmp_path: Path) -> None:
    with processes() as ps, fuse_mount(ps, str(tmp_path), "silent") as (daemon, mnt):
        os.kill(daemon.pid, signal.SIGSTOP)
        try:
            c = ps.spawn(LOOKUP, name="fuse-stat", path=f"{mnt}/a/nothing")
            wait_alive(c, 1.0)
            v, ev = run(tmp_path)
        finally:
            os.kill(daemon.pid, signal.SIGCONT)
    r = next(r for r in ev["requests"] if r["client"]["tid"] == c.pid)
    assert (r["op"], r["where"], r["stuck"]) == ("LOOKUP", "pending", True), r
    # the daemon is not idle in a read: it is stopped, and the wait ends there
    assert r["waits_for"] == [daemon.pid]
    (d,) = ev["daemons"]
    assert d["threads"][0]["state"] == "T" and d["threads"][0]["busy"], d
    assert v["verdict"] == "hung-task"


NS_WRAPPER = """
import subprocess, sys, time
# pid 1 of a new pid namespace: the daemon and its client live here, and the daemon's
# connection names the client by its pid in this namespace
d = subprocess.Popen([sys.executable, "-c", {daemon!r}])
end = time.monotonic() + 120
import os
while not os.path.exists({ready!r}) and time.monotonic() < end:
    time.sleep(0.05)
c = subprocess.Popen([sys.executable, "-c", {client!r}])
time.sleep({seconds})
"""


def _tid_by_comm(comm: str) -> int:
    """The process named comm (0 if none): the namespace's tasks are not our children."""
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                return int(pid)
        except OSError:
            continue
    return 0


def test_daemon_in_a_pid_namespace_names_its_client_by_global_pid(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys
    import textwrap
    from scenarios.procs import FUSE_DAEMON, abort_fuse, children_of
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    mnt, ready = tmp_path / "mnt", tmp_path / "ready"
    mnt.mkdir()
    daemon = textwrap.dedent(FUSE_DAEMON.format(name="ns-daemon", mnt=mnt, ready=ready, mode="silent", seconds=SCENARIO_S))
    client = textwrap.dedent(FUSE_RENAMER.format(name="ns-client", src=f"{mnt}/a/x", dst=f"{mnt}/b/y"))
    wrapper = textwrap.dedent(NS_WRAPPER.format(daemon=daemon, client=client, ready=str(ready), seconds=SCENARIO_S))
    p = subprocess.Popen(["unshare", "--pid", "--fork", sys.executable, "-c", wrapper])
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and not _tid_by_comm("ns-client"):
            time.sleep(0.1)
        time.sleep(1.0)
        c_tid, d_tid = _tid_by_comm("ns-client"), _tid_by_comm("ns-daemon")
        assert c_tid and d_tid, "the namespace's daemon and client did not start"
        nspid_line = next(x for x in Path(f"/proc/{c_tid}/status").read_text().splitlines() if x.startswith("NSpid:"))
        ns_pid = nspid_line.split()[-1]                 # "NSpid:  <global>  <in the namespace>"
        assert int(ns_pid) != c_tid, "the client should have a pid of its own in the namespace"
        v, ev = run(tmp_path)
    finally:
        abort_fuse(str(mnt))
        for kid in children_of(p.pid) + [p.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(kid, signal.SIGKILL)
        p.wait(timeout=10)
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    (r,) = ev["requests"]
    assert r["client"]["tid"] == c_tid and r["client"]["comm"] == "ns-client", r
    assert r["waits_for"] == [d_tid]
    assert [(t["tid"], t["role"]) for t in v["tasks"]] == [(c_tid, "waiter"), (d_tid, "holder")]
