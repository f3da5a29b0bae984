"""The command line: parse arguments and call the stage that does the work.

    investigate PLAYBOOK [--window S] [--json] [--out DIR] ...   run an investigation
    investigate validate PLAYBOOK...                              check playbooks
    investigate doctor                                            what this machine allows
    investigate graph PLAYBOOK [--format mermaid|dot|text]        draw the graph
    investigate schema                                            JSON Schema of playbooks
    investigate probes [NAME]                                     the probe library
    investigate replay BUNDLE [--playbook FILE] [--json]          re-conclude offline
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import exitcodes

COMMANDS = ("run", "validate", "doctor", "graph", "schema", "probes", "replay", "test", "new")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="investigate", description="Find out live why a Linux machine "
                                "stopped making progress, with CO-RE BPF playbooks.")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    r = sub.add_parser("run", help="run a playbook (the default: investigate PLAYBOOK)")
    r.add_argument("playbook")
    r.add_argument("--window", type=float, metavar="SECONDS", help="observation window of every node (a node that sets a shorter one of its own keeps it)")
    r.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="sets",
                   help="override one of the playbook's vars (VALUE in YAML: 1, [0, 1], text); repeatable")
    r.add_argument("--max-time", type=float, default=600.0, metavar="SECONDS",
                   help="time budget of the whole run (default 600)")
    r.add_argument("--pid", type=int, default=0, help="only observe this process (in-kernel filter)")
    r.add_argument("--comm", default="", help="only observe tasks with this command name (in-kernel filter)")
    r.add_argument("--cgroup", default="", metavar="PATH",
                   help="only observe tasks of this cgroup v2 subtree (in-kernel filter)")
    r.add_argument("--json", action="store_true", help="print the JSON report on stdout, nothing else")
    r.add_argument("--out", type=Path, metavar="DIR", help="bundle directory (default ./investigations/NAME-TIME)")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    r.add_argument("--plain", action="store_true", help="progress as plain lines even on a terminal")
    r.add_argument("--allow-custom-probes", action="store_true",
                   help="allow custom code: bpftrace programs and probes from the playbook's folder "
                   "(local/NAME, BPF objects that did not ship with investigator)")
    r.add_argument("--btf", metavar="FILE", help="BTF of the running kernel, for kernels built without "
                   "/sys/kernel/btf/vmlinux (e.g. from BTFHub)")
    r.add_argument("--max-overhead", type=float, default=5.0, metavar="PERCENT",
                   help="detach probes whose estimated CPU cost exceeds this share of the machine (default 5)")
    r.add_argument("--nice", type=int, default=None, metavar="N",
                   help="run at niceness N when started at 0 (a niceness the run was started with is kept); "
                        "default: unchanged. A negative N gets the run's short bursts of work a CPU on a "
                        "saturated machine, at the cost of the tasks it investigates")
    v = sub.add_parser("validate", help="validate playbooks without running them")
    v.add_argument("playbooks", nargs="+")
    v.add_argument("--allow-custom-probes", action="store_true",
                   help="check playbooks that use bpftrace programs or probes from their own folder")
    d = sub.add_parser("doctor", help="check what this machine lets the tool do, and what each node of "
                       "a playbook could observe here")
    d.add_argument("playbooks", nargs="*", help="playbooks whose probes to attach (and detach at once)")
    d.add_argument("--allow-custom-probes", action="store_true",
                   help="also attach the probes from a playbook's own folder")
    g = sub.add_parser("graph", help="render a playbook's graph")
    g.add_argument("playbook")
    g.add_argument("--format", choices=("mermaid", "dot", "text"), default="text")
    sub.add_parser("schema", help="print the playbook JSON Schema")
    pr = sub.add_parser("probes", help="list the probe library, or describe one probe")
    pr.add_argument("name", nargs="?")
    rp = sub.add_parser("replay", help="re-evaluate a bundle's conclusions offline")
    rp.add_argument("bundle", type=Path)
    rp.add_argument("--playbook", type=Path, help="an edited playbook to evaluate instead")
    rp.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="sets",
                    help="evaluate with one of the playbook's vars changed; repeatable")
    rp.add_argument("--json", action="store_true")
    t = sub.add_parser("test", help="replay a playbook's recorded fixtures and check their verdicts")
    t.add_argument("playbook", type=Path)
    t.add_argument("--fixtures", type=Path, metavar="DIR",
                   help="fixture folder (default: tests/<playbook name>/ beside the playbook)")
    t.add_argument("--record", type=Path, metavar="BUNDLE", help="add a run's bundle as a new fixture")
    t.add_argument("--name", help="name of the recorded fixture")
    n = sub.add_parser("new", help="start a new playbook (with a test fixture that passes)")
    n.add_argument("name")
    n.add_argument("--dir", type=Path, default=Path("."), help="where to write it (default: here)")
    return p


def main(argv: list[str] | None = None) -> int:
    # the start is a burst of allocations (YAML, manifests, BTF records, symbols) with no
    # garbage cycles worth finding: the cyclic collector would spend a tenth of the run's
    # CPU walking them.  It runs 50 times less often; the heap stays bounded by the run's
    # own bounds (windows, map sizes, record caps).
    import gc
    gc.set_threshold(35_000, 20, 20)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "run")
    args = _parser().parse_args(argv)
    if args.cmd is None:
        _parser().print_help()
        return exitcodes.USAGE
    # before any thread exists: see system/fds.py (a BPF load that hangs on a stalled RCU)
    from .system.fds import reserve_fd_table
    reserve_fd_table()
    try:
        return int(globals()[f"cmd_{args.cmd}"](args))
    except BrokenPipeError:
        return exitcodes.OK
    except KeyboardInterrupt:          # before any probe was attached: nothing to report
        _err("interrupted before anything was attached")
        return exitcodes.INTERRUPTED


def _err(msg: str) -> None:
    try:
        sys.stderr.write(f"investigate: {msg}\n")
        sys.stderr.flush()
    except OSError:
        pass


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _load(path: str, allow_custom_probes: bool = False, to_run: bool = True) -> Any:
    from .playbook import PlaybookError, load_playbook
    try:
        return load_playbook(path, allow_custom_probes=allow_custom_probes, to_run=to_run)
    except PlaybookError as e:
        from .report.text import terminal_safe    # a playbook's "\e" may be quoted back
        for d in e.diagnostics:
            sys.stderr.write(f"{terminal_safe(str(d))}\n")
        n = sum(1 for d in e.diagnostics if d.severity == "error")
        _err(terminal_safe(f"{path}: {n} error(s); nothing was attached"))
        return None


def cmd_validate(args: argparse.Namespace) -> int:
    rc = exitcodes.OK
    for path in args.playbooks:
        lp = _load(path, args.allow_custom_probes)
        if lp is None:
            rc = exitcodes.USAGE
            continue
        from .report.text import terminal_safe
        for w in lp.warnings:
            sys.stderr.write(f"{terminal_safe(str(w))}\n")
        print(f"{path}: ok ({len(lp.spec.nodes)} nodes)")
    return rc


def _own_priority(nice: int | None) -> None:
    """Before any thread exists (threads inherit it): the niceness ``--nice`` asks for,
    unless the run was started with one of its own (``nice -n 10 investigate ...``)."""
    if nice is None:
        return
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) == 0 and nice != 0:
            os.setpriority(os.PRIO_PROCESS, 0, max(-20, min(19, nice)))
    except OSError:                 # not permitted: the run goes on at its niceness
        pass


def cmd_run(args: argparse.Namespace) -> int:
    _own_priority(args.nice)
    lp = _load(args.playbook, args.allow_custom_probes)
    if lp is None:
        return exitcodes.USAGE
    from .system.fds import reserve_for_playbook   # still one thread: see system/fds.py
    why = reserve_for_playbook(lp)
    if why:
        _err(why)
        return exitcodes.ENVIRONMENT
    from .playbook.load import VarError, apply_overrides
    try:
        apply_overrides(lp, args.sets)
    except VarError as e:
        _err(str(e))
        return exitcodes.USAGE
    from .system.doctor import can_load_bpf
    if not can_load_bpf():
        who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
        _err(f"needs root with CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) to load BPF programs; "
             f"running as {who} without them: run it with sudo. 'investigate doctor' shows what this "
             "machine allows; 'validate', 'graph', 'test' and 'replay' work without root.")
        return exitcodes.ENVIRONMENT
    from .bpf.errors import LibbpfMissing
    try:
        from .bpf import lib
        lib()
    except LibbpfMissing as e:
        _err(str(e))
        return exitcodes.ENVIRONMENT
    from .engine.run import RunOptions, run_playbook
    from .evidence import bundle
    from .probes.instance import Targets

    from .system.procfs import cgroup2_node
    try:
        cg_id, cg_level = cgroup2_node(args.cgroup) if args.cgroup else (0, 0)
        targets = Targets(pid=args.pid, comm=args.comm, cgroup_id=cg_id, cgroup_level=cg_level)
    except ValueError as e:
        _err(str(e))
        return exitcodes.USAGE
    if len(args.comm.encode()) > 15:
        _err(f"note: the kernel keeps 15 bytes of a command name; matching '{args.comm[:15]}'")
    # the bundle's writer starts now (a child process: the folder is made while the probes
    # attach); nothing is written before the verdict has been printed, save the event log
    writer = bundle.writer_for(args.out, lp.name)
    view: Any = None
    progress = None
    if not (args.quiet or args.json):
        from .report.live import LiveView, plain_printer
        live = sys.stderr.isatty() and os.environ.get("TERM") != "dumb" and not args.plain
        progress = view = LiveView(lp) if live else None
        if view is None:
            progress = plain_printer()
    opts = RunOptions(window_s=args.window, max_time_s=args.max_time, targets=targets,
                      bundle=writer, on_event=progress, max_overhead_percent=args.max_overhead,
                      restore_signals=False, btf=os.path.abspath(args.btf) if args.btf else None)
    try:
        result = run_playbook(lp, opts)
    finally:
        if view is not None:
            view.close()
    return _finish(lp, result, writer, args.json)


def _finish(lp: Any, result: Any, writer: Any, as_json: bool) -> int:
    """The verdict first: the report goes to the terminal (or stdout as JSON) before a byte
    of the bundle is written; then the bundle, whose failure is one line on stderr and
    does not change the exit code.  Signals stay ignored (run_playbook left them so)."""
    from .evidence import bundle
    from .report import model
    from .report.text import render_evidence, render_text

    rep = model.build(result)
    evidence = {n.id: n.evidence for n in result.nodes}
    try:
        if as_json:
            _out(json.dumps(rep, indent=2, default=str) + "\n")
        else:
            _out(render_text(rep) + render_evidence(evidence))
    except OSError:            # a closed stdout: the bundle still gets the report
        pass
    problems, written = bundle.finish(writer, lp, rep, evidence)
    for line in problems:
        _err(line)
    if written and not as_json:
        _out(f"\n{written}\n")
    if not result.complete:
        return exitcodes.INTERRUPTED
    if rep["verdicts"]:
        return exitcodes.PROBLEM
    # the start nodes are the investigation's first look: when none of them could observe,
    # what a node they routed to saw (a fail-open route) does not make the run a clean one
    starts = [n for n in result.nodes if n.id in lp.spec.start]
    if starts and all(n.status == "unobservable" for n in starts):
        seen = sum(n.status != "unobservable" for n in result.nodes)
        _err("no node could observe anything on this machine; see 'investigate doctor'" if not seen else
             f"no start node could observe anything on this machine ({seen} of {len(result.nodes)} nodes "
             "could); see 'investigate doctor'")
        return exitcodes.ENVIRONMENT
    return exitcodes.OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from .system.doctor import checks
    rows = checks()
    width = max(len(c.name) for c in rows)
    bad = False
    for c in rows:
        mark = {True: "ok ", False: "NO ", None: "   "}[c.ok]
        print(f"{mark} {c.name:<{width}}  {c.value}" + (f"  -- {c.hint}" if c.hint else ""))
        bad |= c.ok is False and c.name in ("root", "libbpf", "BTF", "capabilities")
    for path in args.playbooks if not bad else []:
        lp = _load(path, to_run=False)
        if lp is None:
            bad = True
            continue
        bad |= not _doctor_playbook(path, lp, args.allow_custom_probes)
    from .system import mounts
    for m in mounts.undo():
        print(f"    mounted {m['fs']} at {m['path']} to look, and " +
              ("unmounted it again" if m["unmounted"] else f"could not unmount it: {m.get('error')}"))
    return exitcodes.ENVIRONMENT if bad else exitcodes.OK


def _doctor_playbook(path: str, lp: Any, allow_custom: bool) -> bool:
    """Print what each node of a playbook could observe here; False when no start node could
    observe anything (a run would end with nothing seen)."""
    from .report.text import terminal_safe
    from .playbook.reach import playbook_reach
    reach = playbook_reach(lp, allow_custom)
    print(f"\n{terminal_safe(path)}: {sum(r.observable for r in reach)} of {len(reach)} nodes can observe here")
    width = max((len(p["probe"]) for r in reach for p in r.probes), default=0)
    for r in reach:
        lost = [p["probe"] for p in r.probes if p["hook"] is None and p["optional"]]
        state = ("ok " if not lost else "ok-") if r.observable else "NO "
        print(f"{state} {r.node}" + (f"  (without {', '.join(lost)})" if r.observable and lost else ""))
        for p in r.probes:
            how = f"via {p['hook']}" if p["hook"] else "no: " + p["why"]
            opt = " (optional)" if p["optional"] else ""
            print(f"      {p['probe']:<{width}}  {terminal_safe(how)}{opt}")
    start = [r for r in reach if r.node in lp.spec.start]
    return any(r.observable for r in start)


def cmd_graph(args: argparse.Namespace) -> int:
    lp = _load(args.playbook, to_run=False)
    if lp is None:
        return exitcodes.USAGE
    from .playbook.graph import build_graph, render
    sys.stdout.write(render(build_graph(lp.spec), args.format))
    return exitcodes.OK


def cmd_schema(args: argparse.Namespace) -> int:
    from .playbook.schema import json_schema
    print(json.dumps(json_schema(), indent=2))
    return exitcodes.OK


def _works_here(m: Any) -> str:
    from .bpf.errors import LibbpfMissing
    from .probes.instance import availability
    try:
        hook, refused = availability(m)
    except (LibbpfMissing, OSError) as e:
        return f"unknown ({e})"
    if hook:
        return f"yes, via {hook}" + (f" ({'; '.join(r['hook'] + ' refused' for r in refused)})" if refused else "")
    return "no: " + "; ".join(f"{r['hook']}: {r['reason']}" for r in refused)


def cmd_probes(args: argparse.Namespace) -> int:
    from .probes.manifest import registry
    reg = registry()
    if not args.name:
        for m in reg.values():
            print(f"{m.name:<18} {m.alias:<6} {m.summary}\n{'':<25} works here: {_works_here(m)}")
        return exitcodes.OK
    m = reg.get(args.name)
    if m is None:
        from .playbook.diagnostics import did_you_mean
        _err(f"no probe {args.name}{did_you_mean(args.name, reg)}")
        return exitcodes.USAGE
    print(f"{m.name} (evidence as '{m.alias}')\n\n{m.description.strip()}\n")
    print(f"kernel: {m.kernel}")
    print("hooks, in order of preference: " + " -> ".join(h.kind for h in m.hooks))
    print(f"works here: {_works_here(m)}")
    if m.params:
        print("\nparameters:")
        for p in m.params.values():
            print(f"  {p.name} ({p.type}, default {p.value_here}): {p.help}")
    print("\nevidence:")
    for f in m.evidence:
        unit = f" [{f.unit}]" if f.unit else ""
        print(f"  {m.alias}.{f.path} ({f.type}){unit}: {f.help}")
    return exitcodes.OK


def cmd_replay(args: argparse.Namespace) -> int:
    from .evidence import bundle
    from .evidence.replay import replay
    from .playbook import PlaybookError
    from .playbook.load import VarError
    from .report.text import render_text, terminal_safe
    try:
        b = bundle.read(args.bundle, bundle.RUN_FILES if args.playbook is None else bundle.EVIDENCE_FILES)
        rep = replay(b, args.playbook, str(args.bundle / "playbook.yaml"), args.sets)
    except bundle.BundleError as e:
        _err(terminal_safe(f"not a readable bundle: {e}"))
        return exitcodes.USAGE
    except PlaybookError as e:
        for d in e.diagnostics:
            sys.stderr.write(f"{terminal_safe(str(d))}\n")
        return exitcodes.USAGE
    except VarError as e:
        _err(terminal_safe(str(e)))
        return exitcodes.USAGE
    if args.json:
        print(json.dumps(rep, indent=2, default=str))
    else:
        sys.stdout.write(render_text(rep))
    return exitcodes.PROBLEM if rep["verdicts"] else exitcodes.OK


def cmd_test(args: argparse.Namespace) -> int:
    from .evidence import bundle, fixtures
    from .report.text import terminal_safe
    lp = _load(str(args.playbook), to_run=False)
    if lp is None:
        return exitcodes.USAGE
    folder = args.fixtures or fixtures.fixtures_dir(args.playbook, lp.name)
    if args.record:
        try:
            case = fixtures.record(args.record, folder, args.name or args.record.name)
        except bundle.BundleError as e:
            _err(terminal_safe(f"cannot record: {e}"))
            return exitcodes.USAGE
        except OSError as e:
            _err(terminal_safe(f"cannot record {args.record}: {e}"))
            return exitcodes.USAGE
        print(f"recorded {case} (review {case / 'expect.yaml'})")
        return exitcodes.OK
    found = fixtures.cases(folder)
    if not found:
        _err(f"no fixtures in {folder} (record one: investigate test {args.playbook} --record BUNDLE --name NAME)")
        return exitcodes.USAGE
    failed = 0
    for case in found:
        r = terminal_safe(fixtures.check_case(case, args.playbook).__dict__)
        print(f"{'PASS' if r['ok'] else 'FAIL'}  {r['name']}")
        for p in r["problems"]:
            print(f"      {p}")
        failed += not r["ok"]
    print(f"{len(found) - failed} of {len(found)} fixtures passed")
    return exitcodes.PROBLEM if failed else exitcodes.OK


def cmd_new(args: argparse.Namespace) -> int:
    from .playbook.scaffold import create
    try:
        made = create(args.name, args.dir)
    except (ValueError, OSError) as e:
        _err(str(e))
        return exitcodes.USAGE
    for p in made:
        print(f"created {p}")
    print(f"next: edit {made[0]}, then 'investigate validate {made[0]}' and 'investigate test {made[0]}'")
    return exitcodes.OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
