"""The finding type: what collectors store as ``worst`` reads back the same, and a bundle's
junk reads as no finding (never an exception, never an unbounded list)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from investigator.finding import MAX_FRAMES, MAX_STR, MAX_TASKS, Finding, Lock, Task, workload
from investigator.report.model import _entities


def _sample() -> Finding:
    return Finding(tasks=[Task(10, 9, "victim-t", "victim", prio=0, policy="SCHED_FIFO"),
                          Task(11, 11, "hog", "culprit", state="R", stack=["f1", "f2"], cgroup="/a/b",
                               extra={"charged_ms": 1.5}),
                          Task(12, 12, "w", "waiter", waits_for="mutex 0x1", holds="mutex 0x2")],
                   locks=[Lock("mutex", "0xffff1", "cgroup_mutex", 11, 10, extra={"source": "blocked"})],
                   cpus=[1], cgroups=["/a/b"], files=["/etc/x"], stack=["s1"],
                   details={"wait_ms": 12.5, "cpu": 1, "victim": {"tid": 10, "pid": 9, "comm": "victim-t"}})


def test_round_trip_through_json() -> None:
    f = _sample()
    d = json.loads(json.dumps(f.to_dict()))
    assert Finding.from_dict(d) == f
    assert Finding.from_dict(d).to_dict() == f.to_dict()
    assert f.task("culprit").tid == 11 and f.task("holder") is None      # type: ignore[union-attr]
    assert d["tasks"][0] == {"tid": 10, "pid": 9, "comm": "victim-t", "prio": 0, "rt_priority": 99,
                             "policy": "SCHED_FIFO", "role": "victim"}
    assert d["tasks"][1]["charged_ms"] == 1.5 and "prio" not in d["tasks"][1]
    assert d["locks"][0] == {"addr": "0xffff1", "kind": "mutex", "name": "cgroup_mutex", "holder_tid": 11,
                             "waiter_tid": 10, "source": "blocked"}


def test_empty_keeps_the_details_rules_read() -> None:
    d = Finding.empty(blocked_s=0.0, task={"tid": 0, "pid": 0, "comm": ""}).to_dict()
    assert d == {"blocked_s": 0.0, "task": {"tid": 0, "pid": 0, "comm": ""}, "tasks": [], "locks": [],
                 "cpus": [], "cgroups": [], "files": [], "stack": []}


def test_malformed_input_is_no_finding_and_never_raises() -> None:
    for junk in (None, 3, "x", [], [{"tid": 1}], {"tasks": "no"}, {"tasks": [1, None, "a"]},
                 {"locks": {"a": 1}}, {"cpus": [True, -1, "2", 3.0]}):
        f = Finding.from_dict(junk)
        assert f.tasks == [] and f.locks == [] and f.cpus == []
    f = Finding.from_dict({"tasks": [{"tid": True, "pid": "7", "comm": 5, "role": None, "prio": "1",
                                      "stack": ["a", 1, None, "b"]}],
                           "locks": [{"kind": 1, "addr": ["x"], "holder_tid": 2.5, "nested": {"deep": 1}}]})
    (t,) = f.tasks
    assert (t.tid, t.pid, t.comm, t.role, t.prio, t.stack) == (0, 0, "", "bystander", None, ["a", "b"])
    (lk,) = f.locks
    assert (lk.kind, lk.addr, lk.holder_tid, lk.extra) == ("", "", 0, {})


def test_sizes_are_clamped() -> None:
    big = {"tasks": [{"tid": i, "pid": i, "comm": "c" * 10_000, "stack": ["f"] * 1000, **{f"k{j}": j for j in range(100)}}
                     for i in range(10_000)],
           "cpus": list(range(10_000)), "files": ["/x"] * 10_000}
    f = Finding.from_dict(big)
    assert len(f.tasks) == MAX_TASKS and len(f.cpus) == MAX_TASKS and len(f.files) == MAX_TASKS
    assert len(f.tasks[0].comm) == MAX_STR and len(f.tasks[0].stack or []) == MAX_FRAMES
    assert len(f.tasks[0].extra) <= 16


def test_report_entities_read_the_finding() -> None:
    tasks, locks, cpus = _entities(_sample().to_dict(), {})
    assert [t["role"] for t in tasks] == ["victim", "culprit", "waiter"]
    assert tasks[1] == {"pid": 11, "tid": 11, "comm": "hog", "role": "culprit", "charged_ms": 1.5, "cgroup": "/a/b",
                        "stack": ["f1", "f2"]}
    assert tasks[2]["waits_for"] == "mutex 0x1" and tasks[2]["holds"] == "mutex 0x2"
    assert locks[0]["holder_tid"] == 11 and cpus == [1]
    assert _entities("junk", {}) == ([], [], [])


def test_a_verdicts_tasks_carry_the_cgroup_read_at_conclusion_and_what_it_names() -> None:
    pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_aaaa_bbbb_cccc_0123456789ab.slice"
    tasks, _, _ = _entities(_sample().to_dict(), {10: f"{pod}/cri-containerd-{'c' * 64}.scope", 11: "/ignored"})
    assert tasks[0]["cgroup"] == f"{pod}/cri-containerd-{'c' * 64}.scope"
    assert tasks[0]["container"] == "containerd://" + "c" * 64
    assert tasks[0]["pod"] == "1b2c3d4e-aaaa-bbbb-cccc-0123456789ab"
    assert tasks[0]["unit"] == f"cri-containerd-{'c' * 64}.scope"
    assert tasks[1]["cgroup"] == "/a/b" and "unit" not in tasks[1]      # the finding's own cgroup wins
    assert "cgroup" not in tasks[2]


ID = "0123456789abcdef" * 4
POD = "1b2c3d4e-aaaa-bbbb-cccc-0123456789ab"


@pytest.mark.parametrize("path, names", [
    # systemd's own units, a user's session and services
    ("/system.slice/nginx.service", {"unit": "nginx.service"}),
    ("/user.slice/user-1000.slice/session-3.scope", {"unit": "session-3.scope"}),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-x-12.scope", {"unit": "app-gnome-x-12.scope"}),
    # docker with the systemd and the cgroupfs driver; the daemon's own unit is no container
    (f"/system.slice/docker-{ID}.scope", {"unit": f"docker-{ID}.scope", "container": f"docker://{ID}"}),
    (f"/docker/{ID}", {"container": f"docker://{ID}"}),
    ("/system.slice/docker.service", {"unit": "docker.service"}),
    # the kubelet with either driver, containerd and CRI-O; CRI-O's monitor is not the container
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD.replace('-', '_')}.slice/cri-containerd-{ID}.scope",
     {"unit": f"cri-containerd-{ID}.scope", "container": f"containerd://{ID}", "pod": POD}),
    (f"/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/crio-{ID}.scope",
     {"unit": f"crio-{ID}.scope", "container": f"cri-o://{ID}", "pod": POD}),
    (f"/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/crio-conmon-{ID}.scope",
     {"unit": f"crio-conmon-{ID}.scope", "pod": POD}),
    (f"/kubepods/burstable/pod{POD}/{ID}", {"container": ID, "pod": POD}),
    (f"/machine.slice/libpod-{ID}.scope/container", {"unit": f"libpod-{ID}.scope", "container": f"podman://{ID}"}),
    # LXC and machined / systemd-nspawn containers, by name
    ("/lxc.payload.web1/system.slice/sshd.service", {"unit": "sshd.service", "container": "lxc://web1"}),
    ("/lxc/web2", {"container": "lxc://web2"}),
    ("/machine.slice/machine-build\\x2d7.scope", {"unit": "machine-build\\x2d7.scope", "container": "machine://build\\x2d7"}),
    # look-alikes: a pod folder outside kubepods, an id of the wrong length, the root, a plain folder
    (f"/pod{POD}/x", {}),
    (f"/docker/{ID[:63]}", {}),
    ("/", {}),
    ("", {}),
    ("/process_api/74d5622b57976b35f145c9c452c9f46a", {}),
])
def test_a_cgroup_path_names_its_unit_container_and_pod(path: str, names: dict[str, str]) -> None:
    assert workload(path) == names


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_cgroup_path_reads_without_error(path: str) -> None:
    out = workload(path)
    assert set(out) <= {"unit", "container", "pod"} and all(isinstance(v, str) and v for v in out.values())


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                           max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["tasks", "locks", "cpus", "cgroups", "files", "stack", "x"]),
                       json_values, max_size=7))
def test_any_json_reads_without_error(d: dict[str, Any]) -> None:
    f = Finding.from_dict(d)
    json.dumps(f.to_dict())
    assert Finding.from_dict(f.to_dict()).tasks == f.tasks
