"""Metrics and tracing of a real checkout: the API, a worker and the sandbox gateway in this
process, on the Temporal dev server and PostgreSQL, wired as `make run` wires them (the
Temporal client with the tracing interceptor and the SDK's Prometheus runtime, the
instrumented HTTP clients). Spans are caught by an in-memory exporter."""

from __future__ import annotations

import uuid

import httpx
import prometheus_client
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from api.app import create_app as create_api
from gateways.sandbox import sandbox_reference
from kassa.settings import DEV_STOREFRONT_KEY, DEV_SUPPORT_KEY
from kassa.telemetry import configure_tracing
from orchestration import temporal
from tests.e2e.test_purchase import checkout_body, post_checkout, wait_for_status
from tests.support import buyer_acts, free_port, serving
from worker import running_worker

SUPPORT = {"Authorization": f"Bearer {DEV_SUPPORT_KEY}"}
STOREFRONT = {"Authorization": f"Bearer {DEV_STOREFRONT_KEY}"}
KASSA_SERIES = [
    'kassa_checkouts_total{gateway="sandbox",outcome="fulfilled"}',
    'kassa_time_to_pay_seconds_count{gateway="sandbox"}',
    'kassa_gateway_call_seconds_count{call="create_payment",gateway="sandbox"}',
    'kassa_gateway_call_seconds_count{call="list_payments",gateway="sandbox"}',
    "kassa_gateway_call_errors_total",
    'kassa_refunds_total{status="failed"}',
    'kassa_strays_found_total{gateway="sandbox",kind="late_payment"}',
    'kassa_payments_held_total{gateway="sandbox"}',
    'kassa_webhook_deliveries_total{result="delivered"}',
    "kassa_held_payments_waiting",
    "kassa_stuck_checkouts",
]


def value_of(exposition: str, series: str) -> float:
    """The value of one labelled series in Prometheus text (0 when absent)."""
    for line in exposition.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


async def test_a_checkout_is_one_trace_and_is_counted(dev_env, settings, sandbox, storefront):
    spans = InMemorySpanExporter()
    configure_tracing(settings, "kassa-test").add_span_processor(SimpleSpanProcessor(spans))
    api_port = free_port()
    ours = settings.model_copy(
        update={
            "task_queue": f"kassa-observe-{uuid.uuid4().hex[:8]}",
            "temporal_address": dev_env.client.service_client.config.target_host,
            "public_api_url": f"http://127.0.0.1:{api_port}",  # the callbacks come here
            "temporal_metrics_port": free_port(),
        }
    )
    client = await temporal.connect(ours, temporal.worker_runtime(ours))
    kassa_server, _ = prometheus_client.start_http_server(free_port(), "127.0.0.1")
    try:
        async with (
            running_worker(client, ours),
            serving(create_api(ours, temporal_client=client), api_port) as api_url,
            httpx.AsyncClient(base_url=api_url, headers=SUPPORT) as raw,
        ):
            refused = await raw.get("/metrics", headers=STOREFRONT)
            assert refused.status_code == 403
            before = (await raw.get("/metrics")).text
            async with httpx.AsyncClient(base_url=api_url, headers=STOREFRONT, timeout=30) as api:
                created = await post_checkout(api, checkout_body())
                assert created.status_code == 201, created.text
                order_id = created.json()["order_id"]
                await buyer_acts(created.json()["payment"]["payment_url"])
                await wait_for_status(api, order_id, "fulfilled")
            after = (await raw.get("/metrics")).text
            worker_port = kassa_server.server_port
            async with httpx.AsyncClient() as http:
                worker_metrics = (await http.get(f"http://127.0.0.1:{worker_port}/")).text
                sdk = await http.get(f"http://127.0.0.1:{ours.temporal_metrics_port}/metrics")
    finally:
        kassa_server.shutdown()

    # Metrics: Kassa's series on the API and the worker, the SDK's on its own port.
    for series in KASSA_SERIES:
        assert series in after, series
        assert series in worker_metrics, series
    counted = 'kassa_checkouts_total{gateway="sandbox",outcome="fulfilled"}'
    assert value_of(after, counted) == value_of(before, counted) + 1
    assert "temporal_workflow_task_execution_latency" in sdk.text
    assert "temporal_local_activity_execution_latency" in sdk.text  # its steps are local

    # One trace: the API's request, the workflow, its activities, the gateway's HTTP call.
    finished: tuple[ReadableSpan, ...] = spans.get_finished_spans()
    request = next(
        s for s in finished if s.kind == SpanKind.SERVER and s.name == "POST /v1/checkouts"
    )
    trace = [s for s in finished if s.context.trace_id == request.context.trace_id]
    names = {s.name for s in trace}
    assert "StartUpdateWithStartWorkflow:CheckoutWorkflow" in names, names
    assert "RunWorkflow:CheckoutWorkflow" in names, names
    assert "RunActivity:create_order" in names, names
    run_create = next(s for s in trace if s.name == "RunActivity:create_payment")
    gateway_call = next(
        s
        for s in trace
        if s.kind == SpanKind.CLIENT and s.parent and s.parent.span_id == run_create.context.span_id
    )
    # The gateway saw the trace context of that very call (W3C traceparent).
    reference = sandbox_reference(order_id, 1)
    traceparent = sandbox.traceparents[reference]
    _, trace_id, span_id, _ = traceparent.split("-")
    assert int(trace_id, 16) == request.context.trace_id
    assert int(span_id, 16) == gateway_call.context.span_id
