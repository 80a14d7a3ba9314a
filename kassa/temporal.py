"""The one way Kassa connects to Temporal: same data converter everywhere (client, worker,
tests, replayer), or payloads written by one could not be read by another."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from kassa.settings import Settings

DATA_CONVERTER = pydantic_data_converter
DEFAULT_ADDRESS = "127.0.0.1:7233"


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address or DEFAULT_ADDRESS,
        namespace=settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
    )
