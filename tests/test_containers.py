"""Every task of a verdict carries its cgroup and what the path says of it.  A user-space
ABBA deadlock runs in a cgroup laid out as the kubelet's systemd driver lays out a
containerd container of a pod (a test-owned folder under the cgroup v2 root); the
deadlock verdict names both waiters with that cgroup, the container id and the pod UID,
the terminal report shows them, and the bundle replays to the same.  On a hybrid host a
task that only a v1 hierarchy places below the root is named by its v1 path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import investigate
from scenarios.build import c_helper
from scenarios.procs import NAPPER, processes, remove_cgroup, start_abba, wait_alive

from investigator.finding import workload
from investigator.system.cgroups import task_cgroup, task_paths, v1_roots, v2_roots

pytestmark = [pytest.mark.bpf]

ID = "5eed" * 16
POD = "0c0ffee0-1234-4abc-8def-00000000cafe"


def _pod_cgroup(root: Path) -> tuple[Path, Path]:
    """(the test's top folder, the container's folder) under a cgroup v2 root."""
    top = root / f"investigator-test-{os.getpid()}.slice"
    pod = f"kubepods-burstable-pod{POD.replace('-', '_')}.slice"
    return top, top / "kubepods.slice" / "kubepods-burstable.slice" / pod / f"cri-containerd-{ID}.scope"


@pytest.mark.second_kernel
@pytest.mark.skipif(not v2_roots(), reason="needs a cgroup2 mount")
def test_a_deadlock_in_a_pods_container_names_the_container_and_the_pod(tmp_path: Path) -> None:
    top, box = _pod_cgroup(Path(v2_roots()[0]))
    exe = c_helper("abba", tmp_path)
    with processes() as ps:
        try:
            box.mkdir(parents=True)
            printed, waiters = start_abba(ps, str(exe), "threads")
            (ab, pid), (ba, _) = waiters["ab"], waiters["ba"]
            (box / "cgroup.procs").write_text(str(pid))          # the whole process, both threads
            assert task_cgroup(ab) == task_cgroup(ba) == "/" + str(box.relative_to(v2_roots()[0]))
            p = investigate("playbooks/freeze.yaml", "--window", "2", "--json", "--out", str(tmp_path / "b"))
            r = investigate("replay", str(tmp_path / "b"), "--json")
            text = investigate("replay", str(tmp_path / "b"))
        finally:
            ps.kill_all()
            remove_cgroup(top)
    assert p.returncode == 1, p.stderr
    (v,) = [v for v in json.loads(p.stdout)["verdicts"] if v["verdict"] == "deadlock"]
    assert sorted(t["tid"] for t in v["tasks"]) == sorted([ab, ba])
    for t in v["tasks"]:
        assert t["cgroup"].endswith(f"/cri-containerd-{ID}.scope") and t["cgroup"].startswith(f"/{top.name}/"), t
        assert t["container"] == f"containerd://{ID}" and t["pod"] == POD, t
        assert t["unit"] == f"cri-containerd-{ID}.scope", t
    assert r.returncode == 1 and json.loads(r.stdout)["verdicts"] == json.loads(p.stdout)["verdicts"]
    # both tasks in one cgroup: one line names it, the container by its short id
    assert f"cgroup    /{top.name}/" in text.stdout, text.stdout
    assert f"(container containerd {ID[:12]}, pod {POD})" in text.stdout, text.stdout


# the guests boot with cgroup v2 only: this host's own layout, not marked second_kernel
@pytest.mark.skipif(not v1_roots("cpu") or not v2_roots(), reason="needs a hybrid host: a cgroup v1 cpu hierarchy")
def test_on_a_hybrid_host_a_task_only_v1_places_is_named_by_its_v1_path() -> None:
    with processes() as ps:
        top = Path(v1_roots("cpu")[0]) / f"investigator-test-{os.getpid()}"
        try:
            (top / "docker" / ID).mkdir(parents=True)
            inside, beside = ps.spawn_argv(NAPPER), ps.spawn_argv(NAPPER)
            wait_alive(inside, 0.2)
            (top / "docker" / ID / "cgroup.procs").write_text(str(inside.pid))
            paths = task_paths(inside.pid)
            if paths.get("", "/") != "/" or paths.get("name=systemd", "/") != "/":
                pytest.skip(f"the v2 or the systemd hierarchy places this task below its root: {paths}")
            assert paths["cpu"] == f"/{top.name}/docker/{ID}"
            assert task_cgroup(inside.pid) == f"/{top.name}/docker/{ID}"
            assert workload(task_cgroup(inside.pid) or "") == {"container": f"docker://{ID}"}
            # the look-alike beside it, in the cpu hierarchy's root, is not named so
            assert task_cgroup(beside.pid) != task_cgroup(inside.pid)
            assert "container" not in workload(task_cgroup(beside.pid) or "")
        finally:
            ps.kill_all()
            remove_cgroup(top)


FOCUS_BOOK = """apiVersion: investigator/v1
kind: Playbook
metadata: {name: focus-cgroup-test, description: a follow-up aimed at a finding's cgroup}
vars: {tid: 0, whole: true}
start: [named]
nodes:
  named:
    hypothesis: the task the run names is a victim
    probes:
      - use: system.pressure
    conclude:
      - when: vars.tid > 0
        verdict: contention
        about: >-
          {"tasks": [{"tid": vars.tid, "pid": vars.tid, "comm": "napper", "role": "victim"}]}
        explain: "task {vars.tid}"
        next: [who-else]
  who-else:
    hypothesis: the rest of its cgroup sleeps too
    focus: {from: named, tasks: [victim], cgroup: CGROUP}
    probes:
      - use: sched.offcpu
    conclude:
      - when: offcpu.tasks_count > 0
        verdict: contention
        about: >-
          {"tasks": [{"tid": offcpu.worst.tid, "comm": offcpu.worst.comm, "role": "victim"}]}
        explain: "{offcpu.worst.comm} blocked {offcpu.worst.total_ms} ms"
"""


@pytest.mark.second_kernel
@pytest.mark.skipif(not v2_roots(), reason="needs a cgroup2 mount")
@pytest.mark.parametrize("whole", [True, False])
def test_a_focus_on_a_findings_cgroup_watches_that_subtree_and_nothing_beside_it(tmp_path: Path, whole: bool) -> None:
    """The finding names one task of a test-owned cgroup; the follow-up aimed at its cgroup
    records it, the other task of that cgroup and one in a cgroup below, not the look-alike
    in the cgroup beside it -- and, aimed at the task alone (``cgroup: false``), only it."""
    root = Path(v2_roots()[0])
    top = root / f"investigator-test-{os.getpid()}"
    box, below, beside = top / "box", top / "box" / "child", top / "beside"
    book = tmp_path / "focus.yaml"
    book.write_text(FOCUS_BOOK.replace("CGROUP", "true" if whole else "false"))
    with processes() as ps:
        try:
            below.mkdir(parents=True)
            beside.mkdir()
            named, sibling, deeper, other = (ps.spawn_argv(NAPPER) for _ in range(4))
            for p, cg in ((named, box), (sibling, box), (deeper, below), (other, beside)):
                (cg / "cgroup.procs").write_text(str(p.pid))
            wait_alive(named, 0.3)
            p = investigate(str(book), "--window", "1.5", "--json", "--set", f"tid={named.pid}",
                            "--out", str(tmp_path / "b"))
            alive = [x.poll() is None for x in (named, sibling, deeper, other)]
        finally:
            ps.kill_all()
            remove_cgroup(top)
    assert all(alive), "a napper died during the window"
    assert p.returncode == 1, p.stderr
    rep = json.loads(p.stdout)
    node = next(n for n in rep["nodes"] if n["id"] == "who-else")
    seen = {t["tid"] for t in json.loads((tmp_path / "b" / "evidence.json").read_text())["who-else"]["offcpu"]["tasks"]}
    if whole:
        assert node["focus"]["cgroup"] == f"/{top.name}/box" and "cgroup_not_used" not in node["focus"], node
        assert seen == {named.pid, sibling.pid, deeper.pid}, seen
    else:
        assert "cgroup" not in node["focus"] and seen == {named.pid}, seen
    # the first node's verdict names its task with the cgroup read when it concluded
    (v,) = [v for v in rep["verdicts"] if v["node"] == "named"]
    assert v["tasks"][0]["cgroup"] == f"/{top.name}/box"


@pytest.mark.second_kernel
@pytest.mark.skipif(not v2_roots(), reason="needs a cgroup2 mount")
def test_a_focus_on_a_cgroup_that_is_no_v2_folder_watches_the_tasks_and_says_why(tmp_path: Path) -> None:
    """A task in the root of the v2 tree (on a hybrid host, maybe in a v1 cgroup that has no
    v2 folder): the follow-up cannot watch its cgroup, so it watches the task alone."""
    book = tmp_path / "focus.yaml"
    book.write_text(FOCUS_BOOK.replace("CGROUP", "true"))
    with processes() as ps:
        named, other = ps.spawn_argv(NAPPER), ps.spawn_argv(NAPPER)
        wait_alive(named, 0.3)
        if task_paths(named.pid).get("", "/") != "/":
            pytest.skip("this host starts its tasks below the cgroup v2 root")
        p = investigate(str(book), "--window", "1.5", "--json", "--set", f"tid={named.pid}",
                        "--out", str(tmp_path / "b"))
    assert p.returncode == 1, p.stderr
    node = next(n for n in json.loads(p.stdout)["nodes"] if n["id"] == "who-else")
    assert node["focus"]["cgroup"] == task_cgroup(os.getpid()) and node["focus"]["cgroup_not_used"], node
    seen = {t["tid"] for t in json.loads((tmp_path / "b" / "evidence.json").read_text())["who-else"]["offcpu"]["tasks"]}
    assert seen == {named.pid}, seen
