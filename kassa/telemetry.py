"""Tracing (OpenTelemetry): one trace from the API request through the workflow and its
activities to the gateway's HTTP call. The API's spans come from the FastAPI
instrumentation, Temporal's from the SDK's TracingInterceptor (orchestration/temporal.py),
the gateway calls' from the httpx instrumentation, which also sends W3C `traceparent`."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from kassa.settings import Settings


def configure_tracing(settings: Settings, service: str) -> TracerProvider:
    """The process's tracer provider. Always one, so every log line and gateway call
    carries a trace id; spans leave the process only with an OTLP endpoint configured."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # set before (tests, or a second app)
        return current
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    if settings.otlp_traces_url:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_traces_url))
        )
    trace.set_tracer_provider(provider)
    return provider


def trace_ids() -> dict[str, str]:
    """The current span's trace and span ids, as hex (empty outside a span)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
