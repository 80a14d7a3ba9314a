"""Signed callbacks to the merchant, retried with backoff until it answers 2xx, and
misbehaving as the faults say (dropped, duplicated, delayed, contradicted).

Callbacks not yet delivered wait in the state's outbox, saved with the state, so a restart
carries on where the last run stopped, like a real gateway that notifies for hours.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import datetime, timedelta

import httpx
import structlog

from gateways import sandbox_protocol
from gateways.emulators.sandbox.state import SandboxConfig, SandboxState, now

log = structlog.get_logger("sandbox")


class Outbox:
    def __init__(self, config: SandboxConfig, state: SandboxState) -> None:
        self.config, self.state = config, state
        self.http: httpx.AsyncClient | None = None
        self.senders: dict[str, asyncio.Task] = {}

    def start(self, http: httpx.AsyncClient) -> None:
        """Deliver what the outbox holds, from before a restart too."""
        self.http = http
        for key in self.state.outbox:
            self._send(key)

    async def stop(self) -> None:
        """What is not delivered stays in the outbox for the next start."""
        tasks = list(self.senders.values())
        for task in tasks:
            task.cancel()
        # Wait for them, so none writes the state file after we stopped.
        await asyncio.gather(*tasks, return_exceptions=True)

    def save_and_emit(self, event_type: str, data: dict, notify_url: str) -> None:
        """Save the state with a signed callback about it in the outbox (one write: never a
        change without its callback), then send it, misbehaving as the faults say."""
        faults = self.state.behaviour.faults
        event = {
            "id": "evt_" + secrets.token_hex(12),
            "type": event_type,
            "created": int(now().timestamp()),
            "data": json.loads(json.dumps(data)),  # as it is now, not as it will be
        }
        if faults.roll("dropped_callbacks", faults.drop_callbacks):
            self._record(event, 0, "dropped")
            self.state.save()
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
        self.state.outbox[event["id"]] = {
            "notify_url": notify_url,
            "events": events,  # delivered one after the other; the first is under way
            "attempts": 0,  # made for the first
            "next_attempt_at": (now() + timedelta(seconds=faults.delay_callbacks)).isoformat(),
        }
        self.state.save()
        self._send(event["id"])

    def _send(self, key: str) -> None:
        task = asyncio.create_task(self._deliver(key))
        self.senders[key] = task
        task.add_done_callback(lambda _: self.senders.pop(key, None))

    async def _deliver(self, key: str) -> None:
        """Deliver an outbox entry's events in order, each until the merchant answers 2xx or
        `callback_max_attempts` were made; then the entry leaves the outbox."""
        entry = self.state.outbox[key]
        while entry["events"]:
            due = datetime.fromisoformat(entry["next_attempt_at"])
            await asyncio.sleep(max((due - now()).total_seconds(), 0))
            event = entry["events"][0]
            status = await self._post(event, entry["notify_url"])
            entry["attempts"] += 1
            self._record(event, entry["attempts"], status)
            delivered = status is not None and 200 <= status < 300
            wait = 0.0
            if delivered or entry["attempts"] >= self.config.callback_max_attempts:
                if not delivered:
                    log.error("callback abandoned", event_id=event["id"], url=entry["notify_url"])
                entry["events"].pop(0)
                entry["attempts"] = 0
            else:
                wait = min(
                    self.config.callback_first_backoff * 2 ** (entry["attempts"] - 1),
                    self.config.callback_max_backoff,
                )
            entry["next_attempt_at"] = (now() + timedelta(seconds=wait)).isoformat()
            if not entry["events"]:
                del self.state.outbox[key]
            self.state.save()

    async def _post(self, event: dict, url: str) -> int | None:
        """One delivery attempt: the merchant's status code, or None if it did not answer."""
        body = json.dumps(event).encode()
        headers = {
            "Content-Type": "application/json",
            sandbox_protocol.SIGNATURE_HEADER: sandbox_protocol.sign(
                self.config.webhook_secret, body
            ),
        }
        try:
            response = await self.http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("callback failed", event_id=event["id"], error=repr(exc))
            return None
        return response.status_code

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
