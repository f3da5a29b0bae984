"""Generate docs/probes.md from the probe manifests: ``python -m investigator.probes.docs``."""

from __future__ import annotations

import sys

from .manifest import ProbeManifest, registry


def _files(m: ProbeManifest) -> str:
    """Where all of a probe is: its manifest, and the object and collector it loads."""
    if m.userspace:
        return f"`probes/{m.alias}.yaml`, `investigator/probes/collectors/{m.collector}.py` (reads /proc)"
    stem = m.object_path.name.removesuffix(".bpf.o")
    kinds = "bpf.c,h,bpf.o" if (m.object_path.parent / f"{stem}.h").exists() else "bpf.c,bpf.o"
    own = f"`probes/{stem}.{{{kinds}}}`, `investigator/probes/collectors/{m.collector}.py`"
    return f"`probes/{m.alias}.yaml`, " + (own if stem == m.alias else f"those of `{stem}`: {own}")


def render() -> str:
    out = ["# Probe reference", "",
           "Generated from the manifests in `probes/*.yaml` by `python -m investigator.probes.docs`;",
           "a test fails when this page and the manifests disagree. In rules, a probe's evidence is",
           "named by its alias (or by the `as:` of the playbook's probe entry). A task (`tid`, `pid`,",
           "`comm`, ...) that is a thread of the investigation itself carries `investigator: true`:",
           "probes never make it a culprit or a victim.", ""]
    for m in registry().values():
        out += [f"## `{m.name}` (evidence: `{m.alias}`)", "", m.summary, "", m.description.strip(), "",
                "- Files: " + _files(m)
                + (f"; former evidence names, still read: {', '.join(f'`{a}`' for a in m.former_aliases)}"
                   if m.former_aliases else ""),
                f"- Kernel: {m.kernel}",
                "- Hooks, in order of preference: " + " → ".join(
                    f"`{h.kind}` ({', '.join(sorted(set(h.programs.values())))})" for h in m.hooks),
                f"- Mode: {m.mode}"
                + (" (aggregated in the kernel over the window)" if m.mode == "window"
                   else " (task iterator when the window opens and when it closes)"),
                "- Bounded maps: " + "; ".join(f"`{k}`: {v}" for k, v in m.maps.items()),
                f"- Overhead budget: detached above {m.budget.events_per_s:,.0f} events/s; "
                f"estimated {m.budget.cost_ns:.0f} ns of CPU per event (counts toward --max-overhead)", ""]
        if m.params:
            out += ["| parameter | type | default | meaning |", "|---|---|---|---|"]
            out += [f"| `{p.name}` | {p.type} | " + (f"`{p.default}`" if not p.syscall else f"this machine's `__NR_{p.syscall}`")
                    + f" | {p.help} |" for p in m.params.values()]
            out.append("")
        out += ["| evidence field | type | unit | meaning |", "|---|---|---|---|"]
        out += [f"| `{m.alias}.{f.path}` | {f.type} | {f.unit} | {f.help} |" for f in m.evidence]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
