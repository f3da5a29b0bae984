"""The run's lifecycle: schedule nodes, share attachments, observe windows, conclude."""

from .run import RunOptions, RunResult, run_playbook

__all__ = ["RunOptions", "RunResult", "run_playbook"]
