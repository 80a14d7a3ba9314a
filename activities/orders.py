"""The order row: created once, then moved along the lifecycle by conditional updates."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from kassa.contracts import CheckoutInput, OrderStatus, StatusChange
from kassa.models import Order


class OrderActivities:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    @activity.defn
    async def create_order(self, checkout: CheckoutInput) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                insert(Order)
                .values(
                    order_id=checkout.order_id,
                    customer_id=checkout.customer_id,
                    status=OrderStatus.CREATED,
                    amount=checkout.amount,
                    currency=checkout.currency,
                    items=[asdict(item) for item in checkout.items],
                    gateway=checkout.gateway,
                    return_url=checkout.return_url,
                )
                .on_conflict_do_nothing(index_elements=[Order.order_id])
            )

    @activity.defn
    async def set_status(self, change: StatusChange) -> None:
        """Move the order to `change.status` if the lifecycle allows it; a repeat is a no-op."""
        values: dict = {"status": change.status, "updated_at": func.now()}
        if change.reason is not None:
            values["status_reason"] = change.reason
        if change.status == OrderStatus.PAID:
            values["paid_at"] = func.now()
        async with self._sessions.begin() as session:
            moved = await session.execute(
                update(Order)
                .where(Order.order_id == change.order_id)
                .where(Order.status.in_(change.status.comes_from))
                .values(**values)
            )
            if moved.rowcount == 1:
                return
            current = await session.scalar(
                select(Order.status).where(Order.order_id == change.order_id)
            )
        if current != change.status:
            raise ApplicationError(
                f"order {change.order_id} cannot move from {current} to {change.status}",
                type="IllegalStatusTransition",
                non_retryable=True,
            )
