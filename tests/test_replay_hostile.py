"""`investigate replay` and `investigate test` on bundles from elsewhere: files are read without
following symbolic links, never from FIFOs or devices, within size and nesting limits, checked
for shape; a malformed bundle is one line on stderr and exit 2, never a traceback, never the
content of a file the bundle only points to.  Ends with a fuzz of mutated bundles.

The bundle these start from is a recorded one (playbooks/tests/freeze/rt-hog: a real run's
report and evidence) with the playbook and imports a run of freeze.yaml writes beside them."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, investigate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from investigator import cli
from investigator.evidence import bundle
from investigator.playbook import load_playbook

RECORDED = REPO / "playbooks" / "tests" / "freeze" / "rt-hog"
SECRET = "root:$6$hostilebundle.Xq9$notarealhash:19000:0:99999:7:::"
_LP = load_playbook(REPO / "playbooks" / "freeze.yaml")
BASE: dict[str, bytes] = {
    "report.json": (RECORDED / "report.json").read_bytes(),
    "evidence.json": (RECORDED / "evidence.json").read_bytes(),
    "playbook.yaml": _LP.text.encode(),
    "imports.json": json.dumps(_LP.imported).encode(),
}


def make_bundle(where: Path, files: dict[str, bytes] | None = None) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    for name, data in (files or BASE).items():
        (where / name).write_bytes(data)
    return where


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle")


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A root-only file shaped like a shadow line: as YAML it is a mapping with an unknown key,
    which the loader would quote in its error if it ever read it."""
    f = tmp_path / "shadow"
    f.write_text(SECRET + "\n")
    f.chmod(0o600)
    return f


def refused(p: Any, name: str) -> None:
    """Exit 2, no traceback, one line on stderr that names the file."""
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("investigate: not a readable bundle: "), p.stderr
    assert name in lines[0], lines[0]


def test_the_recorded_bundle_replays(good: Path) -> None:
    """The look-alike every refusal below is measured against: the intact bundle replays."""
    p = investigate("replay", str(good))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "STARVATION" in p.stdout and p.stderr == ""


@pytest.mark.parametrize("name", ["playbook.yaml", "report.json", "evidence.json", "imports.json"])
def test_a_symlink_in_the_bundle_is_never_followed(good: Path, secret: Path, name: str) -> None:
    (good / name).unlink()
    (good / name).symlink_to(secret)
    p = investigate("replay", str(good))
    refused(p, f"{name}: a symbolic link")
    assert "hostilebundle" not in p.stdout + p.stderr
    # a link to the bundle's own intact copy is refused as well: links are not followed at all
    shutil.copy(make_bundle(good.parent / "copy") / name, good / f"real-{name}")
    (good / name).unlink()
    (good / name).symlink_to(f"real-{name}")
    refused(investigate("replay", str(good)), f"{name}: a symbolic link")


def test_a_regular_playbook_is_quoted_in_its_errors(good: Path, secret: Path) -> None:
    """The look-alike: a playbook.yaml that is a regular file is the bundle's own text, and
    its errors may quote it (here: the unknown key the shadow-like line makes)."""
    shutil.copy(secret, good / "playbook.yaml")
    p = investigate("replay", str(good))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "playbook.yaml:1:1:" in p.stderr and "hostilebundle" in p.stderr


def test_an_import_the_bundle_does_not_carry_is_not_read_from_beside_it(good: Path, secret: Path) -> None:
    """Imports come from imports.json only: a file of that name beside the bundle's playbook
    (which the loader would read for a playbook on disk) is not looked at, a link there neither."""
    (good / "imports.json").write_text("{}")
    shutil.copy(secret, good / "interrupts.yaml")
    p = investigate("replay", str(good))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "the bundle does not carry 'interrupts.yaml'" in p.stderr
    assert "hostilebundle" not in p.stdout + p.stderr
    (good / "interrupts.yaml").unlink()
    (good / "interrupts.yaml").symlink_to(secret)
    p = investigate("replay", str(good))
    assert p.returncode == 2 and "import 'interrupts.yaml' is outside the playbook's folder" in p.stderr
    assert "hostilebundle" not in p.stdout + p.stderr


def test_the_bundle_folder_itself(tmp_path: Path, good: Path) -> None:
    (tmp_path / "link").symlink_to(good)
    refused(investigate("replay", str(tmp_path / "link")), "a symbolic link; a bundle is a folder")
    refused(investigate("replay", str(good / "report.json")), "not a folder")
    refused(investigate("replay", str(tmp_path / "nowhere")), "no such folder")


def _nest(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


def _evidence_nested(depth: int) -> bytes:
    ev = json.loads(BASE["evidence.json"])
    ev["cpu-starvation"]["extra"] = json.loads(_nest(depth))
    return json.dumps(ev).encode()


def _report(change: Any) -> bytes:
    rep = json.loads(BASE["report.json"])
    change(rep)
    return json.dumps(rep).encode()


MALFORMED: dict[str, tuple[str, bytes | None, str]] = {
    # case: (file, new content or None to delete, what the one line says)
    "truncated report": ("report.json", BASE["report.json"][:700], "report.json: not JSON"),
    "truncated evidence": ("evidence.json", BASE["evidence.json"][:-2], "evidence.json: not JSON"),
    "empty report": ("report.json", b"", "report.json: not JSON"),
    "100k-deep nest": ("report.json", _nest(100_000), "report.json: nested deeper than 64 levels"),
    "65-deep nest": ("evidence.json", _evidence_nested(63), "evidence.json: nested deeper than 64 levels"),
    "not UTF-8": ("report.json", b"\xff\xfe{}", "report.json: not UTF-8"),
    "playbook not UTF-8": ("playbook.yaml", b"kind: \xff\n", "playbook.yaml: not UTF-8"),
    "missing report": ("report.json", None, "report.json: missing"),
    "missing evidence": ("evidence.json", None, "evidence.json: missing"),
    "missing playbook": ("playbook.yaml", None, "playbook.yaml: missing"),
    "report a list": ("report.json", b"[]", "a report is a JSON object"),
    "evidence a string": ("evidence.json", b'"x"', "evidence is a JSON object"),
    "node evidence a list": ("evidence.json", b'{"cpu-starvation": []}', "'cpu-starvation' is not an object"),
    "no nodes": ("report.json", _report(lambda r: r.pop("nodes")), "no 'nodes'"),
    "no kernel": ("report.json", _report(lambda r: r.pop("kernel")), "no 'kernel'"),
    "duration a string": ("report.json", _report(lambda r: r.update(duration_s="3.3")), "'duration_s' is not a number"),
    "node without id": ("report.json", _report(lambda r: r["nodes"][1].pop("id")), "nodes[1].id is missing"),
    "node status a number": ("report.json", _report(lambda r: r["nodes"][0].update(status=1)),
                             "nodes[0].status is missing or not a string"),
    "probes wrong": ("report.json", _report(lambda r: r["nodes"][0].update(probes=[1])), "nodes[0].probes"),
    "errors wrong": ("report.json", _report(lambda r: r["nodes"][0].update(errors="x")), "nodes[0].errors"),
    "vars a list": ("report.json", _report(lambda r: r.update(vars=[1])), "'vars' is not an object"),
    "imports not texts": ("imports.json", b'{"interrupts.yaml": 1}', "imports are a JSON object"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_bundle_is_one_line_and_exit_2(good: Path, case: str) -> None:
    name, data, says = MALFORMED[case]
    if data is None:
        (good / name).unlink()
    else:
        (good / name).write_bytes(data)
    refused(investigate("replay", str(good)), says)


def test_a_fixture_replays_with_a_playbook_given() -> None:
    """A recorded fixture has no playbook.yaml: with --playbook it is not needed, nor read."""
    p = investigate("replay", str(RECORDED), "--playbook", "playbooks/freeze.yaml")
    assert p.returncode == 1 and "STARVATION" in p.stdout, p.stderr
    refused(investigate("replay", str(RECORDED)), "playbook.yaml: missing")


def test_a_bundles_task_cgroups_are_read_as_data_bounded(tmp_path: Path) -> None:
    """A node's task_cgroups from elsewhere: keys that are no TID and values that are no
    string are left out, at most 64 are read, and a path is text the report escapes."""
    rep = json.loads(BASE["report.json"])
    (node,) = [n for n in rep["nodes"] if n["id"] == "cpu-starvation"]
    (v,) = [v for v in rep["verdicts"] if v["node"] == "cpu-starvation"]
    victim = v["tasks"][0]["tid"]
    node["task_cgroups"] = {str(victim): "/system.slice/\x1b[31mevil.service", "x": "/a", "-1": "/b",
                            "12": ["/c"], **{str(100000 + i): "/d" for i in range(500)}}
    where = make_bundle(tmp_path / "b", {**BASE, "report.json": json.dumps(rep).encode()})
    rc, out = _replay_in_process(where)
    assert rc == 1 and "Traceback" not in out, out
    assert "\x1b" not in out and "evil.service" in out, out
    p = investigate("replay", str(where), "--json")
    (again,) = [x for x in json.loads(p.stdout)["verdicts"] if x["node"] == "cpu-starvation"]
    t = next(t for t in again["tasks"] if t["tid"] == victim)
    assert t["cgroup"] == "/system.slice/\x1b[31mevil.service" and t["unit"] == "\x1b[31mevil.service"


def test_nesting_within_the_limit_is_accepted(good: Path) -> None:
    (good / "evidence.json").write_bytes(_evidence_nested(60))
    p = investigate("replay", str(good))
    assert p.returncode == 1 and "STARVATION" in p.stdout, p.stderr


@pytest.mark.parametrize("kind", ["fifo", "chardev", "socket", "folder", "huge"])
def test_files_that_are_not_plain_or_too_big_are_refused_unread(good: Path, kind: str) -> None:
    f = good / "evidence.json"
    f.unlink()
    if kind == "fifo":
        os.mkfifo(f)                         # opening it for reading would wait for a writer
        says = "a FIFO"
    elif kind == "chardev":
        os.mknod(f, stat.S_IFCHR | 0o600, os.makedev(1, 5))    # /dev/zero: endless if read
        says = "a character device"
    elif kind == "socket":
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(f))
        s.close()
        says = "a socket"
    elif kind == "folder":
        f.mkdir()
        says = "a folder"
    else:
        with open(f, "wb") as h:             # sparse: takes no space
            h.truncate(bundle.READ_LIMITS["evidence.json"] + 1)
        says = "67108865 bytes, larger than the 67108864 accepted"
    p = investigate("replay", str(good), timeout=30)
    refused(p, f"evidence.json: {says}")


def test_investigate_test_reads_fixtures_with_the_same_reader(tmp_path: Path, secret: Path) -> None:
    fixtures = tmp_path / "fixtures"
    shutil.copytree(RECORDED, fixtures / "good")
    shutil.copytree(RECORDED, fixtures / "linked")
    (fixtures / "linked" / "evidence.json").unlink()
    (fixtures / "linked" / "evidence.json").symlink_to(secret)
    shutil.copytree(RECORDED, fixtures / "nested")
    (fixtures / "nested" / "report.json").write_bytes(_nest(100_000))
    shutil.copytree(RECORDED, fixtures / "bad-expect")
    (fixtures / "bad-expect" / "expect.yaml").write_text("- just\n- a list\n")
    p = investigate("test", "playbooks/freeze.yaml", "--fixtures", str(fixtures))
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stdout + p.stderr
    assert "PASS  good" in p.stdout
    assert "evidence.json: a symbolic link" in p.stdout and "hostilebundle" not in p.stdout
    assert "report.json: nested deeper than 64 levels" in p.stdout
    assert "expect.yaml: expectations are a mapping" in p.stdout
    assert "1 of 4 fixtures passed" in p.stdout
    # recording from a bundle whose evidence is a link: refused, nothing recorded
    b = make_bundle(tmp_path / "bundle")
    (b / "evidence.json").unlink()
    (b / "evidence.json").symlink_to(secret)
    p = investigate("test", "playbooks/freeze.yaml", "--fixtures", str(fixtures), "--record", str(b),
                    "--name", "new")
    assert p.returncode == 2 and "evidence.json: a symbolic link" in p.stderr
    assert not (fixtures / "new").exists()


# ---------------------------------------------------------------- fuzz

def _paths(d: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(d, dict):
        for k, v in d.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d[:4]):
            out += _paths(v, prefix + (i,))
    return out


DOCS = {name: json.loads(BASE[name]) for name in ("report.json", "evidence.json", "imports.json")}
PATHS = [(name, p) for name, doc in DOCS.items() for p in _paths(doc)]
VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                                st.text(max_size=12), st.just("\x1b[31m[/b]")),
                      lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=6), c, max_size=3)),
                      max_leaves=8)


def _mutate(doc: Any, path: tuple[Any, ...], op: str, value: Any) -> Any:
    """``doc`` with the value at ``path`` replaced by ``value``, deleted, or nested in lists
    (``value`` levels when it is a small integer, else 70: past the limit)."""
    doc = copy.deepcopy(doc)
    holder: Any = [doc]
    cur, key = holder, 0
    for p in path:
        cur, key = cur[key], p
    if op == "delete":
        del cur[key]
    elif op == "nest":
        inner = cur[key]
        for _ in range(value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 200 else 70):
            inner = [inner]
        cur[key] = inner
    else:
        cur[key] = value
    return holder[0]


def _replay_in_process(where: Path) -> tuple[int, str]:
    """cli.main as `python -m investigator replay` runs it: an exception escaping it is the
    traceback a user would see."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["replay", str(where)])
    return rc, out.getvalue() + err.getvalue()


FUZZ_COUNT: dict[str, int] = {}


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 100)), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from(PATHS), st.sampled_from(["set", "delete", "nest"]), VALUES)
def test_fuzz_mutated_json_never_tracebacks(target: tuple[str, tuple[Any, ...]], op: str, value: Any) -> None:
    name, path = target
    if op == "delete" and not path:
        return
    files = dict(BASE)
    files[name] = json.dumps(_mutate(DOCS[name], path, op, value)).encode()
    with tempfile.TemporaryDirectory() as d:
        rc, shown = _replay_in_process(make_bundle(Path(d) / "b", files))
    assert rc in (0, 1, 2), shown
    assert "\x1b" not in shown
    FUZZ_COUNT[f"json-{rc}"] = FUZZ_COUNT.get(f"json-{rc}", 0) + 1


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 100)), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(BASE)),
       st.sampled_from(["truncate", "flip", "symlink", "fifo", "folder", "huge", "delete", "garbage"]),
       st.integers(0, 1 << 20), st.binary(max_size=40))
def test_fuzz_damaged_files_never_traceback(name: str, op: str, pos: int, junk: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        b = make_bundle(Path(d) / "b")
        f, data = b / name, BASE[name]
        secret = Path(d) / "shadow"
        secret.write_text(SECRET)
        if op != "flip":
            f.unlink()
        if op == "truncate":
            f.write_bytes(data[:pos % (len(data) + 1)])
        elif op == "flip":
            i = pos % len(data)
            f.write_bytes(data[:i] + junk + data[i + len(junk):])
        elif op == "symlink":
            f.symlink_to(secret if pos % 2 else Path(d) / "b" / "report.json")
        elif op == "fifo":
            os.mkfifo(f)
        elif op == "folder":
            f.mkdir()
        elif op == "huge":
            with open(f, "wb") as h:
                h.truncate(bundle.READ_LIMITS[name] + 1 + pos)
        elif op == "garbage":
            f.write_bytes(junk)
        rc, shown = _replay_in_process(b)
    assert rc in (0, 1, 2), shown
    assert "hostilebundle" not in shown and "\x1b" not in shown
    if op in ("symlink", "fifo", "folder", "huge", "delete") and not (op == "delete" and name == "imports.json"):
        assert rc == 2 and len(shown.splitlines()) == 1, shown      # the file refused, one line
    FUZZ_COUNT[f"file-{rc}"] = FUZZ_COUNT.get(f"file-{rc}", 0) + 1


def test_fuzz_reached_every_outcome() -> None:
    """Run after the fuzzers (file order): the mutations left some bundles replayable (exit 0
    or 1) and made others refused (2) -- a fuzz that only ever broke the reader proves little."""
    if not FUZZ_COUNT:
        pytest.skip("the fuzzers did not run in this session")
    print("\nbundle fuzz outcomes (kind-exit code: bundles):", dict(sorted(FUZZ_COUNT.items())))
    for kind in {k.split("-")[0] for k in FUZZ_COUNT}:
        assert FUZZ_COUNT.get(f"{kind}-2") and FUZZ_COUNT.get(f"{kind}-0", 0) + FUZZ_COUNT.get(f"{kind}-1", 0)


def test_a_bundle_recorded_under_former_aliases_replays_the_same(tmp_path: Path) -> None:
    """Evidence keyed `runq`, `wq`, `pools` (the names before aliases were the probes' file
    stems), with the playbook of then: replayed with its own playbook and with today's, the
    same verdicts as the bundle recorded under today's names."""
    import re
    old = {"runqlat": "runq", "workqueue": "wq", "wqpools": "pools"}
    pat = re.compile(r"(?<![\w.])(runqlat|workqueue|wqpools)(?=\.[a-z_])(?!\.(latency|pools)\b)")

    def back(text: str) -> str:
        return pat.sub(lambda m: old[m.group(1)], text)

    ev = {n: {old.get(k, k): v for k, v in e.items()} for n, e in json.loads(BASE["evidence.json"]).items()}
    report = re.sub(r'"as": "(runqlat|workqueue|wqpools)"', lambda m: f'"as": "{old[m.group(1)]}"',
                    BASE["report.json"].decode())
    then = make_bundle(tmp_path / "then", {
        "report.json": report.encode(), "evidence.json": json.dumps(ev).encode(),
        "playbook.yaml": back(_LP.text).encode(),
        "imports.json": json.dumps({k: back(v) for k, v in _LP.imported.items()}).encode()})
    assert "runq.starved" in (then / "playbook.yaml").read_text() + (then / "imports.json").read_text()
    now = investigate("replay", str(make_bundle(tmp_path / "now")), "--json")
    assert now.returncode == 1, now.stderr
    want = [(v["node"], v["verdict"], v["tasks"]) for v in json.loads(now.stdout)["verdicts"]]
    assert want and any(v == "starvation" for _, v, _ in want)
    for how in ([], ["--playbook", str(REPO / "playbooks" / "freeze.yaml")]):
        p = investigate("replay", str(then), "--json", *how)
        assert p.returncode == 1, p.stdout + p.stderr
        assert [(v["node"], v["verdict"], v["tasks"]) for v in json.loads(p.stdout)["verdicts"]] == want, how
