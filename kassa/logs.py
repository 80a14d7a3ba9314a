"""structlog for our own lines, the standard library's for everyone else's. Every line of
ours carries the trace id, and inside an activity the workflow id and order id (bound by
the worker's interceptor), so one checkout's lines are found together."""

from __future__ import annotations

import logging
import re
import time

import structlog

from kassa.telemetry import trace_ids

# Per-request lines of the HTTP clients: a checkout makes several; WARNING and up still show.
QUIET = ("httpx", "httpcore", "uvicorn.access")
REPEAT_WINDOW_SECONDS = 60.0


class DropRepeats(logging.Filter):
    """A warning repeated word for word shows once a minute, not once per poll; the SDK's
    (its core's, forwarded: orchestration/temporal.py) also when only a count changes."""

    def __init__(self, window: float = REPEAT_WINDOW_SECONDS) -> None:
        super().__init__()
        self._window = window
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if record.name.startswith("temporalio"):  # "retried 6 times", "retried 7 times": one
            message = re.sub(r"\d+", "#", message)
        key = (record.name, message)
        now = time.monotonic()
        if now - self._last.get(key, -self._window) < self._window:
            return False
        if len(self._last) > 1000:  # bounded: messages with ids in them do not pile up
            self._last.clear()
        self._last[key] = now
        return True


def _add_trace(logger, method: str, event: dict) -> dict:
    for key, value in trace_ids().items():
        event.setdefault(key, value)
    return event


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, DropRepeats) for f in handler.filters):
            handler.addFilter(DropRepeats())
    for name in QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    configure_structlog(level)


def configure_structlog(level: int = logging.INFO) -> None:
    """Our own lines only (the API leaves the rest to uvicorn's logging)."""
    structlog.configure(
        processors=[  # structlog's defaults, with the trace ids
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            _add_trace,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
    )
