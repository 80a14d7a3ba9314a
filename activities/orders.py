"""The order row: created once, then moved along the lifecycle by conditional updates."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from kassa import ledger
from kassa.contracts import CheckoutInput, OrderStatus, StatusChange
from kassa.models import Order


def _after(status: OrderStatus) -> set[OrderStatus]:
    """Every status an order can move on to from `status`, directly or not."""
    later, frontier = set(), {status}
    while frontier:
        frontier = {s for s in OrderStatus if s.comes_from & frontier} - later
        later |= frontier
    return later


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
        """Move the order to `change.status` if the lifecycle allows it; a repeat is a no-op,
        also once the order has moved on from there. Moving to paid also posts the capture
        to the ledger, in the same transaction."""
        values: dict = {"status": change.status, "updated_at": func.now()}
        if change.reason is not None:
            values["status_reason"] = change.reason
        if change.status == OrderStatus.PAID:
            values["paid_at"] = func.coalesce(Order.paid_at, func.now())
        async with self._sessions.begin() as session:
            moved = await session.scalar(
                update(Order)
                .where(Order.order_id == change.order_id)
                # The same status again is a no-op move (a retry), which may add the reason.
                .where(Order.status.in_({*change.status.comes_from, change.status}))
                .values(**values)
                .returning(Order)
            )
            if moved is not None:
                if change.status == OrderStatus.PAID:  # the capture enters the books with it
                    await ledger.post_capture(session, moved)
                return
            current = await session.scalar(
                select(Order.status).where(Order.order_id == change.order_id)
            )
        if current in _after(change.status):
            # A workflow task lost after its local activities committed (the worker or the
            # Temporal server died) runs them again, and a refund may have moved the order on
            # meanwhile. Nothing comes after expired, cancelled, failed: still refused.
            return
        raise ApplicationError(
            f"order {change.order_id} cannot move from {current} to {change.status}",
            type="IllegalStatusTransition",
            non_retryable=True,
        )
