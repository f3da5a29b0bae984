"""system/cgroups.py's readers on folders laid out as the kernel lays them out (the real
files are read by tests/test_throttle.py): a quota on v2 and v1, none, malformed files, a
symbolic link never followed, the thread list bounded, the kernel's name of a folder."""

from __future__ import annotations

import os
from pathlib import Path

from investigator.system import cgroups


def _v2(d: Path, cpu_max: str, stat: str) -> Path:
    d.mkdir()
    (d / "cpu.max").write_text(cpu_max)
    (d / "cpu.stat").write_text(stat)
    return d


def test_v2_quota_and_counters(tmp_path: Path) -> None:
    d = _v2(tmp_path / "a", "30000 100000\n", "usage_usec 5\nnr_periods 40\nnr_throttled 38\nthrottled_usec 2500000\n")
    assert cgroups.bandwidth(str(d), True) == cgroups.Bandwidth(30000, 100000, 40, 38, 2500000)
    none = _v2(tmp_path / "b", "max 100000\n", "nr_periods 0\n")
    assert cgroups.bandwidth(str(none), True) is None            # no quota
    bad = _v2(tmp_path / "c", "30000\n", "nr_periods 1\n")
    assert cgroups.bandwidth(str(bad), True) is None
    nostat = _v2(tmp_path / "d", "30000 100000\n", "")
    assert cgroups.bandwidth(str(nostat), True) is None          # no cpu.stat counters


def test_v1_quota_in_nanoseconds(tmp_path: Path) -> None:
    d = tmp_path / "a"
    d.mkdir()
    (d / "cpu.cfs_quota_us").write_text("20000\n")
    (d / "cpu.cfs_period_us").write_text("100000\n")
    (d / "cpu.stat").write_text("nr_periods 10\nnr_throttled 9\nthrottled_time 700000000\n")
    assert cgroups.bandwidth(str(d), False) == cgroups.Bandwidth(20000, 100000, 10, 9, 700000)
    (d / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroups.bandwidth(str(d), False) is None


def test_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    real = _v2(tmp_path / "real", "30000 100000\n", "nr_periods 4\nnr_throttled 1\nthrottled_usec 1\n")
    d = tmp_path / "linked"
    d.mkdir()
    os.symlink(real / "cpu.max", d / "cpu.max")
    os.symlink(real / "cpu.stat", d / "cpu.stat")
    assert cgroups.bandwidth(str(d), True) is None
    assert cgroups.read_file(str(d / "cpu.max")) is None


def test_threads_are_bounded_and_the_walk_stops_at_its_limit(tmp_path: Path) -> None:
    (tmp_path / "cgroup.threads").write_text("".join(f"{i}\n" for i in range(1, 1001)))
    assert cgroups.threads(str(tmp_path), True, 10) == list(range(1, 11))
    (tmp_path / "tasks").write_text("7\nx\n8\n")
    assert cgroups.threads(str(tmp_path), False, 10) == [7, 8]
    for i in range(5):
        (tmp_path / f"s{i}" / "leaf").mkdir(parents=True)
    w = cgroups.Walk([str(tmp_path)], limit=3)
    assert w.run() == [str(tmp_path / f"s{i}") for i in range(3)] and w.stopped == "3 cgroups"   # breadth first
    assert cgroups.rel(str(tmp_path / "s1" / "leaf"), [str(tmp_path)]) == "/s1/leaf"
    assert cgroups.rel(str(tmp_path), [str(tmp_path)]) == "/"
