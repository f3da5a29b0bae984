"""Playbooks: schema, YAML loading with positions, validation, the networkx graph."""

from .diagnostics import Diagnostic, PlaybookError
from .load import LoadedPlaybook, load_playbook

__all__ = ["Diagnostic", "LoadedPlaybook", "PlaybookError", "load_playbook"]
