"""ctypes mirrors of the libbpf option structs this binding passes by pointer.

Each mirrors the C struct of libbpf 1.1 (Debian 12's libbpf1); newer libbpf releases only
append fields, and every struct starts with ``sz`` so libbpf accepts an older, shorter
layout. tests/test_bpf_structs.py compiles a C program against the installed
<bpf/libbpf.h> and compares sizes and offsets with these classes.
"""

from __future__ import annotations

import ctypes as C

size_t = C.c_size_t
u16, u32, u64, i32 = C.c_uint16, C.c_uint32, C.c_uint64, C.c_int


class OptsBase(C.Structure):
    """All libbpf opts start with ``size_t sz``; ``new()`` fills it in."""

    @classmethod
    def new(cls, **kw):  # type: ignore[no-untyped-def]
        o = cls(**kw)
        o.sz = C.sizeof(cls)
        return o


class ObjectOpenOpts(OptsBase):
    _c_skip_ = ("_attach_prog_fd",)            # an unnamed 32-bit pad in C
    _fields_ = [
        ("sz", size_t),
        ("object_name", C.c_char_p),
        ("relaxed_maps", C.c_bool),
        ("pin_root_path", C.c_char_p),
        ("_attach_prog_fd", u32),
        ("kconfig", C.c_char_p),
        ("btf_custom_path", C.c_char_p),
        ("kernel_log_buf", C.c_void_p),
        ("kernel_log_size", size_t),
        ("kernel_log_level", u32),
    ]


class KprobeOpts(OptsBase):
    _fields_ = [("sz", size_t), ("bpf_cookie", u64), ("offset", size_t), ("retprobe", C.c_bool)]


class UprobeOpts(OptsBase):
    _fields_ = [
        ("sz", size_t),
        ("ref_ctr_offset", size_t),
        ("bpf_cookie", u64),
        ("retprobe", C.c_bool),
        ("func_name", C.c_char_p),
    ]


class MapBatchOpts(OptsBase):
    _fields_ = [("sz", size_t), ("elem_flags", u64), ("flags", u64)]


class IterAttachOpts(OptsBase):
    _fields_ = [("sz", size_t), ("link_info", C.c_void_p), ("link_info_len", u32)]


class ProgLoadOpts(OptsBase):
    _fields_ = [
        ("sz", size_t),
        ("attempts", i32),
        ("expected_attach_type", i32),
        ("prog_btf_fd", u32),
        ("prog_flags", u32),
        ("prog_ifindex", u32),
        ("kern_version", u32),
        ("attach_btf_id", u32),
        ("attach_prog_fd", u32),
        ("attach_btf_obj_fd", u32),
        ("fd_array", C.c_void_p),
        ("func_info", C.c_void_p),
        ("func_info_cnt", u32),
        ("func_info_rec_size", u32),
        ("line_info", C.c_void_p),
        ("line_info_cnt", u32),
        ("line_info_rec_size", u32),
        ("log_level", u32),
        ("log_size", u32),
        ("log_buf", C.c_void_p),
    ]


class BtfType(C.Structure):
    """struct btf_type (uapi/linux/btf.h): name_off, info, size-or-type."""

    _c_names_ = {"size_or_type": "size"}

    _fields_ = [("name_off", u32), ("info", u32), ("size_or_type", u32)]


class BtfVarSecinfo(C.Structure):
    _fields_ = [("type", u32), ("offset", u32), ("size", u32)]


class BpfInsn(C.Structure):
    """struct bpf_insn: one eBPF instruction (code, dst:4/src:4, off, imm)."""

    _c_skip_ = ("regs",)                        # dst_reg:4, src_reg:4 bitfields

    _fields_ = [("code", C.c_uint8), ("regs", C.c_uint8), ("off", C.c_int16), ("imm", C.c_int32)]


class PerfEventAttr(C.Structure):
    """struct perf_event_attr (uapi/linux/perf_event.h), PERF_ATTR_SIZE_VER7 = 128 bytes (config3, 6.3+, is not needed)."""

    _c_names_ = {"sample_period_or_freq": "sample_period", "_reserved_2": "__reserved_2",
                 "_reserved_3": "__reserved_3"}
    _c_skip_ = ("flags",)                       # 64 bits of bitfields in C

    _fields_ = [
        ("type", u32), ("size", u32), ("config", u64), ("sample_period_or_freq", u64),
        ("sample_type", u64), ("read_format", u64), ("flags", u64), ("wakeup_events", u32),
        ("bp_type", u32), ("config1", u64), ("config2", u64), ("branch_sample_type", u64),
        ("sample_regs_user", u64), ("sample_stack_user", u32), ("clockid", i32),
        ("sample_regs_intr", u64), ("aux_watermark", u32), ("sample_max_stack", u16),
        ("_reserved_2", u16), ("aux_sample_size", u32), ("_reserved_3", u32),
        ("sig_data", u64),
    ]


# (C struct name, Python class, header) for the layout test.
CHECKED = [
    ("bpf_object_open_opts", ObjectOpenOpts, "bpf/libbpf.h"),
    ("bpf_kprobe_opts", KprobeOpts, "bpf/libbpf.h"),
    ("bpf_uprobe_opts", UprobeOpts, "bpf/libbpf.h"),
    ("bpf_map_batch_opts", MapBatchOpts, "bpf/bpf.h"),
    ("bpf_iter_attach_opts", IterAttachOpts, "bpf/libbpf.h"),
    ("bpf_prog_load_opts", ProgLoadOpts, "bpf/bpf.h"),
    ("btf_type", BtfType, "linux/btf.h"),
    ("btf_var_secinfo", BtfVarSecinfo, "linux/btf.h"),
    ("bpf_insn", BpfInsn, "linux/bpf.h"),
    ("perf_event_attr", PerfEventAttr, "linux/perf_event.h"),
]
