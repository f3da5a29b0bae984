"""The run's structured event log (structlog, JSON lines).

structlog costs ~100 ms to import, so events emitted before the probes are attached are
buffered and handed to the sink when ``start_sink`` is called during the first window.  The
sink (the bundle writer's ``event_line``) takes one line at a time, never blocks and never
raises: a disk that fails costs lines of the log, not the run."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class _Lines:
    """What structlog's PrintLogger writes to (a message, then its newline): each whole
    line goes to the sink."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        self.sink = sink
        self.part = ""

    def write(self, text: str) -> None:
        self.part += text
        if "\n" in self.part:
            line, _, self.part = self.part.rpartition("\n")
            self.sink(line + "\n")

    def flush(self) -> None:
        pass


class EventLog:
    def __init__(self) -> None:
        self._buffer: list[dict[str, Any]] = []
        self._logger: Any = None
        self.listeners: list[Any] = []
        self.lost = 0
        self.t0 = time.monotonic()

    def emit(self, event: str, **fields: Any) -> None:
        fields["t"] = round(time.monotonic() - self.t0, 4)
        for cb in self.listeners:
            cb(event, fields)
        if self._logger is not None:
            try:
                self._logger.info(event, **fields)
            except Exception:           # a value that cannot be rendered costs its line only
                self.lost += 1
        else:
            self._buffer.append({"event": event, **fields})

    def start_sink(self, sink: Callable[[str], None]) -> None:
        import structlog

        self._logger = structlog.wrap_logger(
            structlog.PrintLogger(_Lines(sink)),  # type: ignore[arg-type]
            processors=[structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                        structlog.processors.JSONRenderer(default=str)])
        for rec in self._buffer:
            ev = rec.pop("event")
            self._logger.info(ev, **rec)
        self._buffer.clear()
