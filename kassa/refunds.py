"""Reserving a refund against what was captured: the one place the refund cap is decided.

Cap = captured − (succeeded + pending refunds). The order row is locked (SELECT … FOR
UPDATE) while the cap is computed and the refund row inserted, so two racing requests are
serialized and cannot overshoot.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from kassa.contracts import Caller, OrderStatus, RefundInput, RefundStatus, refund_workflow_id
from kassa.models import Order, Refund

_REFUNDABLE = {
    Caller.STOREFRONT: {OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED},
    Caller.SUPPORT: {OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED},
    # Compensation refunds a paid order whose fulfilment failed.
    Caller.SYSTEM: {OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED},
}


class RefundRefused(Exception):
    """A refund request that must not go ahead; carries the HTTP status the API answers."""

    def __init__(self, status: int, slug: str, message: str, field: str) -> None:
        super().__init__(message)
        self.status, self.slug, self.message, self.field = status, slug, message, field


async def reserve(
    session: AsyncSession,
    *,
    refund_id: str,
    order_id: str,
    amount: int | None,
    reason: str,
    requested_by: Caller,
    window: timedelta | None = None,
    checkout_ended: bool = False,
) -> Refund:
    """Insert a pending refund within the cap, in the caller's transaction. `amount` None
    means everything not yet refunded; `window` limits how long after payment it may come.
    A refund id seen before returns that refund unchanged. `checkout_ended`: the order's
    checkout no longer runs, so support may refund an order left `paid` (its compensation
    failed) without racing the fulfilment."""
    order = await session.scalar(select(Order).where(Order.order_id == order_id).with_for_update())
    if order is None:
        raise RefundRefused(404, "order-not-found", f"No order {order_id}", "order_id")
    existing = await session.get(Refund, refund_id)
    if existing is not None:
        return existing
    if order.status == OrderStatus.REFUNDED:
        raise RefundRefused(409, "nothing-to-refund", "The order is refunded in full", "order_id")
    stuck = checkout_ended and requested_by == Caller.SUPPORT and order.status == OrderStatus.PAID
    if order.status not in _REFUNDABLE[requested_by] and not stuck:
        raise RefundRefused(
            409,
            "order-not-refundable",
            f"The order is {order.status}; only paid orders can be refunded",
            "order_id",
        )
    if window is not None and order.paid_at + window < datetime.now(UTC):
        raise RefundRefused(
            403,
            "refund-window-closed",
            f"Refunds are accepted for {window.days} days after payment; support can refund later",
            "order_id",
        )
    reserved = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.order_id == order_id,
            Refund.status.in_([RefundStatus.PENDING, RefundStatus.SUCCEEDED]),
        )
    )
    remaining = order.amount - reserved
    if remaining <= 0:
        raise RefundRefused(
            409,
            "nothing-to-refund",
            "Nothing is left to refund (refunds in progress included)",
            "order_id",
        )
    amount = remaining if amount is None else amount
    if amount > remaining:
        raise RefundRefused(
            422,
            "refund-exceeds-remaining",
            f"At most {remaining} can still be refunded",
            "amount",
        )
    refund = Refund(
        refund_id=refund_id,
        order_id=order_id,
        amount=amount,
        currency=order.currency,
        status=RefundStatus.PENDING,
        reason=reason,
        requested_by=requested_by,
    )
    session.add(refund)
    await session.flush()
    return refund


async def start(temporal: Client, task_queue: str, refund: Refund, gateway: str) -> None:
    """Start the workflow of a reserved refund, once: a repeated request, or reconciliation
    resuming a reservation whose start never happened, finds the one there is."""
    from workflows.refund import RefundWorkflow  # the workflow imports this module's callers

    request = RefundInput(
        refund.refund_id,
        refund.order_id,
        gateway,
        refund.amount,
        refund.currency,
        refund.reason,
        Caller(refund.requested_by),
    )
    try:
        await temporal.start_workflow(
            RefundWorkflow.run,
            request,
            id=refund_workflow_id(refund.refund_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"Refund {refund.refund_id} of order {refund.order_id}",
        )
    except WorkflowAlreadyStartedError:
        pass  # its workflow already finished
