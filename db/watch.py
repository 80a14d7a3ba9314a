"""What the gauges report (kassa/metrics.py): orders waiting on support, and checkouts that
should have ended by now. Read-only, sampled by the workers once a minute."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Order
from kassa.statuses import OrderStatus

# A checkout closes its payment and ends right after its window; this long after, it is stuck.
STUCK_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class Waiting:
    held: int
    held_since: datetime | None  # when the oldest held order was put on hold
    stuck: int


async def waiting(session: AsyncSession, now: datetime) -> Waiting:
    held, held_since = (
        await session.execute(
            select(func.count(), func.min(Order.updated_at)).where(
                Order.status == OrderStatus.ON_HOLD
            )
        )
    ).one()
    stuck = await session.scalar(
        select(func.count()).where(
            or_(
                and_(
                    Order.status == OrderStatus.AWAITING_PAYMENT,
                    Order.expires_at < now - STUCK_AFTER,
                ),
                # never got a payment page: creation and risk take seconds
                and_(Order.status == OrderStatus.CREATED, Order.created_at < now - STUCK_AFTER),
            )
        )
    )
    return Waiting(held, held_since, stuck)
