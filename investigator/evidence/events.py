"""The run's structured event log (structlog, JSON lines).

structlog costs ~100 ms to import, so events emitted before the probes are attached are
buffered and written when ``start_file`` is called during the first window."""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO, Any


class EventLog:
    def __init__(self) -> None:
        self._buffer: list[dict[str, Any]] = []
        self._logger: Any = None
        self._file: IO[str] | None = None
        self.listeners: list[Any] = []
        self.t0 = time.monotonic()

    def emit(self, event: str, **fields: Any) -> None:
        fields["t"] = round(time.monotonic() - self.t0, 4)
        for cb in self.listeners:
            cb(event, fields)
        if self._logger is not None:
            self._logger.info(event, **fields)
        else:
            self._buffer.append({"event": event, **fields})

    def start_file(self, path: Path) -> None:
        import structlog

        import os
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)   # stacks and names: root only
        self._file = os.fdopen(fd, "a", buffering=1)
        self._logger = structlog.wrap_logger(
            structlog.PrintLogger(self._file),
            processors=[structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                        structlog.processors.JSONRenderer(default=str)])
        for rec in self._buffer:
            ev = rec.pop("event")
            self._logger.info(ev, **rec)
        self._buffer.clear()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
