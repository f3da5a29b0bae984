"""BPF objects, programs, maps and links: the lifecycle open -> configure -> load -> attach.

Nothing is ever pinned: links and maps live as file descriptors of this process, so the
kernel detaches and frees them when it exits, however it exits (SIGKILL included).
"""

from __future__ import annotations

import ctypes as C
import errno as E
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._lib import LOG, RB_SAMPLE_FN, lib, num_possible_cpus
from .errors import BpfError
from .structs import (BtfType, BtfVarSecinfo, IterAttachOpts, KprobeOpts, MapBatchOpts,
                      ObjectOpenOpts, UprobeOpts)

# errors of a first BPF_MAP_LOOKUP_BATCH that mean "not for this map type here": ENOTSUPP
# (524) is the kernel's own, returned as is by map types without the batch operation
ENOTSUPP = 524
NO_BATCH = frozenset({E.EINVAL, E.ENOTSUP, E.EOPNOTSUPP, E.ENOSYS, E.EPERM, ENOTSUPP})

BTF_KIND_DATASEC = 15
# enum bpf_map_type values whose lookups return one value per possible CPU.
PERCPU_MAP_TYPES = {5, 6, 10, 21}  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH, PERCPU_CGROUP_STORAGE
MAP_TYPE_STACK_TRACE = 7
MAP_TYPE_RINGBUF = 27
# One batch lookup's key and value buffers stay under this (a per-CPU map's value holds
# one slot per possible CPU: 4096 CPUs make a 48-byte value 192 KiB).
BATCH_BYTES = 8 << 20


def batch_entries(key_size: int, value_bytes: int, max_entries: int, max_bytes: int = BATCH_BYTES) -> int:
    """How many entries one BPF_MAP_LOOKUP_BATCH call asks for: as many as fit in
    ``max_bytes`` of key and value buffers (``value_bytes`` is what one entry's value takes
    in user space, every CPU's slot for a per-CPU map), at most the map's size, at least 1."""
    return max(1, min(max_entries, max_bytes // max(1, key_size + value_bytes)))


def _err_from_ptr(ptr: int | None, what: str, mark: int) -> int:
    if not ptr:
        err = C.get_errno() or E.EINVAL
        raise BpfError(what, err, LOG.since(mark))
    return ptr


def _check(rc: int, what: str, mark: int | None = None) -> int:
    if rc < 0:
        raise BpfError(what, -rc, LOG.since(mark) if mark is not None else "")
    return rc


class Link:
    """An attachment.  ``destroy()`` detaches it; so does the process exiting."""

    def __init__(self, ptr: int, kind: str, target: str) -> None:
        self._ptr: int | None = ptr
        self.kind = kind          # tp_btf, raw_tp, tracepoint, kprobe, fentry, iter, ...
        self.target = target

    @property
    def fd(self) -> int:
        if not self._ptr:
            raise BpfError(f"link {self.target}", E.EBADF)
        return int(lib().bpf_link__fd(self._ptr))

    @property
    def attached(self) -> bool:
        return self._ptr is not None

    def read_iter(self, limit: int = 64 << 20) -> bytes:
        """Run a BPF iterator link once and return everything it wrote (at most ``limit`` bytes)."""
        ifd = _check(lib().bpf_iter_create(self.fd), f"bpf_iter_create {self.target}")
        chunks, total = [], 0
        try:
            while total < limit:
                try:
                    b = os.read(ifd, 1 << 16)
                except InterruptedError:  # pragma: no cover - PEP 475 retries already
                    continue
                if not b:
                    break
                chunks.append(b)
                total += len(b)
        finally:
            os.close(ifd)
        return b"".join(chunks)

    def destroy(self) -> None:
        if self._ptr:
            lib().bpf_link__destroy(self._ptr)
            self._ptr = None

    def __repr__(self) -> str:
        return f"<Link {self.kind}:{self.target}{'' if self._ptr else ' detached'}>"


class Program:
    def __init__(self, obj: BpfObject, ptr: int) -> None:
        self._obj = obj
        self._ptr = ptr
        self.name: str = lib().bpf_program__name(ptr).decode()
        self.section: str = lib().bpf_program__section_name(ptr).decode()
        self._log_buf: C.Array[C.c_char] | None = None
        self._log_map: mmap.mmap | None = None
        self._target = ""

    @property
    def fd(self) -> int:
        return int(lib().bpf_program__fd(self._ptr))

    @property
    def kind(self) -> str:
        """The hook kind from the section name: tp_btf, raw_tp, tracepoint, kprobe, fentry, iter..."""
        head = self.section.split("/", 1)[0].removesuffix(".s")   # sleepable variants (iter.s, fentry.s)
        return {"tp": "tracepoint", "raw_tracepoint": "raw_tp", "kretprobe": "kretprobe",
                "fmod_ret": "fentry"}.get(head, head)

    @property
    def target(self) -> str:
        if self._target:
            return self._target
        return self.section.split("/", 1)[1] if "/" in self.section else ""

    @property
    def autoload(self) -> bool:
        return bool(lib().bpf_program__autoload(self._ptr))

    @autoload.setter
    def autoload(self, on: bool) -> None:
        _check(lib().bpf_program__set_autoload(self._ptr, on), f"set_autoload {self.name}")

    def set_attach_target(self, func: str) -> None:
        """Before load: the kernel function a fentry/fexit program traces (overrides its
        section's placeholder)."""
        self._target = func
        _check(lib().bpf_program__set_attach_target(self._ptr, 0, func.encode()),
               f"set_attach_target {self.name} {func}")

    def capture_verifier_log(self, size: int = 1 << 20, level: int = 0) -> None:
        """Before load: keep this program's verifier log in a buffer of our own.

        With level 0 the kernel is asked for a log only when the load fails (libbpf retries
        with level 1), which costs nothing on success: the buffer is an anonymous mapping
        whose pages exist only once the kernel writes a log into them, released after a
        load that succeeded (``release_verifier_log``).
        """
        self.release_verifier_log()
        self._log_map = mmap.mmap(-1, size)
        self._log_buf = (C.c_char * size).from_buffer(self._log_map)
        lib().bpf_program__set_log_buf(self._ptr, self._log_buf, size)
        if level:
            lib().bpf_program__set_log_level(self._ptr, level)

    def release_verifier_log(self) -> None:
        if self._log_buf is not None and self._ptr:
            lib().bpf_program__set_log_buf(self._ptr, None, 0)
        self._log_buf = None
        if self._log_map is not None:
            self._log_map.close()
            self._log_map = None

    @property
    def verifier_log(self) -> str:
        return self._log_buf.value.decode(errors="replace") if self._log_buf is not None else ""

    def _link(self, ptr: int | None, kind: str, target: str, mark: int) -> Link:
        link = Link(_err_from_ptr(ptr, f"attach {kind}:{target} ({self.name})", mark), kind, target)
        self._obj._links.append(link)
        return link

    def attach(self) -> Link:
        """Attach as the section name says (tp_btf/..., raw_tp/..., tp/cat/name, kprobe/fn, ...)."""
        mark = LOG.mark()
        C.set_errno(0)
        return self._link(lib().bpf_program__attach(self._ptr), self.kind, self.target, mark)

    def attach_tracepoint(self, category: str, name: str) -> Link:
        mark = LOG.mark()
        C.set_errno(0)
        p = lib().bpf_program__attach_tracepoint(self._ptr, category.encode(), name.encode())
        return self._link(p, "tracepoint", f"{category}:{name}", mark)

    def attach_raw_tracepoint(self, name: str) -> Link:
        mark = LOG.mark()
        C.set_errno(0)
        return self._link(lib().bpf_program__attach_raw_tracepoint(self._ptr, name.encode()),
                          "raw_tp", name, mark)

    def attach_trace(self) -> Link:
        """tp_btf, fentry, fexit, fmod_ret: the target was fixed at load time."""
        mark = LOG.mark()
        C.set_errno(0)
        return self._link(lib().bpf_program__attach_trace(self._ptr), self.kind, self.target, mark)

    def attach_kprobe(self, func: str, retprobe: bool = False, offset: int = 0) -> Link:
        opts = KprobeOpts.new(retprobe=retprobe, offset=offset)
        mark = LOG.mark()
        C.set_errno(0)
        p = lib().bpf_program__attach_kprobe_opts(self._ptr, func.encode(), C.byref(opts))
        return self._link(p, "kretprobe" if retprobe else "kprobe", func, mark)

    def attach_uprobe(self, binary: str, func: str, pid: int = -1, retprobe: bool = False) -> Link:
        """A uprobe on ``func`` (a symbol, resolved by libbpf) in ``binary``; pid -1 = every process."""
        opts = UprobeOpts.new(retprobe=retprobe, func_name=func.encode())
        mark = LOG.mark()
        C.set_errno(0)
        p = lib().bpf_program__attach_uprobe_opts(self._ptr, pid, binary.encode(), 0, C.byref(opts))
        return self._link(p, "uretprobe" if retprobe else "uprobe", f"{binary}:{func}", mark)

    def attach_perf_event(self, perf_fd: int, target: str = "perf_event") -> Link:
        """Attach to an open perf event; on success the link owns perf_fd (closed on detach)."""
        mark = LOG.mark()
        C.set_errno(0)
        return self._link(lib().bpf_program__attach_perf_event(self._ptr, perf_fd),
                          "perf_event", target, mark)

    def attach_iter(self) -> Link:
        opts = IterAttachOpts.new()
        mark = LOG.mark()
        C.set_errno(0)
        return self._link(lib().bpf_program__attach_iter(self._ptr, C.byref(opts)),
                          "iter", self.target, mark)


class Map:
    """A BPF map.  Keys and values are bytes (ints are accepted as keys)."""

    def __init__(self, ptr: int) -> None:
        L = lib()
        self._ptr = ptr
        self.name: str = L.bpf_map__name(ptr).decode()
        self.type: int = L.bpf_map__type(ptr)
        self.key_size: int = L.bpf_map__key_size(ptr)
        self.value_size: int = L.bpf_map__value_size(ptr)
        self.percpu = self.type in PERCPU_MAP_TYPES
        self._stride = (self.value_size + 7) & ~7
        self._ncpu = num_possible_cpus() if self.percpu else 1

    @property
    def fd(self) -> int:
        return int(lib().bpf_map__fd(self._ptr))

    @property
    def max_entries(self) -> int:
        return int(lib().bpf_map__max_entries(self._ptr))

    def set_max_entries(self, n: int) -> None:
        """Before load only: size the map (every map stays bounded)."""
        _check(lib().bpf_map__set_max_entries(self._ptr, n), f"set_max_entries {self.name}")

    @property
    def _vbuf_size(self) -> int:
        return self._stride * self._ncpu if self.percpu else self.value_size

    def _key(self, key: bytes | int) -> C.Array[C.c_char]:
        if isinstance(key, int):
            key = key.to_bytes(self.key_size, "little")
        if len(key) != self.key_size:
            raise ValueError(f"map {self.name}: key of {len(key)} bytes, expected {self.key_size}")
        return C.create_string_buffer(key, self.key_size)

    def _split(self, raw: bytes | memoryview) -> bytes | list[bytes]:
        if self.percpu:
            st, vs = self._stride, self.value_size
            return [bytes(raw[i * st:i * st + vs]) for i in range(self._ncpu)]
        return bytes(raw[:self.value_size])

    def lookup(self, key: bytes | int) -> bytes | list[bytes] | None:
        """The value (a list, one per possible CPU, for per-CPU maps), or None if absent."""
        v = C.create_string_buffer(self._vbuf_size)
        rc = lib().bpf_map_lookup_elem(self.fd, self._key(key), v)
        if rc < 0:
            if -rc == E.ENOENT or C.get_errno() == E.ENOENT:
                return None
            raise BpfError(f"lookup {self.name}", -rc)
        return self._split(v.raw)

    def update(self, key: bytes | int, value: bytes, flags: int = 0) -> None:
        buf = C.create_string_buffer(bytes(value), self._vbuf_size)
        _check(lib().bpf_map_update_elem(self.fd, self._key(key), buf, flags), f"update {self.name}")

    def delete(self, key: bytes | int) -> bool:
        return lib().bpf_map_delete_elem(self.fd, self._key(key)) == 0

    def keys(self, limit: int | None = None) -> Iterator[bytes]:
        """Keys by bpf_map_get_next_key (works on every map type and kernel)."""
        cur: C.Array[C.c_char] | None = None
        nxt = C.create_string_buffer(self.key_size)
        n = 0
        fd = self.fd
        while lib().bpf_map_get_next_key(fd, cur, nxt) == 0:
            yield nxt.raw
            n += 1
            if limit is not None and n >= limit:
                return
            cur = C.create_string_buffer(nxt.raw, self.key_size)

    def items(self, limit: int | None = None) -> list[tuple[bytes, bytes | list[bytes]]]:
        """All (key, value) pairs: one batch syscall per chunk where the kernel has it."""
        return list(self.iter_items(limit))

    def iter_items(self, limit: int | None = None) -> Iterator[tuple[bytes, bytes | list[bytes]]]:
        """(key, value) pairs as they are read, batch by batch where the kernel has batch
        lookups for this map type (key by key otherwise): the caller holds one batch at a
        time, never the map."""
        return self.iter_batch(limit=limit)

    def batch_entries(self, max_bytes: int = BATCH_BYTES) -> int:
        """Entries per BPF_MAP_LOOKUP_BATCH call for this map (see ``batch_entries``)."""
        return batch_entries(self.key_size, self._vbuf_size, self.max_entries, max_bytes)

    def lookup_batch(self, chunk: int | None = None, limit: int | None = None,
                     max_bytes: int = BATCH_BYTES) -> list[tuple[bytes, bytes | list[bytes]]]:
        """BPF_MAP_LOOKUP_BATCH (hash and array maps, kernel >= 5.6), as a list."""
        return list(self.iter_batch(chunk, limit, max_bytes))

    def _iter_one_by_one(self, limit: int | None) -> Iterator[tuple[bytes, bytes | list[bytes]]]:
        for k in self.keys(limit):
            v = self.lookup(k)
            if v is not None:
                yield k, v

    def iter_batch(self, chunk: int | None = None, limit: int | None = None,
                   max_bytes: int = BATCH_BYTES) -> Iterator[tuple[bytes, bytes | list[bytes]]]:
        """BPF_MAP_LOOKUP_BATCH, yielding each entry as it is decoded.

        One call's buffers hold ``chunk`` entries, by default as many as fit in
        ``max_bytes`` (a per-CPU value holds one slot per possible CPU).  A hash bucket
        holding more entries than that makes the kernel answer ENOSPC: the chunk then
        doubles, up to the map's size, for that bucket's sake.  Where the kernel has no
        batch lookup for this map type (before 5.6, or a per-CPU array on 5.10: ENOTSUPP),
        the entries are read key by key.
        """
        ks, vs = self.key_size, self._vbuf_size
        cap = max(1, self.max_entries)
        chunk = max(1, min(chunk or self.batch_entries(max_bytes), cap))
        in_b: C.Array[C.c_char] | None = None
        out_b = C.create_string_buffer(max(ks, 4))
        keys = C.create_string_buffer(ks * chunk)
        vals = C.create_string_buffer(vs * chunk)
        opts = MapBatchOpts.new()
        fd = self.fd
        n = 0
        while True:
            cnt = C.c_uint32(chunk)
            rc = lib().bpf_map_lookup_batch(fd, in_b, out_b, keys, vals, C.byref(cnt), C.byref(opts))
            err = -rc if rc < 0 else 0
            if err == E.ENOSPC and cnt.value == 0 and chunk < cap:
                chunk = min(cap, chunk * 2)
                keys = C.create_string_buffer(ks * chunk)
                vals = C.create_string_buffer(vs * chunk)
                continue
            if err in NO_BATCH and in_b is None:
                yield from self._iter_one_by_one(limit)
                return
            if err and err != E.ENOENT:
                raise BpfError(f"lookup_batch {self.name}", err)
            kmv, vmv = memoryview(keys).cast("B"), memoryview(vals).cast("B")
            for i in range(cnt.value):
                yield bytes(kmv[i * ks:(i + 1) * ks]), self._split(vmv[i * vs:(i + 1) * vs])
                n += 1
                if limit is not None and n >= limit:
                    return
            if err == E.ENOENT:
                return
            in_b = C.create_string_buffer(out_b.raw, len(out_b.raw))

    def stack(self, stack_id: int, depth: int = 127) -> list[int]:
        """Addresses of one stack in a BPF_MAP_TYPE_STACK_TRACE map (innermost first)."""
        if stack_id < 0:
            return []
        raw = self.lookup(stack_id.to_bytes(4, "little"))
        if raw is None or isinstance(raw, list):
            return []
        n = min(depth, len(raw) // 8)
        addrs = [int.from_bytes(raw[i * 8:i * 8 + 8], "little") for i in range(n)]
        return [a for a in addrs if a]


class BpfObject:
    """One compiled ``.bpf.o``: open it, set its read-only globals, load, attach, read maps.

    Use as a context manager or call ``close()``: links are destroyed, then the object
    (programs and maps) is freed.
    """

    def __init__(self, path: str | Path, name: str | None = None, log_size: int = 1 << 16,
                 btf_custom_path: str | None = None) -> None:
        """``btf_custom_path``: the kernel's BTF from a file (kernels built without
        /sys/kernel/btf/vmlinux; see BTFHub) for CO-RE relocations; defaults to
        ``features.custom_btf()``."""
        from . import features
        self.path = str(path)
        self._links: list[Link] = []
        self._klog = C.create_string_buffer(log_size)
        self._btf = (btf_custom_path or features.custom_btf() or "").encode() or None
        self._opts = ObjectOpenOpts.new(kernel_log_buf=C.cast(self._klog, C.c_void_p),
                                        kernel_log_size=log_size,
                                        object_name=name.encode() if name else None,
                                        btf_custom_path=self._btf)
        mark = LOG.mark()
        C.set_errno(0)
        self._ptr: int | None = _err_from_ptr(
            lib().bpf_object__open_file(self.path.encode(), C.byref(self._opts)), f"open {self.path}", mark)
        self.loaded = False
        self.maps: dict[str, Map] = {}
        self.programs: dict[str, Program] = {}
        L = lib()
        m = None
        while (m := L.bpf_object__next_map(self._ptr, m)):
            mp = Map(m)
            self.maps[mp.name] = mp
        p = None
        while (p := L.bpf_object__next_program(self._ptr, p)):
            pr = Program(self, p)
            self.programs[pr.name] = pr

    # -- read-only parameters (``const volatile`` globals), written before load --------------
    def _datasec(self, section: str) -> dict[str, tuple[int, int]]:
        L = lib()
        btf = L.bpf_object__btf(self._ptr)
        if not btf:
            raise KeyError(f"{self.path} has no BTF")
        tid = L.btf__find_by_name_kind(btf, section.encode(), BTF_KIND_DATASEC)
        if tid < 0:
            raise KeyError(f"{self.path} has no {section} section")
        t = L.btf__type_by_id(btf, tid).contents
        vlen = t.info & 0xFFFF
        arr = C.cast(C.addressof(t) + C.sizeof(BtfType), C.POINTER(BtfVarSecinfo * vlen)).contents
        out = {}
        for vs in arr:
            v = L.btf__type_by_id(btf, vs.type).contents
            out[L.btf__name_by_offset(btf, v.name_off).decode()] = (vs.offset, vs.size)
        return out

    def globals(self, section: str = ".rodata") -> dict[str, tuple[int, int]]:
        """Name -> (offset, size) of the variables in a data section."""
        return self._datasec(section)

    def _global(self, name: str, section: str) -> tuple[Map, int, int]:
        """The map holding a data section and one variable's (offset, size) in it."""
        mp = next((m for m in self.maps.values() if m.name.endswith(section)), None)
        if mp is None:
            raise KeyError(f"{self.path} has no {section} map")
        try:
            off, size = self._datasec(section)[name]
        except KeyError:
            raise KeyError(f"{self.path}: no global {name!r} in {section}") from None
        return mp, off, size

    def set_global(self, name: str, value: int | bytes, section: str = ".rodata") -> None:
        if self.loaded:
            raise RuntimeError(f"{self.path}: globals of {section} are fixed once loaded")
        mp, off, size = self._global(name, section)
        if isinstance(value, int):
            value = value.to_bytes(size, "little", signed=value < 0)
        if len(value) != size:
            raise ValueError(f"{name}: {len(value)} bytes given, the variable has {size}")
        n = C.c_size_t(0)
        mark = LOG.mark()
        base = _err_from_ptr(lib().bpf_map__initial_value(mp._ptr, C.byref(n)), "bpf_map__initial_value", mark)
        if off + size > n.value:
            raise ValueError(f"{name}: outside {section}")
        C.memmove(base + off, value, size)

    def read_global(self, name: str, section: str = ".bss") -> int:
        """A writable global's current value (``.bss``, ``.data``, read from its map) as an
        unsigned integer."""
        mp, off, size = self._global(name, section)
        raw = mp.lookup(0)
        if not isinstance(raw, bytes) or off + size > len(raw):
            raise ValueError(f"{name}: outside {section}")
        return int.from_bytes(raw[off:off + size], "little")

    def load(self) -> None:
        for p in self.programs.values():
            if p._log_buf is None:
                p.capture_verifier_log()
        mark = LOG.mark()
        rc = lib().bpf_object__load(self._ptr)
        if rc < 0:
            vlog = "\n".join(p.verifier_log for p in self.programs.values() if p.verifier_log)
            raise BpfError(f"load {os.path.basename(self.path)}", -rc, LOG.since(mark), vlog)
        self.loaded = True
        for p in self.programs.values():
            p.release_verifier_log()

    @property
    def kernel_log(self) -> str:
        return self._klog.value.decode(errors="replace")

    @property
    def links(self) -> list[Link]:
        return [link for link in self._links if link.attached]

    def ringbuf(self, map_name: str, callback: Any) -> RingBuffer:
        return RingBuffer(self.maps[map_name], callback)

    def detach(self, keep_iterators: bool = False) -> None:
        """Destroy the links (with ``keep_iterators``, those that run on events only: an
        iterator's link runs nothing until it is read)."""
        kept = [link for link in self._links if keep_iterators and link.kind == "iter"]
        for link in self._links:
            if link not in kept:
                link.destroy()
        self._links = kept

    def close(self) -> None:
        self.detach()
        if self._ptr:
            lib().bpf_object__close(self._ptr)
            self._ptr = None

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten object still releases its fds
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class RingBuffer:
    """A BPF ring buffer consumer: ``callback(data: bytes)`` per record."""

    def __init__(self, m: Map, callback: Any) -> None:
        if m.type != MAP_TYPE_RINGBUF:
            raise ValueError(f"map {m.name} is not a ring buffer")

        def _cb(_ctx: int, data: int, size: int) -> int:
            try:
                callback(C.string_at(data, size))
            except Exception:  # never let an exception unwind through C
                self.errors += 1
            return 0

        self.errors = 0
        self._cb = RB_SAMPLE_FN(_cb)
        mark = LOG.mark()
        C.set_errno(0)
        self._ptr: int | None = _err_from_ptr(lib().ring_buffer__new(m.fd, self._cb, None, None),
                                              f"ring_buffer__new {m.name}", mark)

    def poll(self, timeout_ms: int = 100) -> int:
        """Wait up to timeout_ms for records; returns how many were consumed."""
        rc = lib().ring_buffer__poll(self._ptr, timeout_ms)
        if rc < 0 and rc != -E.EINTR:
            raise BpfError("ring_buffer__poll", -rc)
        return max(rc, 0)

    def consume(self) -> int:
        return max(int(lib().ring_buffer__consume(self._ptr)), 0)

    def free(self) -> None:
        if self._ptr:
            lib().ring_buffer__free(self._ptr)
            self._ptr = None

    def __del__(self) -> None:
        self.free()
