"""sched.progress without a focus: every task the run's filters select is accounted from its
first event on (here --pid's filter, a process of three threads: one spinning, one sleeping
on a timer, one blocked reading a pipe nobody writes to), with the state its time went to
and its longest stretch off the CPU (without stacks: those are taken for a focus only)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from investigator.probes.instance import ProbeInstance, Targets
from investigator.probes.manifest import registry
from scenarios.procs import processes

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


def _wait_for_threads(pid: int) -> None:
    """Until the three threads have their names and the reader blocks in its read."""
    deadline = time.monotonic() + 60
    while True:
        comms = {}
        for t in Path(f"/proc/{pid}/task").iterdir():
            try:
                comms[(t / "comm").read_text().strip()] = (t / "wchan").read_text()
            except OSError:
                pass
        if {"p-spin", "p-nap"} <= set(comms) and "pipe_read" in comms.get("p-read", ""):
            return
        assert time.monotonic() < deadline, comms
        time.sleep(0.05)


def test_every_selected_task_is_accounted_by_where_its_time_went() -> None:
    with processes() as ps:
        proc = ps.spawn(THREADS, name="progress-threads", seconds=60)
        _wait_for_threads(proc.pid)
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
    # without a focus no stack is taken at a switch (it would be every switch of the machine)
    assert nap["longest"]["kernel_stack"] == [] and nap["longest"]["diagnosis"] == "", nap["longest"]
    assert 200.0 <= nap["longest"]["ms"] <= 1500.0, nap["longest"]
    # the reader blocked before the probe attached and never ran: no event, not seen
    assert "p-read" not in by
