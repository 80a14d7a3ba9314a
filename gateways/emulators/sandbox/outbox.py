"""Signed callbacks to the merchant, retried with backoff until it answers 2xx, and
misbehaving as the faults say (dropped, duplicated, delayed, contradicted)."""

from __future__ import annotations

import asyncio
import json
import secrets

import httpx
import structlog

from gateways import sandbox_protocol
from gateways.emulators.sandbox.state import SandboxConfig, SandboxState, now

log = structlog.get_logger("sandbox")


class Outbox:
    def __init__(self, config: SandboxConfig, state: SandboxState) -> None:
        self.config, self.state = config, state
        self.http: httpx.AsyncClient | None = None
        self.deliveries: set[asyncio.Task] = set()

    def start(self, http: httpx.AsyncClient) -> None:
        self.http = http

    def stop(self) -> None:
        for task in self.deliveries:
            task.cancel()

    def emit(self, event_type: str, data: dict, notify_url: str) -> None:
        """Send a signed callback, misbehaving as the faults say."""
        faults = self.state.behaviour.faults
        event = {
            "id": "evt_" + secrets.token_hex(12),
            "type": event_type,
            "created": int(now().timestamp()),
            "data": json.loads(json.dumps(data)),  # as it is now, not as it will be
        }
        if faults.roll("dropped_callbacks", faults.drop_callbacks):
            self._record(event, 0, "dropped")
            return
        events = [event] * (1 + faults.duplicate_callbacks)
        if faults.duplicate_callbacks:
            faults.count("duplicated_callbacks", faults.duplicate_callbacks)
        if faults.reorder_callbacks and event_type == "payment.succeeded":
            faults.count("reordered_callbacks")
            events.append(
                {
                    **event,
                    "id": "evt_" + secrets.token_hex(12),
                    "type": "payment.declined",
                    "data": {**event["data"], "status": "declined"},
                }
            )
        task = asyncio.create_task(
            self._deliver_in_order(events, notify_url, faults.delay_callbacks)
        )
        self.deliveries.add(task)
        task.add_done_callback(self.deliveries.discard)

    async def _deliver_in_order(self, events: list[dict], url: str, delay: float) -> None:
        await asyncio.sleep(delay)
        for event in events:
            await self._deliver(event, url)

    async def _deliver(self, event: dict, url: str) -> None:
        config = self.config
        body = json.dumps(event).encode()
        backoff = config.callback_first_backoff
        for attempt in range(1, config.callback_max_attempts + 1):
            headers = {
                "Content-Type": "application/json",
                sandbox_protocol.SIGNATURE_HEADER: sandbox_protocol.sign(
                    config.webhook_secret, body
                ),
            }
            try:
                response = await self.http.post(url, content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError as exc:
                status = None
                log.warning("callback failed", event_id=event["id"], error=repr(exc))
            self._record(event, attempt, status)
            if status is not None and 200 <= status < 300:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, config.callback_max_backoff)
        log.error("callback abandoned", event_id=event["id"], url=url)

    def _record(self, event: dict, attempt: int, status: int | str | None) -> None:
        self.state.callbacks.append(
            {
                "event_id": event["id"],
                "type": event["type"],
                "attempt": attempt,
                "status_code": status,
                "order_id": event["data"].get("merchant_order_id"),
            }
        )
