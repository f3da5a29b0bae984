"""``investigate doctor PLAYBOOK``: what each node of a playbook could observe on this
kernel, from its probes attached for real and detached at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..probes.instance import try_attach
from .load import LOCAL_PREFIX


@dataclass
class NodeReach:
    node: str
    probes: list[dict[str, Any]]     # probe, as, optional, hook (None: not here), why

    @property
    def observable(self) -> bool:
        """Whether a run could observe this node here: every probe it needs attaches."""
        return all(p["hook"] is not None for p in self.probes if not p["optional"])


def playbook_reach(lp: Any, allow_custom_probes: bool = False) -> list[NodeReach]:
    """What each node of a loaded playbook could observe on this kernel, before a run: its
    library probes attached for real (each distinct probe and parameters once) and
    detached at once.  bpftrace programs are custom code and are not run here; the
    playbook folder's own probes are attached only with the consent a run needs."""
    import shutil
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    out = []
    for nid, node in lp.spec.nodes.items():
        rows = []
        for use in node.probes:
            if use.bpftrace is not None:
                bt = shutil.which("bpftrace")
                rows.append({"probe": "bpftrace", "as": use.as_ or "bt", "optional": use.optional,
                             "hook": "bpftrace" if bt else None,
                             "why": "custom code: not run by doctor" if bt else "bpftrace is not installed"})
                continue
            alias = use.as_ or lp.alias_of(nid, use.use)
            m = lp.probes[nid][alias]
            if use.use.startswith(LOCAL_PREFIX) and not allow_custom_probes:
                rows.append({"probe": use.use, "as": alias, "optional": use.optional, "hook": None,
                             "why": "custom probe: attached only with --allow-custom-probes"})
                continue
            key = (m.name, repr(sorted((k, str(v)) for k, v in use.with_.items())))
            if key not in seen:
                seen[key] = try_attach(m, use.with_)
            r = seen[key]
            rows.append({"probe": m.name, "as": alias, "optional": use.optional, "hook": r["hook"],
                         "why": r.get("why", "")})
        out.append(NodeReach(nid, rows))
    return out
