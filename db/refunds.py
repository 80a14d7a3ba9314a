"""Named queries on refunds and stray captures; none of them commits.

A refund is reserved against what was captured with the order row locked (SELECT … FOR
UPDATE) while the cap (kassa/refund_cap.py) and the number of refunds the order has had are
checked and the refund row inserted, so two racing requests are serialized and cannot
overshoot either.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import ledger as books
from db.models import Order, Refund, StrayCapture
from kassa import ledger, metrics
from kassa.contracts import RefundInput, RefundView
from kassa.errors import OrderNotFound, RefundNotReserved, TooManyRefunds
from kassa.reasons import ReasonCode
from kassa.refund_cap import refund_amount
from kassa.statuses import Caller, OrderStatus, RefundStatus


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
    max_refunds: int | None = None,
) -> Refund:
    """Insert a pending refund within the cap, in the caller's transaction. `amount` None
    means everything not yet refunded; `window` limits how long after payment it may come;
    `max_refunds` how many refunds the order may have in all (None: no limit, for Kassa's
    own compensation). A refund id seen before returns that refund unchanged.
    `checkout_ended`: the order's checkout no longer runs, so support may refund an order
    left `paid` (its compensation failed) without racing the fulfilment."""
    order = await session.scalar(select(Order).where(Order.order_id == order_id).with_for_update())
    if order is None:
        raise OrderNotFound(f"No order {order_id}")
    existing = await session.get(Refund, refund_id)
    if existing is not None:
        return existing
    reserved = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.order_id == order_id,
            Refund.status.in_([RefundStatus.PENDING, RefundStatus.SUCCEEDED]),
        )
    )
    amount = refund_amount(
        status=order.status,
        caller=requested_by,
        captured=order.amount,
        reserved=reserved,
        requested=amount,
        paid_at=order.paid_at,
        now=datetime.now(UTC),
        window=window,
        checkout_ended=checkout_ended,
    )
    if max_refunds is not None:  # counted under the order's lock: racing requests queue here
        asked = await session.scalar(
            select(func.count()).select_from(Refund).where(Refund.order_id == order_id)
        )
        if asked >= max_refunds:
            raise TooManyRefunds(
                f"Order {order_id} has had {asked} refunds; at most {max_refunds} per order",
                max_refunds=max_refunds,
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


async def get(session: AsyncSession, refund_id: str) -> Refund | None:
    return await session.get(Refund, refund_id)


async def of_order(session: AsyncSession, order_id: str, limit: int) -> list[Refund]:
    """The order's first `limit` refunds, oldest first."""
    return list(
        await session.scalars(
            select(Refund)
            .where(Refund.order_id == order_id)
            .order_by(Refund.created_at, Refund.refund_id)
            .limit(limit)
        )
    )


async def complete(session: AsyncSession, refund_id: str) -> tuple[Refund, Order] | None:
    """Mark a pending refund succeeded and add it to its order's refunded amount (the
    order becomes partially refunded or refunded). None if it was not pending."""
    refund = await session.scalar(
        update(Refund)
        .where(Refund.refund_id == refund_id)
        .where(Refund.status == RefundStatus.PENDING)
        .values(status=RefundStatus.SUCCEEDED, completed_at=func.now(), updated_at=func.now())
        .returning(Refund)
    )
    if refund is None:
        return None
    order = await session.scalar(
        update(Order)
        .where(Order.order_id == refund.order_id)
        .values(
            refunded_amount=Order.refunded_amount + refund.amount,
            status=case(
                (Order.refunded_amount + refund.amount >= Order.amount, OrderStatus.REFUNDED),
                else_=OrderStatus.PARTIALLY_REFUNDED,
            ),
            updated_at=func.now(),
        )
        .returning(Order)
    )
    return refund, order


async def fail(session: AsyncSession, refund_id: str, code: ReasonCode, reason: str) -> bool:
    """Release the reservation (or a stray capture's refund: support takes over); False if
    it was no longer pending (failed before: a retry)."""
    failed = await session.execute(
        update(Refund)
        .where(Refund.refund_id == refund_id)
        .where(Refund.status == RefundStatus.PENDING)
        .values(
            status=RefundStatus.FAILED,
            failure_code=code,
            failure_reason=reason,
            updated_at=func.now(),
        )
    )
    await session.execute(
        update(StrayCapture)
        .where(StrayCapture.refund_id == refund_id)
        .where(StrayCapture.status == RefundStatus.PENDING)
        .values(status=RefundStatus.FAILED)
    )
    return failed.rowcount > 0


async def pending_since(session: AsyncSession, before: datetime) -> list[tuple[Refund, str]]:
    """Pending refunds reserved before `before`, with their order's gateway."""
    rows = await session.execute(
        select(Refund, Order.gateway)
        .join(Order, Order.order_id == Refund.order_id)
        .where(Refund.status == RefundStatus.PENDING)
        .where(Refund.created_at < before)
    )
    return [(refund, gateway) for refund, gateway in rows]


async def record_stray(session: AsyncSession, request: RefundInput) -> StrayCapture:
    """Money no order keeps, once per gateway payment, and booked (gateway +, unallocated −):
    the reservation its refund needs. The row as it stands."""
    inserted = await session.scalar(
        insert(StrayCapture)
        .values(
            payment_id=request.payment_id,
            refund_id=request.refund_id,
            order_id=request.order_id,
            gateway=request.gateway,
            kind=request.stray,
            amount=request.amount,
            currency=request.currency,
            status=RefundStatus.PENDING,
        )
        .on_conflict_do_nothing(index_elements=[StrayCapture.payment_id])
        .returning(StrayCapture.payment_id)
    )
    if inserted is not None:  # counted here: the one place every stray is first recorded
        metrics.STRAYS_FOUND.labels(request.gateway, str(request.stray)).inc()
    stray = await session.get(StrayCapture, request.payment_id)
    await books.post(
        session,
        ledger.stray_capture(
            stray.order_id, stray.gateway, stray.payment_id, stray.amount, stray.currency
        ),
    )
    return stray


async def reservation(session: AsyncSession, request: RefundInput) -> RefundView:
    """The reservation a refund workflow's input must match, as it stands: a refund Kassa
    reserved (the API, a compensation) or a stray capture it recorded, of that amount, on
    that order and gateway. RefundNotReserved otherwise: a refund workflow started from
    outside Kassa (by hand, in the Temporal UI) moves no money."""
    if request.stray:
        stray = await session.get(StrayCapture, request.payment_id or "")
        matches = stray is not None and (
            stray.refund_id,
            stray.order_id,
            stray.gateway,
            stray.kind,
            stray.amount,
            stray.currency,
        ) == (
            request.refund_id,
            request.order_id,
            request.gateway,
            request.stray,
            request.amount,
            request.currency,
        )
        if matches:
            return as_stray_view(stray, request)
    else:
        refund = await session.get(Refund, request.refund_id)
        order = refund and await session.get(Order, refund.order_id)
        matches = refund is not None and (
            refund.order_id,
            order.gateway,
            refund.amount,
            refund.currency,
        ) == (request.order_id, request.gateway, request.amount, request.currency)
        if matches:
            return as_view(refund)
    raise RefundNotReserved(
        f"refund {request.refund_id} of order {request.order_id} was not reserved by Kassa "
        "as asked; nothing was sent to the gateway"
    )


async def complete_stray(session: AsyncSession, payment_id: str) -> StrayCapture | None:
    """Mark a stray capture's refund succeeded; None if it was not pending."""
    return await session.scalar(
        update(StrayCapture)
        .where(StrayCapture.payment_id == payment_id)
        .where(StrayCapture.status == RefundStatus.PENDING)
        .values(status=RefundStatus.SUCCEEDED, refunded_at=func.now())
        .returning(StrayCapture)
    )


async def stray_payments(
    session: AsyncSession, order_ids: list[str] | None = None
) -> dict[str, tuple[RefundStatus, datetime]]:
    """Every recorded stray capture (of these orders, if given: a page of reconciliation),
    by gateway payment id: its refund's status, and when it was recorded."""
    query = select(StrayCapture.payment_id, StrayCapture.status, StrayCapture.created_at)
    if order_ids is not None:
        query = query.where(StrayCapture.order_id.in_(order_ids))
    rows = await session.execute(query)
    return {payment_id: (status, at) for payment_id, status, at in rows}


def as_view(refund: Refund) -> RefundView:
    return RefundView(
        refund.refund_id,
        refund.order_id,
        refund.status,
        refund.amount,
        refund.currency,
        refund.reason,
        refund.failure_reason,
        refund.failure_code,
        refund.requested_by,
    )


def as_stray_view(stray: StrayCapture, request: RefundInput) -> RefundView:
    """A stray capture's refund as it stands, for the workflow that gives it back."""
    return RefundView(
        request.refund_id,
        request.order_id,
        stray.status,
        stray.amount,
        stray.currency,
        request.reason,
        requested_by=request.requested_by,
    )


def as_input(refund: Refund, gateway: str, customer_id: str | None = None) -> RefundInput:
    """The workflow input of a refund the API or reconciliation reserved."""
    return RefundInput(
        refund.refund_id,
        refund.order_id,
        gateway,
        refund.amount,
        refund.currency,
        refund.reason,
        refund.requested_by,
        customer_id=customer_id,
    )


async def numbers_of_payment(
    session: AsyncSession, order_id: str, payment_id: str | None, kept: bool
) -> list[str]:
    """The refund numbers Kassa asked a gateway for against one payment: the order's own
    refunds when it is the payment the order kept, and a stray capture's refund."""
    numbers = []
    if kept:
        numbers += await session.scalars(
            select(Refund.refund_id).where(Refund.order_id == order_id)
        )
    numbers += await session.scalars(
        select(StrayCapture.refund_id).where(StrayCapture.payment_id == payment_id)
    )
    return list(numbers)
