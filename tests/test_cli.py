"""The command line as a user meets it: validation errors as file:line:col with a
non-zero exit and no traceback, the JSON contract, graph/schema/probes/doctor, replay."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, investigate

BROKEN = "tests/fixtures/playbooks/broken.yaml"


def test_broken_playbook_lists_every_error_located() -> None:
    p = investigate("validate", BROKEN)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith(BROKEN + ":")]
    expected = {
        (5, 25): "unknown node 'nowhere'",
        (11, 26): "expected a duration",
        (11, 41): "has no parameter 'colour'",
        (12, 23): "expected a duration",
        (14, 15): "no evidence field 'runqlat.worst.wiat_ms' (did you mean 'wait_ms'?)",
        (15, 18): "got string 'starvaton' (did you mean 'starvation'?)",
        (16, 31): "expression does not parse",
        (18, 3): "node 'orphan' is unreachable from start",
    }
    found = {}
    for ln in lines:
        _, line, col, msg = ln.split(":", 3)
        found[(int(line), int(col))] = msg
    for pos, text in expected.items():
        assert pos in found and text in found[pos], (pos, text, lines)


def test_running_a_broken_playbook_attaches_nothing() -> None:
    p = investigate(BROKEN)
    assert p.returncode == 2
    assert "nothing was attached" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("text,msg", [
    ("a: [1,\n", "1:1: YAML syntax"),  # located at the end of input on line 2 or 1
    ("- 1\n- 2\n", "a playbook is a mapping"),
    ("\0\0binary", "binary data"),
    ("", "empty document"),
])
def test_unreadable_playbooks_are_clean_errors(tmp_path: Path, text: str, msg: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_bytes(text.encode())
    p = investigate("validate", str(f))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert msg.split(":")[-1].strip() in p.stderr


def test_missing_file_is_a_clean_error() -> None:
    p = investigate("validate", "no/such/playbook.yaml")
    assert p.returncode == 2 and "cannot read" in p.stderr and "Traceback" not in p.stderr


def test_shipped_playbooks_validate() -> None:
    books = sorted(str(p.relative_to(REPO)) for p in (REPO / "playbooks").glob("*.yaml"))
    p = investigate("validate", "--allow-custom-probes", *books)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("fmt,marker", [("mermaid", "flowchart TD"), ("dot", "digraph playbook"),
                                        ("text", "cpu-starvation:")])
def test_graph_renders(fmt: str, marker: str) -> None:
    p = investigate("graph", "playbooks/freeze.yaml", "--format", fmt)
    assert p.returncode == 0 and marker in p.stdout and "blocked-tasks" in p.stdout


def test_schema_is_json_schema_of_the_playbook() -> None:
    p = investigate("schema")
    s = json.loads(p.stdout)
    assert s["$ref"] == "#/$defs/Playbook"
    node = s["$defs"]["Node"]
    assert {"hypothesis", "probes", "conclude"} <= set(node["required"])
    assert node["additionalProperties"] is False


def test_probes_lists_the_library() -> None:
    p = investigate("probes")
    assert "sched.runqlat" in p.stdout and "sched.blocked" in p.stdout
    p = investigate("probes", "sched.runqlat")
    assert "runqlat.worst.culprit.tid" in p.stdout and "tp_btf -> raw_tp" in p.stdout


@pytest.mark.bpf
def test_doctor_reports_hooks() -> None:
    p = investigate("doctor")
    assert p.returncode == 0, p.stdout
    for word in ("BTF", "hook tp_btf", "hook kprobe", "lockdown", "libbpf"):
        assert word in p.stdout


DOCTOR_BOOK = """apiVersion: investigator/v1
kind: Playbook
metadata: {{name: doctor-test, description: what doctor says of each node}}
start: {start}
nodes:
  calls:
    hypothesis: openat is called
    probes:
      - use: kernel.func
        with: {{function: do_sys_openat2}}
    conclude:
      - {{when: func.calls > 0, verdict: contention}}
  waits:
    hypothesis: tasks wait for a CPU
    probes:
      - use: sched.runqlat
      - use: kernel.func
        with: {{function: do_sys_openat2}}
        optional: true
    conclude:
      - {{when: runqlat.worst.wait_ms > 100.0, verdict: starvation}}
"""


@pytest.mark.bpf
@pytest.mark.second_kernel
@pytest.mark.kernel_510
def test_doctor_says_what_each_node_of_a_playbook_could_observe(tmp_path: Path) -> None:
    """doctor PLAYBOOK attaches each node's probes for real (and detaches them): a node
    whose probe this kernel refuses says why, one that loses only an optional probe can
    still observe, and a playbook none of whose start nodes could observe fails."""
    from investigator.bpf import features
    function_hook = features.hook("fentry", "do_sys_openat2") or features.hook("kprobe")
    both = tmp_path / "both.yaml"
    both.write_text(DOCTOR_BOOK.format(start="[calls, waits]"))
    p = investigate("doctor", str(both))
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stdout.splitlines()
    assert p.returncode == 0, p.stdout + p.stderr
    node = {ln.split()[1]: ln.split()[0] for ln in lines if ln[:3] in ("ok ", "ok-", "NO ") and
            ln.split()[1] in ("calls", "waits")}
    runqlat = next(ln for ln in lines if ln.strip().startswith("sched.runqlat"))
    assert "via tp_btf" in runqlat or "via raw_tp" in runqlat, runqlat
    func = [ln.strip() for ln in lines if ln.strip().startswith("kernel.func")]
    assert len(func) == 2, lines
    if function_hook:
        assert node == {"calls": "ok", "waits": "ok"}, lines
        assert all(" via fentry" in f or " via kprobe" in f for f in func), func
        assert f"{both}: 2 of 2 nodes can observe here" in lines, lines
    else:
        # this machine: fentry refused by lockdown, no CONFIG_KPROBES -- each said
        assert node == {"calls": "NO", "waits": "ok-"}, lines
        assert all("no: fentry: " in f and "kprobe: " in f for f in func), func
        assert func[1].endswith("(optional)") and "(without kernel.func)" in p.stdout
        assert f"{both}: 1 of 2 nodes can observe here" in lines, lines
        only = tmp_path / "only.yaml"
        only.write_text(DOCTOR_BOOK.format(start="[calls]"))
        q = investigate("doctor", str(only))
        assert q.returncode == 3 and "Traceback" not in q.stderr, q.stdout + q.stderr


@pytest.mark.bpf
def test_doctor_on_the_flagship_lists_every_node() -> None:
    from investigator.playbook import load_playbook
    nodes = load_playbook(REPO / "playbooks/freeze.yaml", to_run=False).spec.nodes
    p = investigate("doctor", "playbooks/freeze.yaml")
    assert p.returncode == 0, p.stdout + p.stderr
    listed = {ln.split()[1] for ln in p.stdout.splitlines() if ln[:3] in ("ok ", "ok-", "NO ")}
    assert set(nodes) <= listed, (sorted(nodes), p.stdout)
    assert f"playbooks/freeze.yaml: {len(nodes)} of {len(nodes)} nodes can observe here" in p.stdout


@pytest.mark.bpf
def test_json_report_contract_and_replay(tmp_path: Path) -> None:
    b = tmp_path / "bundle"
    p = investigate("playbooks/freeze.yaml", "--window", "1", "--json", "--out", str(b))
    assert p.returncode in (0, 1), p.stderr
    rep = json.loads(p.stdout)          # stdout is the JSON document and nothing else
    assert {"playbook", "complete", "started_at", "duration_s", "kernel", "nodes", "verdicts"} <= set(rep)
    assert rep["playbook"] == "freeze" and rep["complete"] is True
    assert isinstance(rep["duration_s"], float)
    for n in rep["nodes"]:
        assert {"id", "status", "verdict"} <= set(n)
        assert all(pr["hook"] in ("tp_btf", "iter", "procfs") for pr in n["probes"])
    for v in rep["verdicts"]:
        assert {"verdict", "node", "summary", "tasks", "locks", "cpus", "evidence"} <= set(v)
    assert sorted(f.name for f in b.iterdir()) == sorted(["report.json", "report.md", "report.html",
                                                           "evidence.json", "events.jsonl", "playbook.yaml",
                                                           "imports.json"])
    assert oct(b.stat().st_mode & 0o777) == "0o700"
    events = [json.loads(line)["event"] for line in (b / "events.jsonl").read_text().splitlines()]
    for e in ("run_started", "node_started", "probe_attached", "window_closed", "node_concluded", "run_finished"):
        assert e in events
    r = investigate("replay", str(b), "--json")
    again = json.loads(r.stdout)
    assert again["replayed"] is True
    assert [(n["id"], n["status"], n["verdict"]) for n in again["nodes"]] == \
        [(n["id"], n["status"], n["verdict"]) for n in rep["nodes"]]
    assert again["verdicts"] == rep["verdicts"]


@pytest.mark.bpf
def test_replay_with_an_edited_playbook_changes_the_verdict(tmp_path: Path) -> None:
    b = tmp_path / "bundle"
    investigate("playbooks/starvation.yaml", "--window", "1", "--json", "--out", str(b))
    # starvation.yaml takes cpu-starvation from freeze.yaml: the edit is there, beside it
    edited = tmp_path / "edited.yaml"
    shutil.copy(REPO / "playbooks/starvation.yaml", edited)
    for imported in ("interrupts.yaml", "memory.yaml", "io.yaml"):     # what both import
        shutil.copy(REPO / "playbooks" / imported, tmp_path)
    (tmp_path / "freeze.yaml").write_text((REPO / "playbooks/freeze.yaml").read_text().replace(
        "runqlat.starved.wait_ms >= 100.0 && runqlat.starved.culprit.tid != 0", "runqlat.max_ms >= 0.0").replace(
        "about: runqlat.starved", "about: runqlat.worst"))
    r = investigate("replay", str(b), "--playbook", str(edited), "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    assert [v["verdict"] for v in json.loads(r.stdout)["verdicts"]].count("starvation") == 1


def test_playbook_fixtures_pass_and_catch_a_regression(tmp_path: Path) -> None:
    p = investigate("test", "playbooks/freeze.yaml")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "PASS  rt-hog" in p.stdout and "PASS  vfork-d-state" in p.stdout and "PASS  healthy-busy" in p.stdout
    # the same fixtures against a playbook whose starvation threshold went wrong
    edited = tmp_path / "freeze.yaml"
    for imported in ("interrupts.yaml", "memory.yaml", "io.yaml"):     # the files freeze.yaml imports from
        shutil.copy(REPO / "playbooks" / imported, tmp_path)
    edited.write_text((REPO / "playbooks/freeze.yaml").read_text().replace(
        "runqlat.starved.wait_ms >= 100.0", "runqlat.starved.wait_ms >= 2000.0"))
    p = investigate("test", str(edited), "--fixtures", str(REPO / "playbooks/tests/freeze"))
    assert p.returncode == 1
    assert "FAIL  rt-hog" in p.stdout and "PASS  healthy-busy" in p.stdout


def test_recording_a_fixture_from_a_bundle(tmp_path: Path) -> None:
    src = REPO / "playbooks/tests/freeze/rt-hog"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for f in ("report.json", "evidence.json"):
        (bundle / f).write_text((src / f).read_text())
    (bundle / "playbook.yaml").write_text((REPO / "playbooks/freeze.yaml").read_text())
    (bundle / "imports.json").write_text(json.dumps(
        {f: (REPO / "playbooks" / f).read_text() for f in ("interrupts.yaml", "memory.yaml", "io.yaml")}))
    fx = tmp_path / "fx"
    p = investigate("test", "playbooks/freeze.yaml", "--fixtures", str(fx), "--record", str(bundle),
                    "--name", "again")
    assert p.returncode == 0, p.stderr
    p = investigate("test", "playbooks/freeze.yaml", "--fixtures", str(fx))
    assert p.returncode == 0 and "PASS  again" in p.stdout


def test_new_scaffolds_a_playbook_that_validates_and_passes_its_fixture(tmp_path: Path) -> None:
    p = investigate("new", "disk-stall", "--dir", str(tmp_path))
    assert p.returncode == 0, p.stderr
    book = tmp_path / "disk-stall.yaml"
    assert investigate("validate", str(book)).returncode == 0
    t = investigate("test", str(book))
    assert t.returncode == 0 and "PASS  quiet-machine" in t.stdout
    again = investigate("new", "disk-stall", "--dir", str(tmp_path))
    assert again.returncode == 2 and "exists already" in again.stderr
    assert investigate("new", "Bad Name!", "--dir", str(tmp_path)).returncode == 2


@pytest.mark.parametrize("name", ["../../../../tmp/x/", "/etc/cron.d/x", ".hidden", "a/b", "", "x" * 65, "sp ace",
                                  "new\nline"])
def test_playbook_name_must_be_a_short_name(tmp_path: Path, name: str) -> None:
    """metadata.name names the bundle folder: never a path, never hidden, never long."""
    book = tmp_path / "p.yaml"
    book.write_text(json.dumps({"apiVersion": "investigator/v1", "kind": "Playbook", "metadata": {"name": name},
                                "start": ["a"], "nodes": {"a": {
                                    "hypothesis": "h", "probes": [{"use": "sched.runqlat"}],
                                    "observe": {"window": "1s"},
                                    "conclude": [{"when": "runqlat.count >= 0", "verdict": "refuted"}]}}}))
    p = investigate("validate", str(book))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"{book}:1:" in p.stderr and "is not a short name" in p.stderr, p.stderr
    ok = book.read_text().replace(json.dumps(name), '"ok-name_1.2"')
    book.write_text(ok)
    assert investigate("validate", str(book)).returncode == 0
