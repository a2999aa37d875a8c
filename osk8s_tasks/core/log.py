"""structlog, configured once per run: a readable console for humans (stderr), and every event as
one JSON object a line in the run's log file (always, mode 0600) and in ``--log-json FILE``.

Secrets never reach a sink: values under secret-looking keys are replaced, and every value
registered with :func:`secret` is masked wherever it appears in any string.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from osk8s_tasks.core.files import open_private

MASK = "***"
_SECRET_KEYS = re.compile(r"pass(word|phrase)?|secret|token|private_key|credential", re.I)
_secrets: set[str] = set()
_lock = threading.Lock()


def secret(value: str | None) -> str | None:
    """Register a value that must never be logged; returns it unchanged."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)
    return value


def redact(value: Any) -> Any:
    if isinstance(value, str):
        for s in sorted(_secrets, key=len, reverse=True):
            value = value.replace(s, MASK)
        return value
    if isinstance(value, dict):
        return {k: (MASK if _SECRET_KEYS.search(str(k)) and v else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _redact_processor(_logger, _name, event: dict) -> dict:
    return redact(event)


class _JsonSinks:
    """Writes each event dict as JSON to every open file, then hands it on to the console."""

    def __init__(self):
        self.files: list = []

    def open(self, path: Path) -> None:
        self.files.append(open_private(path, "a"))

    def __call__(self, _logger, _name, event: dict) -> dict:
        line = json.dumps(event, default=str)
        with _lock:
            for f in self.files:
                f.write(line + "\n")
        return event

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files = []


class _Console:
    """Short lines: time, event, bound context, then the rest; debug events stay in the files."""

    def __init__(self, stream, verbose: bool):
        self.stream = stream
        self.verbose = verbose

    def __call__(self, _logger, name: str, event: dict) -> str:
        if name == "debug" and not self.verbose:
            raise structlog.DropEvent
        ts = time.strftime("%H:%M:%S")
        head = " ".join(str(event.pop(k)) for k in ("task", "node", "step") if event.get(k))
        what = event.pop("event", "")
        event.pop("timestamp", None)
        event.pop("level", None)
        rest = " ".join(f"{k}={v}" for k, v in event.items() if v is not None)
        return f"{ts} {what:<18} {head} {rest}".rstrip()


_sinks = _JsonSinks()


def setup(run_log: Path | None, json_file: str | None = None, verbose: bool = False) -> None:
    """(Re)configure logging for one top-level run."""
    _sinks.close()
    for path in (run_log, Path(json_file) if json_file else None):
        if path is not None:
            _sinks.open(path)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_processor,
            _sinks,
            _Console(sys.stderr, verbose),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def close() -> None:
    _sinks.close()


def get(**bound) -> Any:
    return structlog.get_logger().bind(**bound)
