"""Symbolization from /proc/kallsyms: the in-place search of the core table, the modules'
own table, and a file whose addresses are hidden (kptr_restrict)."""

from __future__ import annotations

from pathlib import Path

import pytest

from investigator.system.kallsyms import Kallsyms

CORE = """0000000000000000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff81000000 T startup_64
ffffffff81000100 t mutex_spin_on_owner.constprop.0
ffffffff81000180 T __mutex_lock_slowpath
ffffffff81000180 T __mutex_lock_slowpath_alias
ffffffff81000400 A an_absolute_one
ffffffff81000500 T schedule
ffffffff81000900 D some_data
"""
MODULES = """ffffffffc0002000 t mod_b_fn\t[mod_b]
ffffffffc0001000 t mod_a_fn\t[mod_a]
ffffffffc0001800 T mod_a_other\t[mod_a]
"""


def _ks(tmp_path: Path, text: str) -> Kallsyms:
    p = tmp_path / "kallsyms"
    p.write_text(text)
    return Kallsyms(str(p))


def test_names_from_the_core_table_and_the_modules(tmp_path: Path) -> None:
    ks = _ks(tmp_path, CORE + MODULES)
    assert ks.readable
    assert ks.name(0xffffffff81000010) == "startup_64+0x10"
    assert ks.name(0xffffffff81000180) in ("__mutex_lock_slowpath+0x0", "__mutex_lock_slowpath_alias+0x0")
    # an absolute symbol names nothing: the function before it is the one
    assert ks.name(0xffffffff81000450) == "__mutex_lock_slowpath_alias+0x2d0"
    assert ks.name(0xffffffff81000600) == "schedule+0x100"
    assert ks.name(0xffffffff81000910) == "some_data+0x10"
    assert ks.name(0xffffffffc0001010) == "mod_a_fn+0x10"
    assert ks.name(0xffffffffc0001900) == "mod_a_other+0x100"
    assert ks.name(0xffffffffc0002004) == "mod_b_fn+0x4"
    assert ks.name(0x1000) == "0x1000"                  # below every symbol
    assert ks.function(0xffffffff81000520) == "schedule"


def test_ranges_end_at_the_next_higher_symbol(tmp_path: Path) -> None:
    ks = _ks(tmp_path, CORE + MODULES)
    got = ks.ranges({"mutex_spin_on_owner": 1, "__mutex_lock_slowpath": 2, "schedule": 3, "mod_a_fn": 4})
    assert sorted(got) == [(0xffffffff81000100, 0xffffffff81000180, 1),
                           (0xffffffff81000180, 0xffffffff81000400, 2),
                           (0xffffffff81000500, 0xffffffff81000900, 3)]   # module functions: none


def test_hidden_addresses(tmp_path: Path) -> None:
    hidden = "".join("0" * 16 + line[16:] + "\n" for line in CORE.splitlines())
    ks = _ks(tmp_path, hidden)
    assert not ks.readable
    assert ks.name(0xffffffff81000010) == "0xffffffff81000010"
    assert ks.ranges({"schedule": 1}) == []


def test_the_real_table(tmp_path: Path) -> None:
    ks = Kallsyms()
    if not ks.readable:
        pytest.skip("kptr_restrict hides /proc/kallsyms addresses from this process")
    lines = [line.split() for line in Path("/proc/kallsyms").read_text().splitlines()[:5000]]
    funcs = [(int(a, 16), n) for a, t, n, *_ in lines if t in "tT" and int(a, 16)]
    for addr, name in funcs[1000:1010]:
        assert ks.function(addr) in {n for a, n in funcs if a == addr}
