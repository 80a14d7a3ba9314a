"""The outbox of webhooks to the storefront: one row per event id, kept after delivery so a
webhook can be redelivered."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import StorefrontWebhook


async def record(
    session: AsyncSession, event_id: str, order_id: str, kind: str, payload: dict
) -> None:
    await session.execute(
        insert(StorefrontWebhook)
        .values(event_id=event_id, order_id=order_id, type=kind, payload=payload)
        .on_conflict_do_nothing(index_elements=[StorefrontWebhook.event_id])
    )


async def count_attempt(session: AsyncSession, event_id: str, delivered: bool) -> None:
    await session.execute(
        update(StorefrontWebhook)
        .where(StorefrontWebhook.event_id == event_id)
        .values(
            attempts=StorefrontWebhook.attempts + 1,
            delivered_at=func.now() if delivered else None,
        )
    )


async def get(session: AsyncSession, event_id: str) -> StorefrontWebhook | None:
    return await session.get(StorefrontWebhook, event_id)


async def latest_of_order(session: AsyncSession, order_id: str) -> StorefrontWebhook | None:
    """The order's last webhook (its outcome, usually): what a redelivery sends by default."""
    return await session.scalar(
        select(StorefrontWebhook)
        .where(StorefrontWebhook.order_id == order_id)
        .order_by(StorefrontWebhook.created_at.desc(), StorefrontWebhook.event_id.desc())
        .limit(1)
    )
