"""investigator: live, non-disruptive investigation of frozen Linux machines.

Playbooks (YAML graphs of hypothesis -> probe -> observe -> conclude) attach precompiled
CO-RE BPF probes, observe, and conclude with verdicts and their evidence chain.  See
README.md and docs/architecture.md."""

__version__ = "0.1.0"
