"""Named queries on orders. None of them commits: the activity or the request that calls
them owns the transaction."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import GatewayPayment, Order, PaymentEventRecord
from kassa.contracts import CheckoutInput, CheckoutView, PaymentEvent, PaymentSession
from kassa.ids import checkout_workflow_id
from kassa.reasons import ReasonCode
from kassa.statuses import OrderStatus

ENDED = [status for status in OrderStatus if status.is_final]
# The order opened at least one payment at its gateway (so the gateway may hold money for it).
had_gateway_payment = exists().where(GatewayPayment.order_id == Order.order_id)


async def get(session: AsyncSession, order_id: str) -> Order | None:
    return await session.get(Order, order_id)


async def create(session: AsyncSession, checkout: CheckoutInput) -> None:
    """The order row, once: a repeat with the same order id changes nothing."""
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


def same_contents(order: Order, checkout: CheckoutInput) -> bool:
    """Whether an existing order is the one `checkout` asks for (the order id is reused for
    the same purchase, not for another)."""
    return (order.customer_id, order.items, order.currency, order.gateway, order.return_url) == (
        checkout.customer_id,
        [asdict(item) for item in checkout.items],
        checkout.currency,
        checkout.gateway,
        checkout.return_url,
    )


async def move(
    session: AsyncSession,
    order_id: str,
    status: OrderStatus,
    code: ReasonCode | None,
    reason: str | None,
    payment_id: str | None = None,
) -> Order | None:
    """Move the order to `status` if the lifecycle allows it (the same status again is a
    no-op move, which may add the reason); None if it does not. `code` and `reason` (its
    detail) become the order's. `payment_id`, when paid: the gateway's id of the capture
    the order keeps (refunds and the stray judge use it)."""
    values: dict = {
        "status": status,
        "reason_code": code,
        "status_reason": reason,
        "updated_at": func.now(),
    }
    if payment_id is not None:
        values["gateway_payment_id"] = payment_id
    if status == OrderStatus.PAID:
        values["paid_at"] = func.coalesce(Order.paid_at, func.now())
    return await session.scalar(
        update(Order)
        .where(Order.order_id == order_id)
        .where(Order.status.in_({*status.comes_from, status}))
        .values(**values)
        .returning(Order)
    )


async def status_of(session: AsyncSession, order_id: str) -> OrderStatus | None:
    return await session.scalar(select(Order.status).where(Order.order_id == order_id))


async def record_payment_opened(
    session: AsyncSession, order_id: str, opened: PaymentSession
) -> None:
    """The order's current gateway payment and its page; a retry after a decline replaces
    the declined one, an older attempt never replaces a newer one."""
    await session.execute(
        update(Order)
        .where(Order.order_id == order_id)
        .where(Order.status.in_([OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT]))
        .where(Order.payment_attempts <= opened.attempt)
        .values(
            status=OrderStatus.AWAITING_PAYMENT,
            reason_code=None,
            status_reason=None,
            gateway_payment_id=opened.payment_id,
            payment_url=opened.payment_url,
            expires_at=opened.expires_at,
            payment_attempts=opened.attempt,
            updated_at=func.now(),
        )
    )


# The first key of the risk check's advisory locks (any 32-bit number no other lock of ours
# uses): the second is the customer's hash, so a customer's checks queue up one at a time.
_RISK_LOCKS = 0x6B617373  # "kass"


async def lock_customer_for_risk(session: AsyncSession, customer_id: str) -> None:
    """Wait until no other transaction checks this customer's risk, and hold that until
    this transaction ends: the velocity count and the approval it leads to are one step.
    (Two customers whose ids hash alike merely wait for each other.)"""
    await session.execute(
        select(func.pg_advisory_xact_lock(_RISK_LOCKS, func.hashtext(customer_id)))
    )


async def risk_approved(session: AsyncSession, order_id: str) -> bool:
    approved = select(Order.risk_approved_at).where(Order.order_id == order_id)
    return await session.scalar(approved) is not None


async def count_approved_for_customer(
    session: AsyncSession, customer_id: str, other_than: str, window: timedelta
) -> int:
    """The customer's orders that risk control approved in the last `window` (velocity);
    under `lock_customer_for_risk` this includes every approval committed before."""
    return await session.scalar(
        select(func.count())
        .select_from(Order)
        .where(Order.customer_id == customer_id)
        .where(Order.order_id != other_than)
        .where(Order.risk_approved_at > func.now() - window)
    )


async def mark_risk_approved(session: AsyncSession, order_id: str) -> None:
    await session.execute(
        update(Order)
        .where(Order.order_id == order_id, Order.risk_approved_at.is_(None))
        .values(risk_approved_at=func.now())
    )


async def ended_since(
    session: AsyncSession,
    since: datetime,
    after: str | None = None,
    limit: int | None = None,
    order_id: str | None = None,
) -> list[Order]:
    """Orders that ended since `since` and had a gateway payment (reconciliation), a page
    at a time: by order id (a key that stays put while orders change), those after `after`.
    With `order_id`: that order alone, whenever it ended."""
    query = (
        select(Order)
        .where(Order.status.in_(ENDED))
        .where(had_gateway_payment)
        .order_by(Order.order_id)
        .limit(limit)
    )
    query = query.where(
        Order.order_id == order_id if order_id is not None else Order.updated_at >= since
    )
    if after is not None:
        query = query.where(Order.order_id > after)
    return list(await session.scalars(query))


UNFINISHED = [OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT]


async def unfinished_before(
    session: AsyncSession,
    before: datetime,
    after: str | None,
    limit: int,
    order_id: str | None = None,
) -> list[Order]:
    """Orders still created or awaiting payment whose payment window (or, before a payment
    was opened, whose last change) is older than `before`: their checkout should have ended
    them. A page by order id, those after `after` (reconciliation asks Temporal about each).
    With `order_id`: that order alone, if it is unfinished, whatever its window."""
    query = select(Order).where(Order.status.in_(UNFINISHED)).order_by(Order.order_id).limit(limit)
    query = query.where(
        Order.order_id == order_id
        if order_id is not None  # support's re-run: now, its checkout not running is enough
        else func.coalesce(Order.expires_at, Order.updated_at) < before
    )
    if after is not None:
        query = query.where(Order.order_id > after)
    return list(await session.scalars(query))


async def unfinished(session: AsyncSession, limit: int) -> list[Order]:
    """Orders that have not ended, least recently changed first, at most `limit` (support's
    `kassa support stuck` asks Temporal whether each one's checkout still runs)."""
    return list(
        await session.scalars(
            select(Order)
            .where(Order.status.not_in(ENDED))
            .order_by(Order.updated_at, Order.order_id)
            .limit(limit)
        )
    )


async def record_callback(session: AsyncSession, event: PaymentEvent, payload: dict) -> None:
    """The inbox of verified gateway callbacks: one row per gateway event id."""
    await session.execute(
        insert(PaymentEventRecord)
        .values(
            gateway=event.gateway,
            event_id=event.event_id,
            order_id=event.order_id,
            outcome=event.outcome,
            payload=payload,
        )
        .on_conflict_do_nothing()
    )


def as_view(order: Order) -> CheckoutView:
    """The checkout as the order row tells it (for a checkout that no longer runs)."""
    payment = None
    if order.payment_url and order.gateway_payment_id and order.expires_at:
        payment = PaymentSession(
            order.gateway,
            order.gateway_payment_id,
            order.payment_url,
            order.expires_at,
            order.payment_attempts,
        )
    return CheckoutView(
        order_id=order.order_id,
        workflow_id=checkout_workflow_id(order.order_id),
        status=order.status,
        amount=order.amount,
        currency=order.currency,
        customer_id=order.customer_id,
        gateway=order.gateway,
        payment=payment,
        reason=order.status_reason,
        reason_code=order.reason_code,
    )
