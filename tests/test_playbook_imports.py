"""Playbooks reuse nodes from other files: what comes along, where errors point, what is
refused (paths outside the playbook's folder, clashes, nested imports)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import investigate

from investigator.playbook import PlaybookError, load_playbook

FIX = Path(__file__).resolve().parent / "fixtures" / "playbooks"


def _write(tmp: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)


MAIN = """apiVersion: investigator/v1
kind: Playbook
metadata: {{name: main}}
imports:
  - file: {file}
start: [{start}]
"""


def test_imported_nodes_and_the_nodes_they_lead_to() -> None:
    lp = load_playbook(FIX / "uses-import.yaml")
    assert set(lp.spec.nodes) == {"stuck-tasks", "run-queue"}
    assert lp.origin == {"stuck-tasks": "lib/sched.yaml", "run-queue": "lib/sched.yaml"}
    assert "lib/sched.yaml" in lp.imported


def test_errors_in_an_imported_file_point_into_it(tmp_path: Path) -> None:
    _write(tmp_path, {
        "main.yaml": MAIN.format(file="lib/x.yaml", start="a"),
        "lib/x.yaml": "apiVersion: investigator/v1\nkind: NodeLibrary\nmetadata: {name: x}\nnodes:\n"
                      "  a:\n    hypothesis: h\n    probes: [{use: sched.runqlat}]\n"
                      "    conclude:\n      - {when: runqlat.mx_ms > 1.0, verdict: refuted}\n"})
    with pytest.raises(PlaybookError) as ei:
        load_playbook(tmp_path / "main.yaml")
    msgs = [str(d) for d in ei.value.diagnostics]
    assert any(m.startswith(str(tmp_path / "lib/x.yaml") + ":9:") and "runqlat.mx_ms" in m for m in msgs), msgs


@pytest.mark.parametrize("file", ["../outside.yaml", "/etc/passwd", "lib/../../x.yaml"])
def test_imports_outside_the_folder_are_refused(tmp_path: Path, file: str) -> None:
    _write(tmp_path, {"d/main.yaml": MAIN.format(file=file, start="a"), "outside.yaml": "x: 1"})
    with pytest.raises(PlaybookError) as ei:
        load_playbook(tmp_path / "d" / "main.yaml")
    assert any("outside the playbook's folder" in str(d) for d in ei.value.diagnostics)


def test_clash_and_missing_node_and_nested_import(tmp_path: Path) -> None:
    lib = (FIX / "lib" / "sched.yaml").read_text()
    _write(tmp_path, {
        "lib/sched.yaml": lib,
        "lib/nested.yaml": "apiVersion: investigator/v1\nkind: NodeLibrary\nmetadata: {name: n}\n"
                           "imports: [{file: sched.yaml}]\nnodes: {}\n",
        "main.yaml": """apiVersion: investigator/v1
kind: Playbook
metadata: {name: main}
imports:
  - {file: lib/sched.yaml, nodes: [stuck-tasks, nosuch]}
  - {file: lib/nested.yaml}
start: [stuck-tasks]
nodes:
  run-queue:
    hypothesis: a local node of the same name as an imported one
    probes: [{use: sched.runqlat}]
    conclude: [{when: "runqlat.count >= 0", verdict: refuted}]
"""})
    with pytest.raises(PlaybookError) as ei:
        load_playbook(tmp_path / "main.yaml")
    text = "\n".join(map(str, ei.value.diagnostics))
    assert "has no node 'nosuch'" in text
    assert "node 'run-queue' from 'lib/sched.yaml' clashes" in text
    assert "imported files cannot import further" in text


@pytest.mark.bpf
def test_a_bundle_carries_its_imports_for_replay(tmp_path: Path) -> None:
    b = tmp_path / "b"
    p = investigate(str(FIX / "uses-import.yaml"), "--window", "1", "--json", "--out", str(b))
    assert p.returncode in (0, 1), p.stderr
    assert "lib/sched.yaml" in json.loads((b / "imports.json").read_text())
    r = investigate("replay", str(b), "--json")
    assert r.returncode == p.returncode, r.stderr
    assert [n["status"] for n in json.loads(r.stdout)["nodes"]] == \
        [n["status"] for n in json.loads(p.stdout)["nodes"]]
