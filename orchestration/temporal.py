"""The one way Kassa connects to Temporal: same data converter everywhere (client, worker,
tests, replayer), or payloads written by one could not be read by another."""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
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
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from kassa.contracts import RECONCILE_WORKFLOW
from kassa.search import SEARCH_ATTRIBUTES
from kassa.settings import Settings

DATA_CONVERTER = pydantic_data_converter
DEFAULT_ADDRESS = "127.0.0.1:7233"


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address or DEFAULT_ADDRESS,
        namespace=settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
    )


RECONCILE_SCHEDULE = "kassa-reconcile"


async def ensure_reconcile_schedule(client: Client, settings: Settings) -> None:
    """The schedule that runs reconciliation; one that exists already is left as it is
    (support may have paused it)."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            RECONCILE_WORKFLOW,
            settings.reconcile_lookback_hours,
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


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register Kassa's search attributes that the namespace lacks; returns the names added.

    A dev server started from an existing database file, an external cluster, and the
    time-skipping test server all need this: only a fresh dev server takes them as flags."""
    kinds = {
        SearchAttributeIndexedValueType.KEYWORD: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        SearchAttributeIndexedValueType.INT: IndexedValueType.INDEXED_VALUE_TYPE_INT,
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
