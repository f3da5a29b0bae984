"""A machine that cannot do everything: each missing piece is a clear message saying what
is missing and what still works, never a traceback; a node that cannot observe says so and
the run goes on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, investigate

@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_without_bpf_capabilities_it_refuses_clearly() -> None:
    """Root whose capabilities were dropped (a container, a restricted sudo): a clear refusal
    naming what is missing, exit 3, no traceback -- and validation still works."""
    drop = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]
    p = subprocess.run([*drop, sys.executable, "-m", "investigator", "playbooks/freeze.yaml", "--window", "1"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "CAP_BPF" in p.stderr and "Traceback" not in p.stderr and "'validate'" in p.stderr
    p = subprocess.run([*drop, sys.executable, "-m", "investigator", "validate", "playbooks/freeze.yaml"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([*drop, sys.executable, "-m", "investigator", "doctor"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 3 and "NO  capabilities" in p.stdout and "Traceback" not in p.stdout + p.stderr


def test_a_user_without_root_is_told_what_still_works(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The refusal for an ordinary user (uid and capabilities as an unprivileged user has them;
    the interpreter of this suite lives under /root, out of such a user's reach)."""
    from investigator import cli
    from investigator.system import doctor
    monkeypatch.setattr(doctor, "effective_caps", lambda: 0)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    rc = cli.main(["playbooks/freeze.yaml"]) if Path.cwd() == REPO else cli.main([str(REPO / "playbooks/freeze.yaml")])
    err = capsys.readouterr().err
    assert rc == 3 and "uid 1000" in err and "sudo" in err


@pytest.mark.bpf
def test_no_kernel_btf_makes_nodes_unobservable_with_the_reason(tmp_path: Path) -> None:
    """/sys/kernel/btf hidden in a private mount namespace: the kernel looks BTF-less to the
    tool.  Every node says why it cannot observe; with --btf FILE the raw_tp fallbacks work."""
    btf_copy = tmp_path / "vmlinux.btf"
    shutil.copy("/sys/kernel/btf/vmlinux", btf_copy)
    cmd = (f"mount -t tmpfs none /sys/kernel/btf && cd {REPO} && "
           f"{sys.executable} -m investigator playbooks/freeze.yaml --window 1 --json --out {tmp_path}/a; "
           f"echo \"rc=$?\" >&2; "
           f"{sys.executable} -m investigator playbooks/freeze.yaml --window 1 --json --out {tmp_path}/b "
           f"--btf {btf_copy}; echo \"rc=$?\" >&2")
    p = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in p.stderr
    assert p.stderr.count("rc=") == 2 and "rc=3" in p.stderr.split("\n")[-3:][0] + p.stderr
    a = json.loads((tmp_path / "a" / "report.json").read_text())
    # every node that loads BPF says why it cannot; the first look could not rule anything out,
    # so its routes were taken, and cpu-throttled and kernel-stall, which read only cgroup files and the kernel log, observe
    # holder-state, reached by the first look's chain route, has no chain to be aimed at: skipped
    aimed = [n for n in a["nodes"] if n["id"] in ("holder-state", "softirq-whose-work")]
    assert all(n["status"] == "skipped" and "reached no finding" in " ".join(n["errors"]) for n in aimed), aimed
    bpf = [n for n in a["nodes"] if n["id"] not in ("cpu-throttled", "holder-state", "kernel-stall", "softirq-whose-work")]
    assert bpf and all(n["status"] == "unobservable" for n in bpf), [(n["id"], n["status"]) for n in a["nodes"]]
    assert all("BTF" in " ".join(n["errors"]) for n in bpf)
    assert [n["status"] for n in a["nodes"] if n["id"] == "cpu-throttled"] in ([], ["refuted"], ["confirmed"])
    b = json.loads((tmp_path / "b" / "report.json").read_text())
    st = {n["id"]: n for n in b["nodes"]}
    assert st["blocked-tasks"]["status"] == "unobservable"        # iterators need the kernel's BTF
    assert st["cpu-starvation"]["status"] in ("refuted", "inconclusive", "confirmed")
    assert st["cpu-starvation"]["probes"][0]["hook"] == "raw_tp"   # tp_btf refused, raw_tp used
    # sched.runnable (an iterator) is optional there: the node observes without it, and says so
    runnable = next(pr for pr in st["cpu-starvation"]["probes"] if pr["probe"] == "sched.runnable")
    assert runnable["optional"] and runnable["hook"] is None and "BTF" in runnable["error"], runnable
    assert any(e.startswith("optional ") and "runnable were skipped" in e for e in st["cpu-starvation"]["errors"])
    assert any("tp_btf" == a["hook"] for a in st["cpu-starvation"]["probes"][0]["attempts"])


@pytest.mark.bpf
def test_a_missing_tracepoint_degrades_one_node_not_the_run(tmp_path: Path) -> None:
    """An older kernel without a tracepoint: a probe library in which one probe targets a
    tracepoint this kernel lacks.  Its node is unobservable with the reason; the others run."""
    lib = tmp_path / "probes"
    shutil.copytree(REPO / "probes", lib, ignore=shutil.ignore_patterns("*.c", "*.h", "*.sh"))
    text = (lib / "runqlat.yaml").read_text()
    text = text.replace("name: sched.runqlat", "name: sched.runqlat-old").replace("alias: runqlat\n", "alias: rq\n")
    text = text.replace("sched_switch}", "sched_switch_on_a_kernel_without_it}")
    (lib / "runqlat-old.yaml").write_text(text)
    book = tmp_path / "p.yaml"
    book.write_text("""apiVersion: investigator/v1
kind: Playbook
metadata: {name: degrade}
start: [old, blocked]
nodes:
  old:
    hypothesis: needs a tracepoint this kernel lacks
    probes: [{use: sched.runqlat-old}]
    conclude: [{when: "rq.count >= 0", verdict: refuted}]
  blocked:
    hypothesis: tasks are stuck
    probes: [{use: sched.blocked}]
    conclude: [{when: "blocked.stuck_count == 0", verdict: refuted}]
""")
    env = {**os.environ, "INVESTIGATOR_PROBES_DIR": str(lib)}
    p = subprocess.run([sys.executable, "-m", "investigator", str(book), "--window", "1", "--json",
                        "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode in (0, 1), p.stderr
    st = {n["id"]: n for n in json.loads(p.stdout)["nodes"]}
    assert st["old"]["status"] == "unobservable"
    assert "sched_switch_on_a_kernel_without_it" in " ".join(st["old"]["errors"])
    assert st["blocked"]["status"] == "refuted"


def test_doctor_never_tracebacks() -> None:
    p = investigate("doctor")
    assert "Traceback" not in p.stdout + p.stderr


def _custom_probe_playbook(tmp_path: Path) -> Path:
    (tmp_path / "probes").mkdir()
    shutil.copy(REPO / "probes" / "runqlat.bpf.o", tmp_path / "probes" / "mine.bpf.o")
    text = (REPO / "probes" / "runqlat.yaml").read_text()
    text = text.replace("name: sched.runqlat", "name: local/mine").replace("object: runqlat.bpf.o",
                                                                           "object: mine.bpf.o")
    (tmp_path / "probes" / "mine.yaml").write_text(text)
    book = tmp_path / "custom.yaml"
    book.write_text("""apiVersion: investigator/v1
kind: Playbook
metadata: {name: custom}
start: [mine]
nodes:
  mine:
    hypothesis: a team's own probe
    probes: [{use: local/mine}]
    conclude: [{when: "runqlat.count >= 0", verdict: refuted}]
""")
    return book


def test_custom_bpf_objects_need_an_explicit_flag(tmp_path: Path) -> None:
    book = _custom_probe_playbook(tmp_path)
    p = investigate(str(book), "--window", "1")
    assert p.returncode == 2 and "--allow-custom-probes" in p.stderr and "nothing was attached" in p.stderr
    p = investigate("validate", str(book))
    assert p.returncode == 2
    p = investigate("validate", "--allow-custom-probes", str(book))
    assert p.returncode == 0, p.stderr


@pytest.mark.bpf
def test_custom_probe_runs_with_the_flag(tmp_path: Path) -> None:
    book = _custom_probe_playbook(tmp_path)
    p = investigate(str(book), "--window", "1", "--allow-custom-probes", "--json", "--out", str(tmp_path / "b"))
    assert p.returncode == 0, p.stderr
    node = json.loads(p.stdout)["nodes"][0]
    assert node["status"] == "refuted" and node["probes"][0]["hook"] == "tp_btf"


def test_custom_probe_outside_the_folder_is_refused(tmp_path: Path) -> None:
    book = _custom_probe_playbook(tmp_path)
    book.write_text(book.read_text().replace("local/mine", "local/../../etc/x"))
    p = investigate("validate", "--allow-custom-probes", str(book))
    assert p.returncode == 2 and "expected local/NAME" in p.stderr


def test_a_bundle_folder_that_cannot_be_created_falls_back_to_tmp() -> None:
    """A read-only working directory (or --out somewhere unwritable) must not cost the
    investigation: the bundle goes to a fresh folder under the temp dir, and it says so."""
    p = investigate("playbooks/interrupts.yaml", "--window", "1", "--quiet", "--out", "/proc/1/no-bundle-here")
    assert p.returncode in (0, 1), p.stderr
    assert "Traceback" not in p.stderr
    line = next(ln for ln in p.stderr.splitlines()
                if ln.startswith("investigate: note: the bundle could not be written to /proc/1/no-bundle-here")
                and "the bundle folder could not be made" in ln)
    where = Path(line.rsplit("the bundle goes to ", 1)[1])
    try:
        assert (where / "report.json").exists() and where.stat().st_mode & 0o777 == 0o700
    finally:
        shutil.rmtree(where, ignore_errors=True)
