"""The libbpf binding against the real kernel: every attach kind this kernel allows,
every map kind, the ring buffer, read-only parameters, and errors that carry errno and
the verifier's log.  kprobe/fentry run for real in the second-kernel stage; here their
refusal must be a clean BpfError."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import libc_path

from investigator.bpf import BpfError, BpfObject, features, num_possible_cpus
from investigator.bpf.perf import open_cpu_clock

pytestmark = pytest.mark.bpf
HERE = Path(__file__).resolve().parent
BUILD = HERE.parent / "probes" / "build.sh"


@pytest.fixture(scope="module")
def objs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bpfobjs")
    subprocess.run(["sh", str(BUILD), "-o", str(out), *map(str, sorted((HERE / "bpf").glob("*.bpf.c")))],
                   check=True, capture_output=True)
    return out


def _only(obj: BpfObject, *names: str) -> None:
    for n, p in obj.programs.items():
        p.autoload = n in names


def test_rodata_set_before_load_reaches_the_program(objs: Path) -> None:
    with BpfObject(objs / "binding_test.bpf.o") as o:
        assert {"magic", "targ_tgid"} <= set(o.globals())
        _only(o, "on_switch_btf")
        o.set_global("magic", 7)
        o.load()
        with pytest.raises(RuntimeError):
            o.set_global("magic", 8)
        link = o.programs["on_switch_btf"].attach()
        assert link.kind == "tp_btf" and link.target == "sched_switch"
        time.sleep(0.2)
        n = int.from_bytes(o.maps["counts"].lookup(0), "little")  # type: ignore[arg-type]
        assert n > 0 and n % 7 == 0


def test_raw_tp_and_percpu_map(objs: Path) -> None:
    with BpfObject(objs / "binding_test.bpf.o") as o:
        _only(o, "on_switch_raw")
        o.load()
        o.programs["on_switch_raw"].attach_raw_tracepoint("sched_switch")
        time.sleep(0.2)
        per_cpu = o.maps["percpu"].lookup(0)
        assert isinstance(per_cpu, list) and len(per_cpu) == num_possible_cpus()
        assert sum(int.from_bytes(v, "little") for v in per_cpu) > 0


@pytest.fixture(scope="module", name="libc_path")
def libc_path_fixture() -> str:
    return libc_path()


def test_uprobe_by_symbol_hash_map_and_ring_buffer(objs: Path, libc_path: str) -> None:
    me = os.getpid()
    with BpfObject(objs / "binding_test.bpf.o") as o:
        _only(o, "on_uprobe")
        o.set_global("targ_tgid", me)
        o.load()
        link = o.programs["on_uprobe"].attach_uprobe(libc_path, "getpid", pid=me)
        assert link.kind == "uprobe"
        got: list[bytes] = []
        rb = o.ringbuf("events", got.append)
        for _ in range(500):
            os.getpid()
        while rb.poll(50):
            pass
        hits = int.from_bytes(o.maps["hits"].lookup(me), "little")  # type: ignore[arg-type]
        assert hits >= 500
        assert len(got) == hits
        assert all(int.from_bytes(r[:4], "little") == me for r in got)
        rb.free()


def test_perf_event_sampling_with_stacks(objs: Path) -> None:
    with BpfObject(objs / "binding_test.bpf.o") as o:
        _only(o, "on_sample")
        o.load()
        for cpu in range(os.cpu_count() or 1):
            fd = open_cpu_clock(cpu, 199)
            try:
                o.programs["on_sample"].attach_perf_event(fd)   # the link owns fd from here
            except BaseException:
                os.close(fd)
                raise
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            pass
        o.detach()
        assert int.from_bytes(o.maps["counts"].lookup(1), "little") > 10  # type: ignore[arg-type]
        ids = [int.from_bytes(k, "little") for k in o.maps["stacks"].keys()]
        assert ids
        assert any(len(o.maps["stacks"].stack(i)) > 0 for i in ids)
        # a stack map has no batch lookup (the kernel answers ENOTSUPP, 524, as per-CPU
        # arrays do on 5.10): read key by key instead
        items = o.maps["stacks"].items()
        assert sorted(int.from_bytes(k, "little") for k, _ in items) == sorted(ids)
        assert o.maps["stacks"].lookup_batch() == items


def test_task_iterator_lists_this_process(objs: Path) -> None:
    with BpfObject(objs / "binding_test.bpf.o") as o:
        _only(o, "dump_tasks")
        o.load()
        link = o.programs["dump_tasks"].attach_iter()
        text = link.read_iter().decode()
        pids = {int(line.split()[0]) for line in text.splitlines() if line.strip()}
        assert os.getpid() in pids and 2 in pids     # this process and kthreadd


def test_hash_map_batch_lookup_matches_key_iteration(objs: Path) -> None:
    with BpfObject(objs / "binding_test.bpf.o") as o:
        _only(o, "on_switch_raw")
        o.load()
        m = o.maps["hits"]
        for k in range(300):
            m.update(k, (k * 3).to_bytes(8, "little"))
        batch = dict(m.lookup_batch(chunk=64))
        keys = set(m.keys())
        assert set(batch) == keys and len(keys) == 300
        assert all(int.from_bytes(v, "little") == 3 * int.from_bytes(k, "little") for k, v in batch.items())  # type: ignore[arg-type]
        assert m.lookup(1000) is None
        assert m.delete(5) and m.lookup(5) is None
        with pytest.raises(ValueError):
            m.lookup(b"\x00")


def test_verifier_rejection_carries_the_log(objs: Path) -> None:
    with BpfObject(objs / "rejected.bpf.o") as o:
        with pytest.raises(BpfError) as ei:
            o.load()
    e = ei.value
    assert e.errno == errno.EACCES
    assert "invalid mem access" in e.verifier_log
    assert "map_value_or_null" in e.detail()


def test_missing_tracepoint_is_an_errno_not_a_crash(objs: Path) -> None:
    with BpfObject(objs / "missing_tp.bpf.o") as o:
        o.load()
        with pytest.raises(BpfError) as ei:
            o.programs["missing_raw"].attach()
    assert ei.value.errno == errno.ENOENT


def test_kprobe_and_fentry_paths_fail_cleanly_where_refused(objs: Path) -> None:
    """On this kernel (no CONFIG_KPROBES, fentry refused by lockdown) both paths must end
    in a BpfError with the kernel's errno -- and the feature probe must agree."""
    with BpfObject(objs / "binding_test.bpf.o") as o:
        _only(o, "on_fentry")
        try:
            o.load()
            o.programs["on_fentry"].attach_trace()
            fentry_ok = True
        except BpfError as e:
            assert e.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.EINVAL, 524)  # 524: ENOTSUPP
            fentry_ok = False
    assert fentry_ok == bool(features.fentry("do_nanosleep"))
    with BpfObject(objs / "binding_test.bpf.o") as o:
        _only(o, "on_kprobe")
        try:
            o.load()
            o.programs["on_kprobe"].attach_kprobe("do_nanosleep")
            kprobe_ok = True
        except BpfError as e:
            assert e.errno != 0
            kprobe_ok = False
    assert kprobe_ok == bool(features.kprobe())


def test_links_are_gone_from_the_kernel_after_close(objs: Path) -> None:
    from conftest import programs_of_pid
    o = BpfObject(objs / "binding_test.bpf.o")
    _only(o, "on_switch_raw", "dump_tasks")
    o.load()
    o.programs["on_switch_raw"].attach()
    o.programs["dump_tasks"].attach_iter()
    assert len(programs_of_pid(os.getpid())) == 2
    o.close()
    deadline = time.monotonic() + 5
    while programs_of_pid(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert programs_of_pid(os.getpid()) == []


def test_feature_probes_are_cached_and_consistent() -> None:
    s1 = features.summary()
    s2 = features.summary()
    assert s1 == s2
    assert s1["tp_btf"] and s1["raw_tp"] and s1["iter"]
    for kind, s in s1.items():
        assert s.ok or s.reason, kind


def test_ring_buffer_callback_exceptions_do_not_unwind_through_c(objs: Path, libc_path: str) -> None:
    me = os.getpid()
    with BpfObject(objs / "binding_test.bpf.o") as o:
        _only(o, "on_uprobe")
        o.set_global("targ_tgid", me)
        o.load()
        o.programs["on_uprobe"].attach_uprobe(libc_path, "getpid", pid=me)

        def boom(_: bytes) -> None:
            raise RuntimeError("callback failure")
        rb = o.ringbuf("events", boom)
        for _ in range(10):
            os.getpid()
        rb.poll(50)
        assert rb.errors >= 10
        rb.free()


def test_threads_can_read_maps_while_attached(objs: Path) -> None:
    with BpfObject(objs / "binding_test.bpf.o") as o:
        _only(o, "on_switch_raw")
        o.load()
        o.programs["on_switch_raw"].attach()
        errors: list[Exception] = []

        def reader() -> None:
            try:
                for _ in range(200):
                    o.maps["percpu"].lookup(0)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)
        ts = [threading.Thread(target=reader) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors


def test_batch_size_keeps_one_batch_under_the_memory_cap() -> None:
    """4096 possible CPUs make irq.time's 48-byte per-CPU value 192 KiB: a fixed 1024-entry
    batch would allocate 192 MiB; the sized batch stays under the cap, and always reads."""
    from investigator.bpf.object import BATCH_BYTES, batch_entries
    value = 48 * 4096
    n = batch_entries(4, value, 256)
    assert 1 <= n < 256 and n * (4 + value) <= BATCH_BYTES < (n + 1) * (4 + value)
    assert 1024 * (4 + value) > 24 * BATCH_BYTES           # what a fixed batch would take
    assert batch_entries(4, 8, 300) == 300                   # a small map: one call
    assert batch_entries(4, 16 << 20, 10) == 1               # a value over the cap still reads
    assert batch_entries(4, 8, 1000, max_bytes=12) == 1


def test_per_cpu_batch_is_sized_by_the_possible_cpus(objs: Path) -> None:
    from investigator.bpf.object import BATCH_BYTES
    with open("/sys/devices/system/cpu/possible") as f:
        spans = [r.split("-") for r in f.read().strip().split(",")]
    possible = sum(int(r[-1]) - int(r[0]) + 1 for r in spans)
    assert num_possible_cpus() == possible
    with BpfObject(HERE.parent / "probes" / "irq.bpf.o") as o:
        m = o.maps["hardirqs"]
        assert m.percpu and m.batch_entries() == min(256, BATCH_BYTES // (4 + 48 * possible))
        m._ncpu = 4096                                       # as on a 4096-CPU machine
        assert m.batch_entries() == BATCH_BYTES // (4 + 48 * 4096) == 42


def test_per_cpu_maps_read_the_same_with_a_tiny_batch(objs: Path) -> None:
    """irq.time's per-CPU maps, filled by the kernel (interrupts during the wait) and with
    synthetic lines sharing hash buckets, read the same one entry per call as by default:
    a bucket holding more than a batch (ENOSPC from the kernel) grows that batch."""
    with BpfObject(HERE.parent / "probes" / "irq.bpf.o") as o:
        _only(o, "btf_softirq_entry", "btf_softirq_exit", "btf_irq_entry", "btf_irq_exit")
        o.load()
        for p in ("btf_softirq_entry", "btf_softirq_exit", "btf_irq_entry", "btf_irq_exit"):
            o.programs[p].attach()
        soft, hard = o.maps["softirqs"], o.maps["hardirqs"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                any(int.from_bytes(c[:8], "little") for c in v) for _, v in soft.iter_batch()):  # type: ignore[union-attr]
            time.sleep(0.05)
        o.detach()
        ncpu = num_possible_cpus()
        for i in range(150):
            value = b"".join((i * 1000 + cpu + 1).to_bytes(8, "little").ljust(48, b"\0") for cpu in range(ncpu))
            hard.update(100_000 + i, value)
        for m in (soft, hard):
            default = m.lookup_batch()
            tiny = m.lookup_batch(max_bytes=1)
            assert m.batch_entries(max_bytes=1) == 1 and tiny == default
            assert all(isinstance(v, list) and len(v) == ncpu for _, v in default)
            assert {k: v for k, v in default} == {k: m.lookup(k) for k, _ in default}
        assert len(soft.lookup_batch()) == 10
        assert sum(any(int.from_bytes(c[:8], "little") for c in v) for _, v in soft.lookup_batch()) >= 1  # type: ignore[union-attr]
        synthetic = {int.from_bytes(k, "little", signed=True): v for k, v in hard.lookup_batch(max_bytes=1)
                     if int.from_bytes(k, "little", signed=True) >= 100_000}
        assert len(synthetic) == 150
        assert int.from_bytes(synthetic[100_007][-1][:8], "little") == 7000 + ncpu  # type: ignore[index]


def test_a_refusal_names_the_kernel_feature_it_shows_missing() -> None:
    """What 5.10's verifier and libbpf print when a probe needs more (seen loading the
    library's objects there), turned into the feature and the release that brought it."""
    from investigator.bpf.errors import BpfError, missing_feature
    assert missing_feature("invalid func unknown#175") == "this kernel lacks the helper bpf_task_pt_regs() (5.15+)"
    assert missing_feature("unknown func bpf_loop#181") == "this kernel lacks the helper bpf_loop() (5.17+)"
    assert "5.17+" in missing_feature("number of funcs in func_info doesn't match number of subprogs")
    assert "5.12+" in missing_feature("0: R1=ctx\nBPF_STX uses reserved fields\n")
    assert missing_feature("R1 invalid mem access 'scalar'") == ""
    e = BpfError("load futex.bpf.o", 22, verifier_log="processed 3 insns\ninvalid func unknown#191\n")
    assert e.detail().endswith("bpf_copy_from_user_task() (5.18+)"), e.detail()
