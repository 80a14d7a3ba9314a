"""The one way Kassa connects to Temporal: same data converter everywhere (client, worker,
tests, replayer), or payloads written by one could not be read by another.

`data_converter(settings)` is that converter: the pydantic one, plus the encrypting codec
when payload keys are configured (orchestration/codec.py). `DATA_CONVERTER` is the one
without keys (development, and the recorded histories)."""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from kassa.contracts import RECONCILE_WORKFLOW, ReconcileInput
from kassa.search import SEARCH_ATTRIBUTES
from kassa.settings import Settings
from orchestration.codec import EncryptionCodec, parse_keys

DATA_CONVERTER = pydantic_data_converter
DEFAULT_ADDRESS = "127.0.0.1:7233"


def payload_codec(settings: Settings) -> EncryptionCodec | None:
    """The encrypting codec for the configured payload keys; None without keys."""
    if not settings.payload_keys:
        return None
    keys = {key_id: key.get_secret_value() for key_id, key in settings.payload_keys.items()}
    return EncryptionCodec(parse_keys(keys))


def data_converter(settings: Settings) -> DataConverter:
    """The converter every client, worker and replayer of these settings must use."""
    codec = payload_codec(settings)
    if codec is None:
        return DATA_CONVERTER
    return dataclasses.replace(DATA_CONVERTER, payload_codec=codec)


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS as configured: client certificate (mTLS), a CA and server name to verify the
    server by; plain TLS with the system's roots for an API key alone; False: none."""
    cert, key, ca = settings.temporal_tls_cert, settings.temporal_tls_key, settings.temporal_tls_ca
    if cert is None and ca is None and settings.temporal_tls_server_name is None:
        return bool(settings.temporal_api_key)
    return TLSConfig(
        server_root_ca_cert=ca.read_bytes() if ca else None,
        domain=settings.temporal_tls_server_name,
        client_cert=cert.read_bytes() if cert else None,
        client_private_key=key.read_bytes() if key else None,
    )


def connect_options(settings: Settings) -> dict[str, Any]:
    """The arguments of `Client.connect` for these settings (unit-tested; `connect` uses
    them as they are)."""
    return {
        "target_host": settings.temporal_address or DEFAULT_ADDRESS,
        "namespace": settings.temporal_namespace,
        "data_converter": data_converter(settings),
        "tls": tls_config(settings),
        "api_key": settings.temporal_api_key,
    }


def interceptors() -> list:
    """Tracing: the client's calls (start, update, signal) carry the trace to the workflow,
    and a worker on this client continues it into the workflow and its activities."""
    return [TracingInterceptor()]


def worker_runtime(settings: Settings) -> Runtime:
    """The worker's Runtime (one per process): it serves the SDK's own metrics (temporal_*)
    for Prometheus on temporal_metrics_port (0: not served), and sends the SDK core's
    warnings through Python's logging, where a warning repeated every poll is shown once a
    minute (kassa/logs.py) instead of straight to the console."""
    address = f"{settings.metrics_host}:{settings.temporal_metrics_port}"
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=address)
            if settings.temporal_metrics_port
            else None,
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
            ),
        )
    )


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    return await Client.connect(
        **connect_options(settings), interceptors=interceptors(), runtime=runtime
    )


RECONCILE_SCHEDULE = "kassa-reconcile"


async def ensure_reconcile_schedule(client: Client, settings: Settings) -> None:
    """The schedule that runs reconciliation; one that exists already is left as it is
    (support may have paused it)."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            RECONCILE_WORKFLOW,
            ReconcileInput(lookback_hours=settings.reconcile_lookback_hours),
            id="reconcile",  # the schedule appends the time of each run
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[
                ScheduleIntervalSpec(every=timedelta(minutes=settings.reconcile_every_minutes))
            ]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(RECONCILE_SCHEDULE, schedule)
    except ScheduleAlreadyRunningError:
        pass


async def ensure_namespace(client: Client, retention: timedelta) -> bool:
    """Register the client's namespace, keeping closed workflows for `retention`, if the
    server lacks it; True when this call registered it. One that exists (a Temporal Cloud
    namespace is made in Cloud) is left as it is."""
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=client.namespace)
        )
        return False
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    try:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=client.namespace,
                workflow_execution_retention_period=Duration(
                    seconds=int(retention.total_seconds())
                ),
            )
        )
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:  # another set-up was quicker
            raise
        return False
    return True


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register Kassa's search attributes that the namespace lacks; returns the names added.

    A dev server started from an existing database file, an external cluster, and the
    time-skipping test server all need this: only a fresh dev server takes them as flags."""
    kinds = {
        SearchAttributeIndexedValueType.KEYWORD: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        SearchAttributeIndexedValueType.INT: IndexedValueType.INDEXED_VALUE_TYPE_INT,
        SearchAttributeIndexedValueType.DATETIME: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    }
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        known = set(existing.custom_attributes)
    except RPCError as err:  # the time-skipping test server cannot list; it accepts them all
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    missing = {
        key.name: kinds[key.indexed_value_type]
        for key in SEARCH_ATTRIBUTES
        if key.name not in known
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    return sorted(missing)
