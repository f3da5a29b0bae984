"""sched.progress without a focus: every task the run's filters select is accounted from its
first event on (here --pid's filter, a process of three threads: one spinning, one sleeping
on a timer, one blocked reading a pipe nobody writes to), with the state its time went to
and its longest stretch off the CPU in words."""

from __future__ import annotations

import subprocess
import time

import pytest
from investigator.probes.instance import ProbeInstance, Targets
from investigator.probes.manifest import registry
from scenarios.procs import processes, wait_alive

pytestmark = [pytest.mark.bpf]

THREADS = """
import os, threading, time
r, w = os.pipe()
def spin():
    end = time.monotonic() + {seconds}
    while time.monotonic() < end:
        pass
def nap():
    end = time.monotonic() + {seconds}
    while time.monotonic() < end:
        time.sleep(0.3)
def reader():
    os.read(r, 1)
for name, fn in (("p-spin", spin), ("p-nap", nap), ("p-read", reader)):
    t = threading.Thread(target=fn, name=name, daemon=True)
    t.start()
    open(f"/proc/self/task/{{t.native_id}}/comm", "w").write(name)
time.sleep({seconds})
"""


def test_every_selected_task_is_accounted_by_where_its_time_went() -> None:
    with processes() as ps:
        proc = ps.spawn(THREADS, name="progress-threads", seconds=60)
        wait_alive(proc, 1.0)
        inst = ProbeInstance(registry()["sched.progress"], {}, Targets(pid=proc.pid))
        inst.attach()
        try:
            time.sleep(2.0)
            ev = inst.collect()
        finally:
            inst.close()
    assert not ev["focused"] and ev["probe"]["drops"] == 0
    by = {t["comm"]: t for t in ev["tasks"]}
    assert {"p-spin", "p-nap"} <= set(by), sorted(by)
    assert all(t["pid"] == proc.pid for t in ev["tasks"]), ev["tasks"]
    spin, nap = by["p-spin"], by["p-nap"]
    # the spinner shares the GIL with the others, but runs or waits for a CPU, never sleeps long
    assert spin["pct"]["sleep"] + spin["pct"]["blocked"] < 50.0, spin
    assert nap["dominant"] == "sleep" and nap["pct"]["sleep"] >= 70.0, nap
    assert nap["wakeups"] >= 3 and nap["longest"]["state"] == "sleep", nap
    assert "nanosleep" in nap["longest"]["diagnosis"] or "timer" in nap["longest"]["diagnosis"], nap["longest"]
    assert 200.0 <= nap["longest"]["ms"] <= 1500.0, nap["longest"]
    # the reader blocked before the probe attached and never ran: no event, not seen
    assert "p-read" not in by
    assert ev["worst"]["task"]["tid"] == ev["tasks"][0]["tid"]
