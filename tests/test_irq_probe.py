"""irq.time and playbooks/interrupts.yaml on real interrupt work: a loopback UDP flood
steered (RPS) to CPU 1 is an overload there; the same NET_RX work running in a CPU hog that
never touches the network is softirq work in the wrong context, and the follow-up aimed at the
hog names whose packets they were (the sender, the reader they woke); a mildly busy machine
has neither.  Conditions start before the investigation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.build import c_helper
from scenarios.procs import NORMAL_HOG, PERIODIC, SCENARIO_S, UDP_READER, processes, rps_to, wait_alive, wait_file

pytestmark = [pytest.mark.bpf, pytest.mark.cpu_heavy,
              pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPUs"),
              pytest.mark.skipif(not os.path.exists("/sys/class/net/lo/queues/rx-0/rps_cpus"),
                                 reason="kernel without RPS")]
BOOK = "playbooks/interrupts.yaml"


def run(tmp: Path) -> tuple[dict, dict, dict]:
    p = investigate(BOOK, "--window", "3", "--json", "--out", str(tmp / "b"))
    assert p.returncode in (0, 1), p.stderr
    rep = json.loads(p.stdout)
    nodes = {n["id"]: n for n in rep["nodes"]}
    ev = json.loads((tmp / "b" / "evidence.json").read_text())
    return rep, nodes, ev


def test_udp_flood_is_overload_on_the_cpu_that_processes_it(tmp_path: Path) -> None:
    flood = c_helper("udp_flood", tmp_path)
    with rps_to(1), processes() as ps:
        a = ps.spawn_argv([str(flood), "0", "60", "flood-a"])
        b = ps.spawn_argv([str(flood), "1", "60", "flood-b"])
        wait_alive(a, 1.0)
        wait_alive(b, 0.1)
        rep, nodes, ev = run(tmp_path)
    assert nodes["irq-overload"]["verdict"] == "overload", nodes["irq-overload"]
    v = next(v for v in rep["verdicts"] if v["node"] == "irq-overload")
    assert v["cpus"] in ([0], [1])
    irq = ev["irq-overload"]["irq"]
    cpu = irq["cpus"][v["cpus"][0]]
    assert cpu["top_vector"] == "NET_RX" and cpu["share_pct"] >= 15.0, irq["cpus"]
    assert cpu["softirq_ms"] >= 10 * cpu["hardirq_ms"]
    # the contexts the NET_RX work ran in on that CPU are the floods (their own sends)
    assert {c["comm"] for c in irq["charged"] if c["vector"] == "NET_RX" and c["context"] == "task"} \
        <= {"flood-a", "flood-b"} | {c["comm"] for c in irq["charged"] if c["raised_self"] == 0}


def test_net_rx_in_a_cpu_hog_is_wrong_context(tmp_path: Path) -> None:
    flood = c_helper("udp_flood", tmp_path)
    with rps_to(1), processes() as ps:
        sender = ps.spawn_argv([str(flood), "0", "60", "udp-sender"])
        hog = ps.spawn(NORMAL_HOG, name="busy-hog", cpu=1, seconds=SCENARIO_S)
        wait_alive(sender, 1.0)
        wait_alive(hog, 0.1)
        rep, nodes, ev = run(tmp_path)
    n = nodes["softirq-wrong-context"]
    assert n["verdict"] == "wrong-context", n
    v = next(v for v in rep["verdicts"] if v["node"] == "softirq-wrong-context")
    assert [(t["tid"], t["role"]) for t in v["tasks"]] == [(hog.pid, "victim")]
    assert v["cpus"] == [1]
    w = ev["softirq-wrong-context"]["irq"]["worst_charged"]
    assert w["comm"] == "busy-hog" and w["vector"] == "NET_RX" and w["raised_self"] == 0, w
    assert w["charged_ms"] >= 50
    # what raised them: the IPI that receive packet steering sends to CPU 1
    assert "rps_trigger_softirq" in w["raised_by"], w["raised_by"]
    # the sender is charged too, but for softirqs it raised itself: not the wrong context
    own = [c for c in ev["softirq-wrong-context"]["irq"]["charged"] if c["comm"] == "udp-sender"
           and c["vector"] == "NET_RX"]
    assert own and all(c["raised_self"] * 10 >= c["count"] for c in own), own
    # whose work it was: the follow-up watched the hog's context and names the sender (its
    # own socket is never read: no task was woken)
    w = whose_work(rep, nodes, hog.pid)
    assert {(t["tid"], t["as"]) for t in w["tasks"] if t["role"] == "culprit"} == {(sender.pid, "sender")}, w
    assert "woke no task" in w["summary"], w["summary"]


def whose_work(rep: dict, nodes: dict, victim: int) -> dict:
    """softirq-whose-work's verdict, aimed at the charged task, which is its victim."""
    n = nodes["softirq-whose-work"]
    assert n["focus"]["tids"] == [victim] and n["verdict"] == "wrong-context", n
    (v,) = [v for v in rep["verdicts"] if v["node"] == "softirq-whose-work"]
    assert [t["tid"] for t in v["tasks"] if t["role"] == "victim"] == [victim], v
    # the first finding is a symptom of what its follow-up found
    (first,) = [x for x in rep["verdicts"] if x["node"] == "softirq-wrong-context"]
    assert first["symptom_of"] == v["id"], first
    return v


def test_net_rx_in_a_cpu_hog_names_the_sender_and_the_reader_of_its_packets(tmp_path: Path) -> None:
    """A sender on CPU 0 floods a reader's socket on loopback, the packets steered to CPU 1,
    where a hog runs that has no socket at all: the NET_RX work charged to the hog is named
    as the sender's packets, which woke the reader; a look-alike sender beside them, sending
    to its own socket on CPU 0 with no steering of its own, is not named."""
    flood = c_helper("udp_flood", tmp_path)
    portfile = str(tmp_path / "port")
    with rps_to(1), processes() as ps:
        reader = ps.spawn(UDP_READER, name="udp-reader", cpu=0, portfile=portfile, seconds=SCENARIO_S)
        port = wait_file(portfile, reader)
        sender = ps.spawn_argv([str(flood), "0", "60", "udp-sender", port])
        hog = ps.spawn(NORMAL_HOG, name="busy-hog", cpu=1, seconds=SCENARIO_S)
        quiet = ps.spawn(PERIODIC, name="periodic", cpu=0, period=0.01, work=0.002, seconds=SCENARIO_S)
        wait_alive(sender, 1.0)
        wait_alive(hog, 0.1)
        rep, nodes, ev = run(tmp_path)
        assert reader.poll() is None and hog.poll() is None and quiet.poll() is None
    w = whose_work(rep, nodes, hog.pid)
    culprits = {t["tid"]: t for t in w["tasks"] if t["role"] == "culprit"}
    assert culprits[sender.pid]["as"] == "sender" and culprits[sender.pid]["share_pct"] >= 90.0, culprits
    assert culprits[reader.pid]["as"] == "woken", culprits
    assert set(culprits) == {sender.pid, reader.pid}, culprits
    assert f"udp-sender (tid {sender.pid}" in w["summary"] and f"udp-reader (tid {reader.pid}" in w["summary"]
    net = ev["softirq-whose-work"]["net"]
    # only the focused context was watched
    assert {c["tid"] for c in net["contexts"]} == {hog.pid}, net["contexts"]


def test_mildly_busy_machine_has_no_interrupt_finding(tmp_path: Path) -> None:
    with processes() as ps:
        p = ps.spawn(PERIODIC, name="periodic", cpu=1, period=0.01, work=0.002, seconds=SCENARIO_S)
        wait_alive(p, 0.5)
        rep, nodes, _ = run(tmp_path)
    assert rep["verdicts"] == [], rep["verdicts"]
    assert {n["status"] for n in nodes.values()} == {"refuted"}
