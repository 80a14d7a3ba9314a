"""Outgoing webhooks to the storefront, in the Standard Webhooks format.

Sent only after the state change they report has committed; the event id is stable, so the
storefront can drop a redelivery. Each delivery is kept in the storefront_webhooks outbox.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from standardwebhooks import Webhook
from temporalio import activity

from db import webhooks
from kassa import metrics
from kassa.contracts import StorefrontEvent
from kassa.settings import Settings


def webhook_payload(event: StorefrontEvent) -> dict:
    """The order or the refund as the storefront sees it: reason codes and their short texts,
    not support's details."""
    view = (event.refund or event.order).for_storefront()
    return {
        "type": event.type,
        "timestamp": event.occurred_at.isoformat(),
        "data": json.loads(json.dumps(asdict(view), default=str)),
    }


class NotifyActivities:
    def __init__(
        self, http: httpx.AsyncClient, sessions: async_sessionmaker, settings: Settings
    ) -> None:
        self._http = http
        self._sessions = sessions
        self._settings = settings

    @activity.defn
    async def notify_storefront(self, event: StorefrontEvent) -> bool:
        """Deliver `event`; False when no storefront webhook URL is configured."""
        payload = webhook_payload(event)
        async with self._sessions.begin() as session:
            await webhooks.record(
                session, event.event_id, payload["data"]["order_id"], event.type, payload
            )
        return await self._send(event.event_id, payload)

    @activity.defn
    async def redeliver_webhook(self, event_id: str) -> bool:
        """Send a webhook from the outbox again, as it was first sent (same id, same body,
        signed anew); False when no storefront webhook URL is configured."""
        async with self._sessions() as session:
            row = await webhooks.get(session, event_id)
        if row is None:  # the API checked it exists: a row is never deleted
            raise RuntimeError(f"no webhook {event_id} in the outbox")
        return await self._send(event_id, row.payload)

    async def _send(self, event_id: str, payload: dict) -> bool:
        url = self._settings.storefront_webhook_url
        if not url:
            metrics.WEBHOOK_DELIVERIES.labels("skipped").inc()
            return False
        body = json.dumps(payload)
        now = datetime.now(UTC)
        signature = Webhook(self._settings.storefront_webhook_secret.get_secret_value()).sign(
            event_id, now, body
        )
        headers = {
            "content-type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        try:
            response = await self._http.post(url, content=body, headers=headers, timeout=10)
            delivered = response.is_success
            failure = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            delivered, failure = False, repr(exc)
        async with self._sessions.begin() as session:
            await webhooks.count_attempt(session, event_id, delivered)
        metrics.WEBHOOK_DELIVERIES.labels("delivered" if delivered else "failed").inc()
        if not delivered:
            # Retried by Temporal with backoff for `storefront_webhook_retry_hours`.
            raise RuntimeError(f"storefront webhook {event_id} not accepted: {failure}")
        return True
