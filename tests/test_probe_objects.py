"""The shipped CO-RE objects: rebuilt from their sources they are byte-identical to the
committed ones; every manifest names programs, globals and maps its object has; the
collectors' ctypes records match the structs in the object's BTF, and the constants they
mirror match the object's (EXPORT_CONST in probes/common.h)."""

from __future__ import annotations

import ctypes
import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from investigator.bpf import BpfObject
from investigator.probes.manifest import collectors, probes_dir, registry

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "probes"


def test_committed_objects_match_their_sources(tmp_path: Path) -> None:
    if not shutil.which("clang"):
        pytest.fail("clang is needed to rebuild the probes (scripts/setup.sh test installs it)")
    sources = sorted(SRC.glob("*.bpf.c"))
    assert sources
    subprocess.run(["sh", str(SRC / "build.sh"), "-o", str(tmp_path), *map(str, sources)],
                   check=True, capture_output=True)
    stale = [s.name for s in sources
             if (tmp_path / (s.name[:-2] + ".o")).read_bytes() != (SRC / (s.name[:-2] + ".o")).read_bytes()]
    assert not stale, f"rebuild and commit (make probes): {stale}"


def test_installed_package_ships_every_object_and_manifest() -> None:
    shipped = probes_dir()
    for s in SRC.glob("*.bpf.c"):
        obj = s.name[:-2] + ".o"
        assert (shipped / obj).read_bytes() == (SRC / obj).read_bytes(), obj
    assert {p.name for p in SRC.glob("*.yaml")} <= {p.name for p in shipped.glob("*.yaml")}


@pytest.mark.parametrize("name", sorted(registry()))
def test_manifest_matches_its_object(name: str) -> None:
    m = registry()[name]
    if m.userspace:
        assert m.collector not in collectors(), "custom probes may not reuse a /proc reader"
        return
    with BpfObject(m.object_path) as o:
        progs = set(o.programs)
        for alt in m.hooks:
            assert set(alt.programs) <= progs, f"{alt.kind}: {set(alt.programs) - progs}"
            for p in alt.programs:   # an alternative pairs entry and exit programs
                assert o.programs[p].kind in {"fentry": ("fentry", "fexit"),
                                              "kprobe": ("kprobe", "kretprobe"),
                                              "uprobe": ("uprobe", "uretprobe")}.get(alt.kind, (alt.kind,))
        rodata = o.globals() if any(n.endswith(".rodata") for n in o.maps) else {}
        for p in m.params.values():
            assert p.type in ("symbol", "path") or p.collector or p.global_name in rodata, p.global_name
        for mp in m.maps:
            assert mp in o.maps, mp
        assert "probe_stats" in o.maps, "every probe counts its events for the overhead guard"
    assert m.evidence and all(f.help for f in m.evidence)


_STRUCT = re.compile(r"^\[\d+\] STRUCT '(\w+)' size=(\d+) vlen=\d+")
_MEMBER = re.compile(r"^\s+'(\w+)' type_id=\d+ bits_offset=(\d+)")


def _btf_structs(obj: Path) -> dict[str, tuple[int, dict[str, int]]]:
    out = subprocess.run(["bpftool", "btf", "dump", "file", str(obj)], check=True,
                         capture_output=True, text=True).stdout
    structs: dict[str, tuple[int, dict[str, int]]] = {}
    cur = None
    for line in out.splitlines():
        if (m := _STRUCT.match(line)):
            cur = m.group(1)
            structs[cur] = (int(m.group(2)), {})
        elif cur and (m := _MEMBER.match(line)):
            structs[cur][1][m.group(1)] = int(m.group(2)) // 8
        elif not line.startswith("\t"):
            cur = None
    return structs


def _exported_constants(obj: Path) -> dict[str, int]:
    """The object's EXPORT_CONST values, from its .rodata image (nothing is loaded)."""
    from investigator.bpf._lib import lib
    with BpfObject(obj) as o:
        if not any(n.endswith(".rodata") for n in o.maps):
            return {}
        out = {}
        for name in o.globals():
            if name.startswith("const_"):
                mp, off, size = o._global(name, ".rodata")
                n = ctypes.c_size_t(0)
                base = lib().bpf_map__initial_value(mp._ptr, ctypes.byref(n))
                assert base and off + size <= n.value, name
                out[name[len("const_"):]] = int.from_bytes(ctypes.string_at(base + off, size), "little")
        return out


@pytest.mark.parametrize("name", sorted(n for n, m in registry().items() if not m.userspace))
def test_collector_records_match_object_btf(name: str) -> None:
    m = registry()[name]
    mod = importlib.import_module(f"investigator.probes.collectors.{m.collector}")
    structs = _btf_structs(m.object_path)
    assert mod.LAYOUTS
    for cname, cls in mod.LAYOUTS.items():
        assert cname in structs, f"struct {cname} not in {m.object_path.name}'s BTF"
        size, members = structs[cname]
        assert ctypes.sizeof(cls) == size, f"sizeof {cname}"
        for fname, _ in cls._fields_:
            assert members.get(fname) == getattr(cls, fname).offset, f"{cname}.{fname}"
    # and the constants it mirrors
    exported = _exported_constants(m.object_path)
    exported.pop("MAX_TARG_TIDS")       # common.h's, mirrored by probes/instance.py (checked below)
    mirrored = getattr(mod, "CONSTANTS", {})
    assert set(mirrored) == set(exported), f"{m.collector}.CONSTANTS vs EXPORT_CONST in {m.object_path.name}"
    for cname, value in mirrored.items():
        assert exported[cname] == value, f"{cname}: {value} in {m.collector}.py, {exported[cname]} in the object"


def test_a_probe_is_found_by_its_name() -> None:
    """A probe's alias is the stem of every file of it: probes/NAME.yaml, NAME.bpf.c, NAME.h,
    NAME.bpf.o and collectors/NAME.py (user.func loads kernel.func's object and collector,
    and says so by naming them).  Aliases are unique, and no former alias is a current one."""
    reg = registry()
    aliases = {m.alias: m for m in reg.values()}
    assert len(aliases) == len(reg)
    collectors_dir = REPO / "investigator" / "probes" / "collectors"
    for m in reg.values():
        assert m.manifest_path.name == f"{m.alias}.yaml", (m.name, m.alias)
        assert not set(m.former_aliases) & set(aliases), m.name
        if m.userspace:
            assert m.collector == m.alias, m.name
            continue
        stem = m.object_path.name.removesuffix(".bpf.o")
        assert m.collector == stem and stem in aliases, (m.name, stem, m.collector)
        assert (SRC / f"{stem}.bpf.c").exists() and (collectors_dir / f"{stem}.py").exists(), m.name
        if stem != m.alias:         # a second manifest of another probe's object
            assert not (SRC / f"{m.alias}.bpf.c").exists() and not (collectors_dir / f"{m.alias}.py").exists()
    for c in collectors_dir.glob("[a-z]*.py"):
        assert c.stem in aliases, f"collectors/{c.name} belongs to no probe"
    for h in SRC.glob("*.h"):
        assert h.stem in aliases or h.stem in {"common", "reclaim", "snapshot", "task_record", "vmlinux"}, h.name


@pytest.mark.parametrize("name", sorted(n for n, m in registry().items() if not m.userspace))
def test_every_object_can_be_aimed_at_a_set_of_tids(name: str) -> None:
    """A focused node's TIDs reach every probe through task_selected(): each object has
    the targ_tids set and its switch, with the bound the Python side fills up to."""
    from investigator.probes.instance import MAX_TARG_TIDS
    m = registry()[name]
    with BpfObject(m.object_path) as o:
        assert "targ_tids" in o.maps and "targ_tids_on" in o.globals()
        assert o.maps["targ_tids"].max_entries == MAX_TARG_TIDS
    assert _exported_constants(m.object_path)["MAX_TARG_TIDS"] == MAX_TARG_TIDS
