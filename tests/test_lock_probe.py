"""lock.contention on real kernel mutex contention: two writers on one pty, serialized by
tty->atomic_write_lock, each holding it for a whole write() while a slow reader drains the
master.  The probe must name the mutex, both writers as waiter and owner, the waits' length
and the waiter's stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.procs import PTY_WRITERS, SCENARIO_S, processes, wait_alive

pytestmark = [pytest.mark.bpf, pytest.mark.second_kernel]


def playbook(tmp: Path) -> Path:
    p = tmp / "lock.yaml"
    p.write_text("""apiVersion: investigator/v1
kind: Playbook
metadata: {name: lock-test, description: kernel lock contention}
defaults: {window: 3s}
start: [locks]
nodes:
  locks:
    hypothesis: tasks wait for kernel locks
    probes:
      - use: lock.contention
    conclude:
      - when: lock.worst.max_ms >= 50.0
        verdict: contention
        about: lock.worst
        explain: "{lock.worst.waiter.comm} waited {lock.worst.max_ms} ms for {lock.worst.kind} {lock.worst.addr}"
""")
    return p


def test_mutex_contention_names_lock_waiter_and_owner(tmp_path: Path) -> None:
    with processes() as ps:
        rd, pids = ps.spawn_with_pids(PTY_WRITERS, str(tmp_path / "pids"), name="ptylock", drain=0.05,
                                      chunk=64 * 1024, seconds=SCENARIO_S)
        wait_alive(rd, 1.0)
        p = investigate(str(playbook(tmp_path)), "--window", "3", "--json", "--out", str(tmp_path / "b"))
    assert p.returncode == 1, p.stderr
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["locks"]["lock"]
    assert ev["probe"]["hook"] == "tp_btf"
    ours = [lk for lk in ev["locks"] if lk["waiter"]["tid"] in pids]
    assert ours, ev["locks"][:3]
    (lk,) = [lk for lk in ours if lk["kind"] == "mutex"][:1]
    assert lk["owner"]["tid"] in pids and lk["owner"]["tid"] != lk["waiter"]["tid"], lk
    assert lk["owner"]["comm"].startswith("ptylock-w") and lk["waiter"]["comm"].startswith("ptylock-w")
    # a 64 KiB write() needs several drains, 50 ms apart: the other writer waits for
    # hundreds of ms each time (7 waits of up to ~550 ms in 3 s, measured)
    assert lk["max_ms"] >= 50 and lk["count"] >= 1, lk     # at least one 50 ms drain
    assert any("tty_write" in f for f in lk["stack"]), lk["stack"]
    assert ev["worst"]["addr"] == lk["addr"], (ev["worst"], lk)
    rep = json.loads(p.stdout)
    assert rep["verdicts"][0]["verdict"] == "contention"
