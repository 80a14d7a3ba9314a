"""The velocity limit holds under parallel checkouts: many risk checks of one customer at
once, against the real PostgreSQL, approve exactly the limit (each check counts the
approvals before it, one customer's checks at a time)."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select

from activities.risk import RiskActivities
from db import orders
from db.models import Order
from tests.support import new_checkout

PARALLEL = 16


async def created(sessions, checkouts) -> None:
    """The order rows, as create_order writes them before the workflow checks risk."""
    async with sessions.begin() as session:
        for checkout in checkouts:
            await orders.create(session, checkout)


async def approved_rows(sessions, customer: str) -> int:
    async with sessions() as session:
        return await session.scalar(
            select(func.count())
            .select_from(Order)
            .where(Order.customer_id == customer, Order.risk_approved_at.is_not(None))
        )


async def test_parallel_checks_of_one_customer_approve_exactly_the_limit(sessions, settings):
    limit = settings.risk_max_orders_per_customer
    assert PARALLEL > limit
    customer = f"cus_{uuid.uuid4().hex[:8]}"
    checkouts = [new_checkout(customer_id=customer) for _ in range(PARALLEL)]
    await created(sessions, checkouts)  # every order exists before any check
    risk = RiskActivities(sessions, settings)

    decisions = await asyncio.gather(*(risk.check_risk(c) for c in checkouts))

    assert sum(d.approved for d in decisions) == limit
    assert all(f"the limit is {limit}" in d.reason for d in decisions if not d.approved)
    assert await approved_rows(sessions, customer) == limit

    # A retried check (its answer was lost) gives the same decision again.
    again = await asyncio.gather(*(risk.check_risk(c) for c in checkouts))
    assert [d.approved for d in again] == [d.approved for d in decisions]
    assert await approved_rows(sessions, customer) == limit


async def test_other_customers_are_not_held_back(sessions, settings):
    risk = RiskActivities(sessions, settings)
    checkouts = [new_checkout() for _ in range(PARALLEL)]  # each its own customer
    await created(sessions, checkouts)

    decisions = await asyncio.gather(*(risk.check_risk(c) for c in checkouts))

    assert all(d.approved for d in decisions)
