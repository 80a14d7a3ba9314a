"""The one way Kassa connects to Temporal: same data converter everywhere (client, worker,
tests, replayer), or payloads written by one could not be read by another."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from kassa.contracts import SEARCH_ATTRIBUTES
from kassa.settings import Settings

DATA_CONVERTER = pydantic_data_converter
DEFAULT_ADDRESS = "127.0.0.1:7233"


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address or DEFAULT_ADDRESS,
        namespace=settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
    )


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
