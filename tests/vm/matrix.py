"""The probe x kernel x hook table of docs/kernels.md, from real attaches.

Each probe of the library is loaded and attached for real (and detached at once) on this
machine's kernel and, in qemu, on Debian's 6.1 and 6.12 (tests/vm/run.py); the table
shows the hook each one used, or why it could not attach.

    python3 tests/vm/matrix.py                 # print the table
    python3 tests/vm/matrix.py --write docs/kernels.md
    python3 tests/vm/matrix.py --here          # this kernel only, as JSON (what the guests run)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))       # this checkout's probes, not an installed copy's
def _libc() -> str:
    for line in open(f"/proc/{os.getpid()}/maps"):
        if "/libc.so" in line.split()[-1]:
            return line.split()[-1]
    return "/lib/x86_64-linux-gnu/libc.so.6"


# targets every kernel (and this machine's libc) has
PARAMS = {"kernel.func": {"function": "do_sys_openat2"},
          "user.func": {"binary": _libc(), "function": "isatty"}}


def _attach(m: object, params: dict[str, object]) -> dict[str, object]:
    from investigator.probes.instance import try_attach
    return try_attach(m, params)


def here() -> dict[str, object]:
    """Attach every probe on the running kernel: the hook it chooses (or why none), and each
    of its hook alternatives alone (the others ruled out), to show the fallbacks work."""
    from investigator.probes.manifest import registry
    out: dict[str, object] = {"kernel": os.uname().release, "probes": {}}
    for name, m in sorted(registry().items()):
        row = _attach(m, PARAMS.get(name, {}))
        kinds = [h.kind for h in m.hooks]
        alone = {}
        if len(kinds) > 1:
            for k in kinds:
                os.environ["INVESTIGATOR_DISABLE_HOOKS"] = ",".join(x for x in kinds if x != k)
                alone[k] = _attach(m, PARAMS.get(name, {}))["hook"] == k
            os.environ.pop("INVESTIGATOR_DISABLE_HOOKS", None)
        row["alone"] = alone
        out["probes"][name] = row  # type: ignore[index]
    return out


def guests() -> list[dict[str, object]]:
    sys.path.insert(0, str(HERE))
    import run as vm
    rows = []
    for k in sorted(vm.setup(), key=lambda k: [int(x) for x in k.series.split(".")]):
        r = vm.boot(k, f"W=$PWD; cd {REPO} && {sys.executable} {HERE / 'matrix.py'} --here > $W/matrix.json",
                    accel=vm.TCG_SINGLE)
        f = r.workdir / "matrix.json"
        if r.rc != 0 or not f.exists():
            raise RuntimeError(f"{k.version}: the guest failed (rc {r.rc})\n{r.serial[-2000:]}")
        rows.append(json.loads(f.read_text()))
    return rows


def _short(why: str) -> str:
    """A note's reason, cut short; the kernel feature a refused load shows missing is kept."""
    why = why.replace("|", "/")
    cut = why.find(" -- this kernel lacks")
    if cut > 0:
        head, lacks = why[:cut], why[cut:]
        return (head if len(head) < 60 else head[:57] + "...") + lacks
    return why if len(why) < 90 else why[:87] + "..."


def render(results: list[dict[str, object]]) -> str:
    kernels = [str(r["kernel"]) for r in results]
    names = sorted({n for r in results for n in r["probes"]})  # type: ignore[union-attr]
    lines = ["| probe | " + " | ".join(kernels) + " |", "|---" * (len(kernels) + 1) + "|"]
    notes: list[str] = []
    for n in names:
        cells = []
        for r in results:
            row = r["probes"].get(n)  # type: ignore[union-attr]
            if row is None:
                cells.append("")
            elif row["hook"]:
                others = [k for k, ok in (row.get("alone") or {}).items() if k != row["hook"]]
                alt = "; alone: " + ", ".join(f"{k} {'ok' if row['alone'][k] else 'refused'}"
                                              for k in others) if others else ""
                cells.append(f"**{row['hook']}**{alt}")
            else:
                notes.append(f"- `{n}` on {r['kernel']}: {_short(str(row['why']))}")
                cells.append(f"no [{len(notes)}]")
        lines.append(f"| `{n}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + ("\n\n" + "\n".join(f"[{i + 1}] {x[2:]}" for i, x in enumerate(notes)) if notes else "") + "\n"


def main() -> int:
    if "--here" in sys.argv:
        print(json.dumps(here()))
        return 0
    results = guests() + [here()]
    table = render(results)
    if "--write" in sys.argv:
        sys.path.insert(0, str(REPO / "bench"))
        from docsplice import splice
        splice(Path(sys.argv[sys.argv.index("--write") + 1]), "matrix", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
