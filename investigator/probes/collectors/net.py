"""Evidence of ``net.rx`` (probes/net.bpf.c): per receiving context (the task in whose
context packets were received), the tasks whose packets they were -- the senders that
queued them, and the tasks the NET_RX work woke (those waiting on the sockets the packets
went to)."""

from __future__ import annotations

import ctypes as C
from typing import Any

from ...finding import Finding, Task
from ._common import ProbeCollector, cstr, task_entity

TOP = 20            # receiving contexts listed
TOP_TASKS = 5       # senders and woken tasks named per context
WOKEN_MIN, WOKEN_PER = 10, 1000     # a woken task is listed when woken that often, and once per that many packets
WOKEN_SHARE = 10    # a woken task is a culprit with at least 1/WOKEN_SHARE of the top one's wakeups
NETRX_PENDING, NETRX_PAIRS = 16384, 4096     # probes/net.h
u32, u64 = C.c_uint32, C.c_uint64


class NetrxKey(C.Structure):
    _fields_ = [("charged_tid", u32), ("other_tid", u32)]


class NetrxCount(C.Structure):
    _fields_ = [("packets", u64), ("bytes", u64), ("charged_tgid", u32), ("other_tgid", u32),
                ("charged_comm", C.c_char * 16), ("other_comm", C.c_char * 16)]


class NetrxPkt(C.Structure):
    _fields_ = [("sender_tid", u32), ("sender_tgid", u32), ("sender_comm", C.c_char * 16), ("queued_ns", u64)]


class NetrxCpu(C.Structure):
    _fields_ = [("softirq_ns", u64), ("hardirq_ns", u64), ("vec", u32), ("pad", u32)]


LAYOUTS = {"netrx_key": NetrxKey, "netrx_count": NetrxCount, "netrx_pkt": NetrxPkt, "netrx_cpu": NetrxCpu}
CONSTANTS = {"NETRX_PENDING": NETRX_PENDING, "NETRX_PAIRS": NETRX_PAIRS}


def _names(tasks: list[dict[str, Any]], others: int, what: str, unit: str) -> str:
    """"a (tid 1, 97% of the packets), b (tid 2, ...)" and how many more; "" for none."""
    s = ", ".join(f"{t['comm']} (tid {t['tid']}, {t['share_pct']}% of the {unit})" if unit == "packets"
                  else f"{t['comm']} (tid {t['tid']}, {t['wakeups']} {unit})" for t in tasks)
    return s + (f" and {others} more {what}" if others and s else "")


def contexts(senders: list[tuple[NetrxKey, NetrxCount]],
             woken: list[tuple[NetrxKey, NetrxCount]]) -> list[dict[str, Any]]:
    """The receiving contexts, most packets first: each with its senders (the packets no
    task queued counted as ``from_device``), the top ones with their share of its packets,
    and the tasks its NET_RX work woke, the top ones with their wakeups."""
    by: dict[int, dict[str, Any]] = {}
    for k, c in senders:
        ctx = by.setdefault(k.charged_tid, {**task_entity(k.charged_tid, c.charged_tgid, cstr(c.charged_comm)),
                                            "packets": 0, "bytes": 0, "from_device": 0, "_s": [], "_w": []})
        ctx["packets"] += c.packets
        ctx["bytes"] += c.bytes
        if k.other_tid:
            ctx["_s"].append({**task_entity(k.other_tid, c.other_tgid, cstr(c.other_comm)), "packets": c.packets})
        else:
            ctx["from_device"] += c.packets
    for k, c in woken:
        ctx = by.get(k.charged_tid)
        if ctx is not None and k.other_tid != k.charged_tid:
            ctx["_w"].append({**task_entity(k.other_tid, c.other_tgid, cstr(c.other_comm)), "wakeups": c.packets})
    out = []
    for ctx in by.values():
        n = max(1, ctx["packets"])
        senders_ = sorted(ctx.pop("_s"), key=lambda t: (-t["packets"], t["tid"]))
        for t in senders_:
            t["share_pct"] = round(100.0 * t["packets"] / n, 1)
        # a task woken a few times inside the softirq (by a timer interrupt nested in it) is
        # not one the packets woke
        woken_ = sorted((t for t in ctx.pop("_w") if t["wakeups"] >= WOKEN_MIN and t["wakeups"] * WOKEN_PER >= n),
                        key=lambda t: (-t["wakeups"], t["tid"]))
        ctx["senders"], ctx["senders_others"] = senders_[:TOP_TASKS], max(0, len(senders_) - TOP_TASKS)
        ctx["woken"], ctx["woken_others"] = woken_[:TOP_TASKS], max(0, len(woken_) - TOP_TASKS)
        ctx["from_tasks_pct"] = round(100.0 * (ctx["packets"] - ctx["from_device"]) / n, 1)
        ctx["who_sent"] = _names(ctx["senders"], ctx["senders_others"], "senders", "packets")
        ctx["who_woken"] = _names(ctx["woken"], ctx["woken_others"], "tasks", "wakeups")
        out.append(ctx)
    out.sort(key=lambda c: (-c["packets"], c["tid"]))
    return out


def worst_finding(ctx: dict[str, Any] | None) -> Finding:
    """The receiving context with the most packets as a finding: it is the victim; the
    tasks whose packets they were -- its senders, and the tasks its NET_RX work woke with a
    tenth of the most-woken one's wakeups or more -- are the culprits (``as``: sender or
    woken)."""
    if ctx is None:
        return Finding.empty(**task_entity(0, 0, ""), packets=0, bytes=0, from_device=0, from_tasks_pct=0.0,
                             senders=[], woken=[], senders_others=0, woken_others=0, who_sent="", who_woken="")
    tasks = [Task.of(ctx, "victim")]
    seen = {ctx["tid"]}
    top_wakeups = max((t["wakeups"] for t in ctx["woken"]), default=0)
    for as_, ts in (("sender", ctx["senders"]), ("woken", ctx["woken"])):
        for t in ts:
            if t["tid"] in seen or t.get("investigator"):
                continue
            # a task woken now and then inside the softirq (by a timer's interrupt) is no
            # socket's owner beside one the packets woke thousands of times
            if as_ == "woken" and t["wakeups"] * WOKEN_SHARE < top_wakeups:
                continue
            seen.add(t["tid"])
            extra = {"as": as_, **({"packets": t["packets"], "share_pct": t["share_pct"]} if as_ == "sender"
                                   else {"wakeups": t["wakeups"]})}
            tasks.append(Task(t["tid"], t["pid"], t["comm"], "culprit", extra=extra))
    return Finding(tasks=tasks, details=dict(ctx))


class Collector(ProbeCollector):

    def finish(self, inst: Any) -> dict[str, Any]:
        maps = inst.obj.maps
        s = [(NetrxKey.from_buffer_copy(k), NetrxCount.from_buffer_copy(v))
             for k, v in maps["senders"].lookup_batch(limit=NETRX_PAIRS)]
        w = [(NetrxKey.from_buffer_copy(k), NetrxCount.from_buffer_copy(v))
             for k, v in maps["woken"].lookup_batch(limit=NETRX_PAIRS)]
        ctxs = [c for c in contexts(s, w) if not c.get("investigator")]
        return {
            "packets": sum(c["packets"] for c in ctxs),
            "contexts": ctxs[:TOP],
            "contexts_count": len(ctxs),
            "worst": worst_finding(ctxs[0] if ctxs else None).to_dict(),
            "pairs_full": len(s) >= NETRX_PAIRS or len(w) >= NETRX_PAIRS,
        }
