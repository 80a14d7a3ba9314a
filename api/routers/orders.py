"""/v1/orders/{order_id}: read it and its ledger; cancel, retry after a decline, review."""

from __future__ import annotations

import asyncio
import uuid

from fastapi import APIRouter
from sqlalchemy import select
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import CallerDep, OrderIdPath, SessionDep, SettingsDep, SupportDep, TemporalDep
from api.problems import Problem
from api.routers.refunds import refund_out
from api.schemas import (
    CancelIn,
    CheckoutOut,
    LedgerEntryOut,
    LedgerTransactionOut,
    OrderOut,
    ReviewIn,
)
from kassa.contracts import CancelRequest, OrderStatus, ReviewDecision, checkout_workflow_id
from kassa.models import LedgerEntry, LedgerTransaction, Order, Refund
from workflows.checkout import CheckoutWorkflow

router = APIRouter(prefix="/v1/orders", tags=["orders"])


async def _order(session, order_id: str) -> Order:
    order = await session.get(Order, order_id)
    if order is None:
        raise Problem(404, "order-not-found", f"No order {order_id}", field="order_id")
    return order


def _out(order: Order, refunds: list[Refund] = ()) -> OrderOut:
    return OrderOut(
        order_id=order.order_id,
        status=OrderStatus(order.status),
        reason=order.status_reason,
        amount=order.amount,
        currency=order.currency,
        customer_id=order.customer_id,
        gateway=order.gateway,
        payment_url=order.payment_url,
        payment_attempts=order.payment_attempts,
        expires_at=order.expires_at,
        refunded_amount=order.refunded_amount,
        refunds=[refund_out(r) for r in refunds],
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


@router.get("/{order_id}", response_model=OrderOut, operation_id="get_order")
async def get_order(order_id: OrderIdPath, caller: CallerDep, session: SessionDep) -> OrderOut:
    order = await _order(session, order_id)
    refunds = await session.scalars(
        select(Refund).where(Refund.order_id == order_id).order_by(Refund.created_at)
    )
    return _out(order, list(refunds))


@router.get(
    "/{order_id}/ledger",
    response_model=list[LedgerTransactionOut],
    operation_id="get_order_ledger",
)
async def get_order_ledger(
    order_id: OrderIdPath, caller: SupportDep, session: SessionDep
) -> list[LedgerTransactionOut]:
    """Every ledger transaction of the order, oldest first (support key only)."""
    await _order(session, order_id)
    rows = await session.execute(
        select(LedgerTransaction, LedgerEntry)
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.order_id == order_id)
        .order_by(LedgerTransaction.id, LedgerEntry.id)
    )
    transactions: dict[int, LedgerTransactionOut] = {}
    for txn, entry in rows:
        out = transactions.setdefault(
            txn.id,
            LedgerTransactionOut(key=txn.key, kind=txn.kind, created_at=txn.created_at, entries=[]),
        )
        out.entries.append(
            LedgerEntryOut(account=entry.account, amount=entry.amount, currency=entry.currency)
        )
    return list(transactions.values())


@router.post(
    "/{order_id}/cancel",
    response_model=OrderOut,
    operation_id="cancel_order",
    responses={409: {"description": "the order is paid or already ended"}},
)
async def cancel_order(
    order_id: OrderIdPath,
    caller: CallerDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    body: CancelIn | None = None,
) -> OrderOut:
    """Cancel an unpaid checkout: the gateway payment is closed first; if the buyer paid in
    the meantime the order is paid, and the answer is 409."""
    await _order(session, order_id)
    request = CancelRequest(reason=(body or CancelIn()).reason, requested_by=str(caller))
    try:
        view = await _ask_checkout(
            temporal, settings, order_id, CheckoutWorkflow.cancel, request, "cancel", "cancellation"
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        kind = cause.type if isinstance(cause, ApplicationError) else None
        if kind not in ("OrderAlreadyPaid", "OrderClosed", "OrderOnHold"):
            raise
        raise Problem(409, "order-not-cancellable", str(cause.message), field="order_id") from err
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        session.expire_all()
        order = await _order(session, order_id)
        raise Problem(
            409, "order-not-cancellable", f"the order is already {order.status}", field="order_id"
        ) from err
    if view.status != OrderStatus.CANCELLED:
        raise Problem(409, "order-not-cancellable", f"the order is {view.status}", field="order_id")
    session.expire_all()
    return _out(await _order(session, order_id))


@router.post(
    "/{order_id}/retry",
    response_model=CheckoutOut,
    operation_id="retry_payment",
    responses={409: {"description": "the payment is not declined, or no attempt is left"}},
)
async def retry_payment(
    order_id: OrderIdPath,
    caller: CallerDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> CheckoutOut:
    """After a decline, open another payment for the order within its payment window (a
    new page for the buyer, `payment.attempt` one higher). The declined payment is closed at
    the gateway first: if the buyer paid it after all, the answer is the paid order. A
    request while another is opening the payment joins it (one payment, the same answer);
    once the new payment is open, asking again is a 409 until it too is declined."""
    order = await _order(session, order_id)
    try:
        view = await _ask_checkout(
            temporal,
            settings,
            order_id,
            CheckoutWorkflow.retry_payment,
            None,
            "retry",
            "retry",
            # Not deduplicated by id: the checkout itself knows whether a retry is under way
            # (the database may run ahead of it after a crash).
            update_id=f"retry-{uuid.uuid4().hex}",
        )
    except WorkflowUpdateFailedError as err:
        detail = err.cause.message if isinstance(err.cause, ApplicationError) else None
        raise Problem(
            409, "retry-not-allowed", "Nothing to retry", detail, field="order_id"
        ) from err
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        raise Problem(
            409, "retry-not-allowed", f"The order is already {order.status}", field="order_id"
        ) from err
    return CheckoutOut.of(view)


@router.post(
    "/{order_id}/review",
    response_model=OrderOut,
    operation_id="review_held_payment",
    responses={409: {"description": "the order is not held for review"}},
)
async def review_held_payment(
    order_id: OrderIdPath,
    body: ReviewIn,
    caller: SupportDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> OrderOut:
    """Support key only: decide on a payment held because it did not match its order
    (another amount or currency). `refund` (the default): the money goes back by its own
    refund and the order ends `failed`. `accept`, for more than the order's amount in its
    currency: the excess goes back and the order is fulfilled. The first decision stands."""
    await _order(session, order_id)
    decision = ReviewDecision(body.note, str(caller), accept=body.decision == "accept")
    try:
        await _ask_checkout(
            temporal, settings, order_id, CheckoutWorkflow.review, decision, "review", "decision"
        )
    except (WorkflowUpdateFailedError, RPCError) as err:
        if isinstance(err, RPCError) and err.status != RPCStatusCode.NOT_FOUND:
            raise  # no answer about the order (Temporal unreachable is a 503)
        cause = getattr(err, "cause", None)
        if isinstance(cause, ApplicationError) and cause.type == "CannotAccept":
            raise Problem(
                409,
                "cannot-accept",
                "This payment can only be refunded",
                cause.message,
                field="decision",
            ) from err
        raise Problem(
            409, "order-not-on-hold", "The order is not held for review", field="order_id"
        ) from err
    session.expire_all()
    return _out(await _order(session, order_id))


async def _ask_checkout(
    temporal, settings, order_id: str, update, arg, name: str, what: str, update_id=None
):
    """Run an update on the order's checkout. A stable update id (default: `name`) makes a
    repeat safe; no answer in time (no worker) is a 503 with Retry-After, never a hang or a
    500."""
    handle = temporal.get_workflow_handle(checkout_workflow_id(order_id))
    try:
        async with asyncio.timeout(settings.checkout_start_timeout_seconds):
            args = [] if arg is None else [arg]
            return await handle.execute_update(update, args=args, id=update_id or name)
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
        raise Problem(
            503,
            f"{name}-pending",
            f"The {what} is not finished yet; retry",
            headers={"Retry-After": "2"},
        ) from err
