"""The run's structured event log: one JSON object a line, the event's fields, then
``event`` and ``ts`` (ISO 8601, UTC).

Events emitted before the probes are attached are buffered and handed to the sink when
``start_sink`` is called during the first window.  The sink (the bundle writer's
``event_line``) takes one line at a time, never blocks and never raises: a disk that fails
costs lines of the log, not the run.  The lines are rendered with the standard library's
json: a logging library (structlog) costs 50-90 ms of CPU to import, a sixth of what a
whole one-second run may spend."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any


def _line(event: str, fields: dict[str, Any]) -> str:
    ts = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return json.dumps({**fields, "event": event, "ts": ts}, default=str) + "\n"


def _line_or_none(event: str, fields: dict[str, Any]) -> str | None:
    """The line, rendered when the event happened (its ``ts``), or None if it cannot be."""
    try:
        return _line(event, fields)
    except Exception:
        return None


class EventLog:
    def __init__(self) -> None:
        self._buffer: list[str | None] = []     # lines rendered before the sink exists
        self._sink: Callable[[str], None] | None = None
        self.listeners: list[Any] = []
        self.lost = 0
        self.t0 = time.monotonic()

    def emit(self, event: str, **fields: Any) -> None:
        fields["t"] = round(time.monotonic() - self.t0, 4)
        for cb in self.listeners:
            cb(event, fields)
        if self._sink is not None:
            try:
                line = _line(event, fields)
            except Exception:           # a value that cannot be rendered costs its line only
                self.lost += 1
                return
            self._sink(line)
        else:
            self._buffer.append(_line_or_none(event, fields))

    def start_sink(self, sink: Callable[[str], None]) -> None:
        self._sink = sink
        for line in self._buffer:
            if line is None:
                self.lost += 1
            else:
                sink(line)
        self._buffer.clear()
