"""The run's lifecycle: schedule nodes, share attachments, observe windows, conclude."""

from .run import RunOptions, run_playbook

__all__ = ["RunOptions", "run_playbook"]
