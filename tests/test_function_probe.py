"""kernel.func, the generic function probe, on real calls: counts, the calling process and
stack, latency, return values -- through fentry/fexit and, with fentry ruled out, through
kprobe/kretprobe.  This kernel (6.18 under lockdown, no KPROBES) has neither hook: here the
node must say so; the second-kernel stage (tests/test_second_kernel.py) runs every test of
this file under Debian's 6.1 and 6.12, where both hooks work."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import investigate, libc_path
from scenarios.procs import SCENARIO_S, processes, wait_alive

from investigator.bpf import features
from investigator.probes.manifest import kernel_version

pytestmark = [pytest.mark.bpf, pytest.mark.second_kernel]
NEITHER = not features.hook("fentry", "do_sys_openat2") and not features.hook("kprobe")
needs_hook = pytest.mark.skipif(NEITHER, reason="neither fentry nor kprobe works on this kernel: "
                                "runs in the second-kernel stage")
# fexit reads the return value with bpf_get_func_ret (5.17): before, kprobe is the hook
FEXIT_RET = kernel_version() >= (5, 17)

OPENER = """
import os, time
open("/proc/self/comm", "w").write("{name}")
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    try:
        os.open("/nonexistent/investigator-func-test", os.O_RDONLY)   # -ENOENT
    except FileNotFoundError:
        pass
    os.close(os.open("/proc/self/stat", os.O_RDONLY))               # a file
    time.sleep({period})
"""

SLEEPER = """
import os, time
open("/proc/self/comm", "w").write("{name}")
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    time.sleep({nap})
"""


def playbook(tmp: Path, function: str) -> Path:
    p = tmp / "func.yaml"
    p.write_text(f"""apiVersion: investigator/v1
kind: Playbook
metadata: {{name: func-test, description: calls of {function}}}
defaults: {{window: 3s}}
start: [calls]
nodes:
  calls:
    hypothesis: {function} is called
    probes:
      - use: kernel.func
        with: {{function: {function}}}
    conclude:
      - when: func.calls > 0
        verdict: contention
        explain: "{{func.calls}} calls of {{func.function}}"
      - when: func.calls == 0
        verdict: refuted
        explain: "no calls"
""")
    return p


def run(tmp: Path, function: str, pid: int, env: dict[str, str] | None = None) -> tuple[dict, dict]:
    out = tmp / "bundle"
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        p = investigate(str(playbook(tmp, function)), "--pid", str(pid), "--window", "3",
                        "--json", "--out", str(out), timeout=300)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert p.returncode in (0, 1), p.stderr
    rep = json.loads(p.stdout)
    ev = json.loads((out / "evidence.json").read_text())["calls"]["func"]
    return rep, ev


@needs_hook
@pytest.mark.kernel_510
@pytest.mark.parametrize("ruled_out", ["", "fentry"])
def test_counts_callers_and_errors_of_openat(tmp_path: Path, ruled_out: str) -> None:
    with processes() as ps:
        opener = ps.spawn(OPENER, name="opener", period=0.05, seconds=SCENARIO_S)
        wait_alive(opener, 0.5)
        rep, ev = run(tmp_path, "do_sys_openat2", opener.pid,
                      {"INVESTIGATOR_DISABLE_HOOKS": ruled_out} if ruled_out else None)
    probe = rep["nodes"][0]["probes"][0]
    assert probe["hook"] == ("kprobe" if ruled_out or not FEXIT_RET else "fentry"), probe
    assert ev["function"] == "do_sys_openat2"
    # every loop opens twice: one -ENOENT, one file descriptor
    assert ev["calls"] >= 20, ev
    enoent = next(r["count"] for r in ev["returns"] if r["value"] == "-ENOENT")
    assert abs(enoent * 2 - ev["calls"]) <= 3, ev["returns"]
    assert abs(ev["errors"] - enoent) <= 1
    fds = sum(r["count"] for r in ev["returns"] if r["raw"] is not None and r["raw"] >= 0)
    assert abs(fds - enoent) <= 2
    (proc,) = ev["processes"]                      # --pid keeps only the opener
    # (the maps are read one after the other while the opener goes on: off by a call or two)
    assert proc["pid"] == opener.pid and proc["comm"] == "opener" and abs(proc["calls"] - ev["calls"]) <= 2
    assert sum(c["calls"] for c in ev["cpus"]) == ev["calls"]
    assert ev["last"]["tid"] == opener.pid and ev["last"]["comm"] == "opener"
    assert any("openat" in f for f in ev["callers"][0]["stack"]), ev["callers"]
    assert abs(sum(b["count"] for b in ev["hist_ns"]) - ev["calls"]) <= 2
    assert rep["verdicts"][0]["summary"].startswith(f"{ev['calls']} calls of do_sys_openat2")


@needs_hook
@pytest.mark.kernel_510
def test_latency_and_pointer_returns(tmp_path: Path) -> None:
    with processes() as ps:
        sleeper = ps.spawn(SLEEPER, name="sleeper", nap=0.2, seconds=SCENARIO_S)
        wait_alive(sleeper, 0.5)
        _, ev = run(tmp_path, "do_nanosleep", sleeper.pid)
    assert ev["calls"] >= 5, ev                     # 3 s window, 200 ms naps
    assert 200_000 <= ev["max_us"] < 2_000_000, ev   # each call sleeps its 200 ms
    assert ev["p99_us"] >= 200_000
    assert [r["value"] for r in ev["returns"]] == ["0"]
    # the counters are read one after the other while the sleeper goes on: off by a call or two
    assert abs(ev["zero_returns"] - ev["calls"]) <= 2, ev


@needs_hook
@pytest.mark.kernel_510
def test_pointer_and_error_returns_of_do_filp_open(tmp_path: Path) -> None:
    with processes() as ps:
        opener = ps.spawn(OPENER, name="opener", period=0.05, seconds=SCENARIO_S)
        wait_alive(opener, 0.5)
        _, ev = run(tmp_path, "do_filp_open", opener.pid)
    classes = {r["value"]: r["count"] for r in ev["returns"]}
    assert set(classes) == {"-ENOENT", "pointer/large"}, classes   # struct file * or ERR_PTR
    assert abs(classes["-ENOENT"] - classes["pointer/large"]) <= 1


def test_unknown_function_or_no_hook_is_unobservable_with_reason(tmp_path: Path) -> None:
    function = "do_sys_openat2" if NEITHER else "investigator_no_such_function"
    p = investigate(str(playbook(tmp_path, function)), "--window", "1", "--json",
                    "--out", str(tmp_path / "b"), timeout=300)
    assert p.returncode == 3, (p.returncode, p.stderr)    # no node could observe
    node = json.loads(p.stdout)["nodes"][0]
    assert node["status"] == "unobservable"
    note = " ".join(node["errors"]) + json.dumps(node["probes"])
    if NEITHER:
        assert "fentry" in note and "kprobe" in note
    else:
        assert "investigator_no_such_function" in note


def test_playbook_must_name_the_function(tmp_path: Path) -> None:
    p = tmp_path / "nofunc.yaml"
    p.write_text(playbook(tmp_path, "x").read_text().replace("        with: {function: x}\n", ""))
    r = investigate("validate", str(p))
    assert r.returncode == 2
    assert "needs the parameter 'function'" in r.stderr and ":10:" in r.stderr, r.stderr
    p.write_text(playbook(tmp_path, "x").read_text().replace("function: x}", "function: 'a b'}"))
    r = investigate("validate", str(p))
    assert "expected a kernel symbol name" in r.stderr, r.stderr


ISATTY = """
import os, time
open("/proc/self/comm", "w").write("{name}")
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    os.isatty(0)          # libc isatty(): stdin is /dev/null, returns 0
    time.sleep({period})
"""


@pytest.mark.kernel_510
def test_user_function_through_uprobes(tmp_path: Path) -> None:
    """user.func on libc's isatty(): uprobes work on this kernel, so this runs here."""
    libc = libc_path()
    book = tmp_path / "ufunc.yaml"
    book.write_text(f"""apiVersion: investigator/v1
kind: Playbook
metadata: {{name: ufunc-test, description: calls of isatty}}
start: [calls]
nodes:
  calls:
    hypothesis: isatty is called
    probes:
      - use: user.func
        with: {{binary: {libc}, function: isatty}}
    conclude:
      - when: ufunc.calls > 0
        verdict: contention
        explain: "{{ufunc.calls}} calls of isatty"
""")
    with processes() as ps:
        p = ps.spawn(ISATTY, name="isatty-loop", period=0.05, seconds=SCENARIO_S)
        wait_alive(p, 0.5)
        r = investigate(str(book), "--pid", str(p.pid), "--window", "2", "--json", "--out", str(tmp_path / "b"))
    assert r.returncode == 1, r.stderr
    rep = json.loads(r.stdout)
    assert rep["nodes"][0]["probes"][0]["hook"] == "uprobe"
    ev = json.loads((tmp_path / "b" / "evidence.json").read_text())["calls"]["ufunc"]
    expected = ev["probe"]["observed_s"] / 0.05
    assert 0.6 * expected <= ev["calls"] <= 1.2 * expected, (ev["calls"], expected)
    # (the counters are read one after the other while the loop goes on)
    assert [x["value"] for x in ev["returns"]] == ["0"] and abs(ev["zero_returns"] - ev["calls"]) <= 2, ev
    (proc,) = ev["processes"]
    assert proc["pid"] == p.pid and proc["comm"] == "isatty-loop"
    assert ev["callers"] == [] and ev["last"]["tid"] == p.pid
    # each CPU keeps its latest 64 calls: ~40 in all, so the first since attach is kept too,
    # and the latest 20 come oldest first
    assert ev["first"] is not None and ev["first"]["tid"] == p.pid, ev["first"]
    ages = [c["ago_s"] for c in ev["recent"]]
    assert ev["first"]["ago_s"] >= ages[0] and ages == sorted(ages, reverse=True) and len(ages) == 20, ages
