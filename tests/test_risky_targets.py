"""Function targets known to be risky to patch (investigator/probes/risky.py): the table,
globs against it, bpftrace's probe headers, and their refusal below the floor -- for
kernel.func's `function`, a library probe's fixed hooks and a bpftrace program -- with the
running kernel's release standing in for another one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import investigate

from investigator.engine.run import RunOptions, run_playbook
from investigator.playbook import load_playbook
from investigator.probes import risky
from investigator.probes.bpftrace import BpftraceInstance
from investigator.probes.instance import ProbeUnavailable
from investigator.probes.manifest import bpftrace_manifest, registry

OLD, NEW = "6.1.0-57-amd64", "6.12.117+deb12-amd64"


@pytest.mark.parametrize("target", ["mutex_lock", "mutex_lock_killable", "mutex_lock_interruptible",
                                    "mutex_trylock", "mutex_unlock", "mutex_*", "mutex_lo?k", "*",
                                    "*_unlock", "*lock*", "m*x_t*"])
def test_risky_names_and_globs(target: str) -> None:
    assert risky.risky(target) is not None
    assert "needs Linux 6.6 or later" in (risky.refusal(target, OLD) or "")
    assert risky.refusal(target, NEW) is None and risky.refusal(target, "6.6.0") is None


@pytest.mark.parametrize("target", ["rt_mutex_lock", "ww_mutex_lock", "mutex_is_locked", "__mutex_unlock_slowpath",
                                    "do_sys_openat2", "ww_mutex_*", "mutex_unlock_x", "vfs_*", "spin_lock*"])
def test_look_alikes_are_not_risky(target: str) -> None:
    assert risky.risky(target) is None and risky.refusal(target, OLD) is None


def test_globs_intersect_both_ways() -> None:
    assert risky.globs_intersect("a*c", "ab*") and risky.globs_intersect("*x", "y*")
    assert not risky.globs_intersect("a*b", "a*c") and not risky.globs_intersect("ab", "a")
    assert risky.globs_intersect("a?c", "abc") and not risky.globs_intersect("a?c", "abbc")
    assert risky.globs_intersect("*" * 300, "x" * 100)       # bounded, no exponential search


def test_bpftrace_headers_parsed_bodies_comments_and_strings_left_out() -> None:
    prog = """#include <linux/sched.h>
// kprobe:mutex_lock in a comment
kprobe:vfs_read, kr:mutex_unlock /comm == "sshd"/ { printf("k:mutex_lock {"); @x = 1 ? 2 : 3; }
/* fentry:mutex_trylock */ f:vmlinux:mutex_lock+4,tracepoint:sched:sched_switch{ if (1) { @a = count(); } }
kfunc:do_sys_openat2 { } uprobe:"/bin/sh":main { }
END { clear(@a); }"""
    pts = [(p.provider, p.target) for p in risky.attach_points(prog)]
    assert pts == [("kprobe", "vfs_read"), ("kretprobe", "mutex_unlock"), ("fentry", "mutex_lock"),
                   ("tracepoint", "sched:sched_switch"), ("fentry", "do_sys_openat2"),
                   ("uprobe", "/bin/sh:main")]
    assert "kr:mutex_unlock" in (risky.bpftrace_refusal(prog, OLD) or "")
    assert risky.bpftrace_refusal(prog, NEW) is None
    quiet = "kprobe:vfs_read { @[comm] = count(); } tracepoint:lock:contention_begin { printf(\"kprobe:mutex_lock\"); }"
    assert risky.bpftrace_refusal(quiet, OLD) is None          # inside a body: not an attach point
    assert risky.bpftrace_refusal("k:mutex_* { @ = count(); }", OLD)


def test_kernel_func_and_lock_hold_refused_below_the_floor_only() -> None:
    func, hold = registry()["kernel.func"], registry()["lock.hold"]
    assert "patching mutex_lock needs Linux 6.6" in (func.too_old(OLD, {"function": "mutex_lock"}) or "")
    assert func.too_old(NEW, {"function": "mutex_lock"}) is None
    assert func.too_old(OLD, {"function": "do_sys_openat2"}) is None
    assert func.too_old(OLD) is None                          # the generic probe, no function yet
    assert "needs Linux 6.6 or later" in (hold.too_old(OLD) or "") and hold.too_old(NEW) is None


FUNC_BOOK = """apiVersion: investigator/v1
kind: Playbook
metadata: {name: risky}
start: [calls]
nodes:
  calls:
    hypothesis: mutex_lock is called
    probes:
      - use: kernel.func
        with: {function: mutex_lock}
    conclude: [{when: "func.calls > 0", verdict: contention}]
"""


@pytest.mark.bpf
@pytest.mark.parametrize("release", [OLD, NEW])
def test_kernel_func_on_mutex_lock_is_refused_below_the_floor_and_tried_above(
        release: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(risky, "running_release", lambda: release)
    lp = load_playbook("risky.yaml", text=FUNC_BOOK)
    (node,) = run_playbook(lp, RunOptions(window_s=0.2)).nodes
    attempts = node.probes[0]["attempts"]
    if release == OLD:
        assert node.status == "unobservable" and attempts[0]["hook"] == "any"
        assert "patching mutex_lock needs Linux 6.6 or later" in attempts[0]["reason"]
    else:   # past the check: the hooks themselves were tried (this kernel refuses them, or one attached)
        assert all("needs Linux 6.6" not in a["reason"] for a in attempts)
        assert attempts == [] or attempts[0]["hook"] == "fentry"


def test_validation_warns_where_the_playbook_names_a_risky_target(tmp_path: Path) -> None:
    book = tmp_path / "r.yaml"
    book.write_text(FUNC_BOOK.replace("start: [calls]", "start: [calls, bt]") + """  bt:
    hypothesis: bpftrace on mutexes
    probes:
      - bpftrace: |
          tracepoint:sched:sched_switch { @s = count(); }
          kprobe:mutex_* { @m = count(); }
    conclude: [{when: "true", verdict: refuted}]
""")
    p = investigate("validate", "--allow-custom-probes", str(book))
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "risky to patch" in ln]
    assert f"{book}:10:26: warning: mutex_lock is risky to patch: refused on kernels before 6.6" in lines[0], lines
    assert lines[1].startswith(f"{book}:17:11: warning: mutex_* is risky to patch"), lines
    assert len(lines) == 2
    quiet = tmp_path / "q.yaml"
    quiet.write_text(FUNC_BOOK.replace("function: mutex_lock", "function: rt_mutex_lock"))
    p = investigate("validate", str(quiet))
    assert p.returncode == 0 and "risky" not in p.stderr, p.stderr


@pytest.mark.skipif(shutil.which("bpftrace") is None, reason="bpftrace is not installed")
def test_bpftrace_on_a_risky_function_is_refused_before_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(risky, "running_release", lambda: OLD)
    inst = BpftraceInstance(bpftrace_manifest(), "kretprobe:mutex_lock_killable { @ = count(); }", "n")
    with pytest.raises(ProbeUnavailable, match="needs Linux 6.6 or later"):
        inst.attach()
    assert inst.proc is None            # refused before bpftrace was started
