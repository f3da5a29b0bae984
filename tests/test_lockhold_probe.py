"""lock.hold on real mutex holds: two writers on one pty take turns holding
tty->atomic_write_lock for a whole write() while a slow reader drains the master.  Hold
times, the holders, and the timeline (two holds of one mutex never overlap) -- through
kprobe/kretprobe and, with kprobes ruled out, fentry/fexit.  Neither hook works on this
machine's kernel: the second-kernel stage runs these tests under Debian 6.1 and 6.12."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.procs import PTY_WRITERS, SCENARIO_S, processes, wait_alive

from investigator.bpf import features
from investigator.probes.manifest import registry

TOO_OLD = registry()["lock.hold"].too_old()

pytestmark = [pytest.mark.bpf, pytest.mark.second_kernel]
NEITHER = not features.hook("kprobe") and not features.hook("fentry", "mutex_unlock")
needs_hook = pytest.mark.skipif(NEITHER, reason="neither fentry nor kprobe works on this kernel: "
                                "runs in the second-kernel stage")
BOOK = """apiVersion: investigator/v1
kind: Playbook
metadata: {name: hold-test, description: mutex hold times}
start: [hold]
nodes:
  hold:
    hypothesis: a mutex is held for long
    probes:
      - use: lock.hold
    conclude:
      - when: lockhold.max_hold_ms >= 100.0
        verdict: contention
        about: lockhold.worst
        explain: "{lockhold.worst.holder.comm} held {lockhold.worst.addr} for {lockhold.worst.max_ms} ms"
"""


@needs_hook
@pytest.mark.parametrize("ruled_out", ["", "kprobe"])
def test_mutex_hold_times_holders_and_timeline(tmp_path: Path, ruled_out: str) -> None:
    book = tmp_path / "hold.yaml"
    book.write_text(BOOK)
    pidfile = tmp_path / "pids"
    old = dict(os.environ)
    if ruled_out:
        os.environ["INVESTIGATOR_DISABLE_HOOKS"] = ruled_out
    try:
        with processes() as ps:
            rd, pids = ps.spawn_with_pids(PTY_WRITERS, str(pidfile), name="ptyhold", drain=0.1,
                                          chunk=96 * 1024, seconds=SCENARIO_S)
            wait_alive(rd, 0.5)
            p = investigate(str(book), "--window", "4", "--json", "--out", str(tmp_path / "b"), timeout=300)
    finally:
        os.environ.clear()
        os.environ.update(old)
    rep = json.loads(p.stdout)
    if TOO_OLD:     # refused, and says why (the second-kernel stage's 6.1)
        assert p.returncode == 3 and rep["nodes"][0]["status"] == "unobservable", p.stderr
        assert "needs Linux 6.6 or later" in json.dumps(rep["nodes"][0]["probes"])
        return
    assert p.returncode in (0, 1), p.stderr
    assert rep["nodes"][0]["probes"][0]["hook"] == ("fentry" if ruled_out else "kprobe")
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["hold"]["lockhold"]
    ours = [lk for lk in ev["locks"] if lk["holder"]["tid"] in pids]
    assert ours, ev["locks"][:3]
    lk = max(ours, key=lambda x: x["max_ms"])
    assert lk["max_ms"] >= 100 and lk["holder"]["comm"].startswith("ptyhold-w"), lk
    assert any("tty_write" in f for f in lk["stack"]), lk["stack"]
    # the timeline of that mutex: holds by the writers, one after the other, never overlapping
    holds = [h for h in ev["timeline"] if h["addr"] == lk["addr"]]
    assert {h["tid"] for h in holds} <= set(pids) and holds, ev["timeline"][-5:]
    for a, b in zip(holds, holds[1:]):
        assert b["acquired_ms"] >= a["released_ms"], (a, b)
    assert rep["verdicts"][0]["verdict"] == "contention"


def test_lock_hold_is_unobservable_with_reason_without_hooks(tmp_path: Path) -> None:
    book = tmp_path / "hold.yaml"
    book.write_text(BOOK)
    old = dict(os.environ)
    os.environ["INVESTIGATOR_DISABLE_HOOKS"] = "fentry,kprobe"
    try:
        p = investigate(str(book), "--window", "1", "--json", "--out", str(tmp_path / "b"), timeout=300)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert p.returncode == 3, p.stderr
    node = json.loads(p.stdout)["nodes"][0]
    assert node["status"] == "unobservable"
    assert ("needs Linux 6.6" if TOO_OLD else "INVESTIGATOR_DISABLE_HOOKS") in json.dumps(node["probes"])
