"""The console stays quiet: no per-request httpx lines, a repeated warning once a minute;
and our lines carry the trace id of the span they were written in."""

from __future__ import annotations

import logging

import structlog
from opentelemetry.sdk.trace import TracerProvider

from kassa.logs import QUIET, DropRepeats, configure_structlog


def record(message: str, level: int = logging.WARNING, name: str = "temporalio.worker"):
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_a_repeated_warning_shows_once_a_window():
    drop = DropRepeats(window=60)
    assert drop.filter(record("Server unavailable"))
    assert not drop.filter(record("Server unavailable"))
    assert drop.filter(record("Another warning"))
    assert drop.filter(record("Server unavailable", level=logging.INFO))  # only warnings
    assert DropRepeats(window=0).filter(record("x"))


def test_the_sdks_retry_warnings_are_one_whatever_their_count():
    drop = DropRepeats(window=60)
    assert drop.filter(record("poll_workflow_task_queue retried 6 times"))
    assert not drop.filter(record("poll_workflow_task_queue retried 7 times"))
    ours = "kassa.watch"
    assert drop.filter(record("order 1 stuck", name=ours))
    assert drop.filter(record("order 2 stuck", name=ours))  # ours differ by their ids


def test_http_client_lines_are_quiet_by_default():
    from kassa.logs import configure_logging

    configure_logging()
    for name in QUIET:
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name


def test_our_lines_carry_the_trace_id():
    configure_structlog()
    tracer = TracerProvider().get_tracer("test")
    with (
        structlog.testing.capture_logs(
            processors=structlog.get_config()["processors"][:-1]  # all but the renderer
        ) as lines,
        tracer.start_as_current_span("checkout") as span,
    ):
        structlog.get_logger("test").info("paid", order_id="o-1")
    assert lines[0]["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert lines[0]["order_id"] == "o-1"
