"""The gauges' query (db/watch.py), against the real PostgreSQL: an order on hold and a
checkout unpaid long after its window are counted; one still inside its window is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from db import orders, watch
from db.models import Order
from kassa.statuses import OrderStatus
from tests.support import new_checkout


async def test_held_and_stuck_orders_are_counted(sessions):
    now = datetime.now(UTC) + timedelta(days=1)  # every order of the suite so far is older
    async with sessions() as session:
        before = await watch.waiting(session, now)
    held, stuck, waiting = new_checkout(), new_checkout(), new_checkout()
    async with sessions.begin() as session:
        for checkout in (held, stuck, waiting):
            await orders.create(session, checkout)
        moves = [
            (held, OrderStatus.ON_HOLD, None),
            (stuck, OrderStatus.AWAITING_PAYMENT, now - watch.STUCK_AFTER - timedelta(minutes=1)),
            (waiting, OrderStatus.AWAITING_PAYMENT, now + timedelta(minutes=5)),
        ]
        for checkout, status, expires_at in moves:
            await session.execute(
                update(Order)
                .where(Order.order_id == checkout.order_id)
                .values(status=status, expires_at=expires_at)
            )
    async with sessions() as session:
        after = await watch.waiting(session, now)
    assert after.held == before.held + 1
    assert after.stuck == before.stuck + 1
    assert after.held_since is not None and after.held_since < now
