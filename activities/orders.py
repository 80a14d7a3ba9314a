"""The order row: created once, then moved along the lifecycle by conditional updates."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity

from db import audit, orders
from kassa import metrics
from kassa.contracts import AuditRecord, CheckoutInput, StatusChange
from kassa.errors import CheckoutNotSealed, IllegalStatusTransition
from kassa.settings import Settings
from kassa.statuses import OrderStatus
from orchestration.seal import is_sealed


def _after(status: OrderStatus) -> set[OrderStatus]:
    """Every status an order can move on to from `status`, directly or not."""
    later, frontier = set(), {status}
    while frontier:
        frontier = {s for s in OrderStatus if s.comes_from & frontier} - later
        later |= frontier
    return later


class OrderActivities:
    def __init__(self, sessions: async_sessionmaker, settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    @activity.defn
    async def create_order(self, checkout: CheckoutInput) -> None:
        """Create the order of a checkout Kassa started: one without the API's seal (started
        by hand in Temporal) is refused for good (CheckoutNotSealed)."""
        if not is_sealed(self._settings, checkout):
            raise CheckoutNotSealed(
                f"checkout {checkout.order_id} does not carry Kassa's seal; no order is created"
            )
        async with self._sessions.begin() as session:
            await orders.create(session, checkout)

    @activity.defn
    async def record_audit(self, record: AuditRecord) -> None:
        """Write one audit row; the same record again writes none."""
        async with self._sessions.begin() as session:
            await audit.record(session, record)

    @activity.defn
    async def set_status(self, change: StatusChange) -> None:
        """Move the order to `change.status` if the lifecycle allows it; a repeat is a no-op,
        also once the order has moved on from there."""
        async with self._sessions.begin() as session:
            before = await orders.status_of(session, change.order_id)
            moved = await orders.move(
                session,
                change.order_id,
                change.status,
                change.code,
                change.reason,
                change.payment_id,
            )
            if moved:
                if before != change.status:  # a repeat (retry, replayed task) counts nothing
                    _count(moved)
                return
            current = await orders.status_of(session, change.order_id)
        if current in _after(change.status):
            # A workflow task lost after its local activities committed (the worker or the
            # Temporal server died) runs them again, and a refund may have moved the order on
            # meanwhile. Nothing comes after expired, cancelled, failed: still refused.
            return
        raise IllegalStatusTransition(
            f"order {change.order_id} cannot move from {current} to {change.status}"
        )


def _count(order) -> None:
    if order.status.is_final:
        metrics.CHECKOUTS.labels(str(order.status), order.gateway).inc()
    elif order.status == OrderStatus.ON_HOLD:
        metrics.PAYMENTS_HELD.labels(order.gateway).inc()
    elif order.status == OrderStatus.PAID and order.paid_at is not None:
        waited = (order.paid_at - order.created_at).total_seconds()
        metrics.TIME_TO_PAY.labels(order.gateway).observe(max(waited, 0.0))
