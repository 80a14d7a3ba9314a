"""/v1/orders/{order_id}: read it; cancel it; retry its payment after a decline; have it
checked at the gateway. Support's
own actions on an order are in api/routers/support.py."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.deps import (
    CallerDep,
    OrderIdPath,
    RequestIdDep,
    SessionsDep,
    SettingsDep,
    TemporalDep,
    audit,
    find_order,
    record_support_action,
)
from api.problems import responses
from api.schemas import CancelIn, CheckoutOut, OrderOut
from db import orders, refunds
from kassa import errors
from kassa.contracts import CancelRequest
from kassa.settings import MAX_LISTED
from kassa.statuses import Caller, OrderStatus
from orchestration.client import ask_checkout, ask_checkout_to_check

router = APIRouter(prefix="/v1/orders", tags=["orders"])


@router.get(
    "/{order_id}",
    response_model=OrderOut,
    operation_id="get_order",
    responses=responses(errors.OrderNotFound),
)
async def get_order(order_id: OrderIdPath, caller: CallerDep, sessions: SessionsDep) -> OrderOut:
    async with sessions() as session:
        order = await orders.get(session, order_id)
        if order is None:
            raise errors.OrderNotFound(f"No order {order_id}")
        # One more than listed, to tell whether there are more.
        return OrderOut.of(order, await refunds.of_order(session, order_id, MAX_LISTED + 1))


@router.post(
    "/{order_id}/cancel",
    response_model=OrderOut,
    operation_id="cancel_order",
    responses=responses(
        errors.ReasonRequired,
        errors.OrderNotFound,
        errors.OrderNotCancellable,
        errors.CheckoutEnded,
        errors.CancelPending,
        errors.TemporalUnavailable,
    ),
)
async def cancel_order(
    order_id: OrderIdPath,
    caller: CallerDep,
    sessions: SessionsDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
    body: CancelIn | None = None,
) -> OrderOut:
    """Cancel an unpaid checkout: the gateway payment is closed first; if the buyer paid in
    the meantime the order is paid, and the answer is 409. With the support key a `reason`
    is required, and the cancel is written to the order's audit log."""
    by_support = caller.role == Caller.SUPPORT
    if by_support and (body is None or "reason" not in body.model_fields_set):
        raise errors.ReasonRequired("support's cancel needs a reason")
    before = await find_order(sessions, order_id)
    audit.info("%s cancels order %s", caller.who, order_id)
    request = CancelRequest(reason=(body or CancelIn()).reason, requested_by=caller.who)
    view = await ask_checkout(
        temporal,
        order_id,
        "cancel",
        request,
        update_id="cancel",  # one cancel per order: a repeat gets the first one's answer
        pending=errors.CancelPending,
        wait_seconds=settings.checkout_start_timeout_seconds,
    )
    order = await find_order(sessions, order_id)
    if view is None:  # no checkout runs: it ended before
        raise errors.OrderNotCancellable(f"the order is already {order.status}")
    if by_support:  # the checkout took the cancel: recorded however it ended
        await record_support_action(
            sessions,
            caller,
            "cancel",
            f"cancel:{order_id}",
            order_id,
            request.reason,
            {"status": before.status},
            {"status": view.status},
            request_id,
        )
    if view.status != OrderStatus.CANCELLED:
        raise errors.OrderNotCancellable(f"the order is {view.status}")
    return OrderOut.of(order)


@router.post(
    "/{order_id}/retry",
    response_model=CheckoutOut,
    operation_id="retry_payment",
    responses=responses(
        errors.OrderNotFound,
        errors.RetryNotAllowed,
        errors.CheckoutEnded,
        errors.RetryPending,
        errors.TemporalUnavailable,
    ),
)
async def retry_payment(
    order_id: OrderIdPath,
    caller: CallerDep,
    sessions: SessionsDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> CheckoutOut:
    """After a decline, open another payment for the order within its payment window (a
    new page for the buyer, `payment.attempt` one higher). The declined payment is closed at
    the gateway first: if the buyer paid it after all, the answer is the paid order. A
    request while another is opening the payment joins it (one payment, the same answer);
    once the new payment is open, asking again is a 409 until it too is declined."""
    order = await find_order(sessions, order_id)
    audit.info("%s retries the payment of order %s", caller.who, order_id)
    view = await ask_checkout(
        temporal,
        order_id,
        "retry_payment",
        # Not deduplicated by id: the checkout itself knows whether a retry is under way
        # (the database may run ahead of it after a crash).
        update_id=f"retry-{uuid.uuid4().hex}",
        pending=errors.RetryPending,
        wait_seconds=settings.checkout_start_timeout_seconds,
    )
    if view is None:
        raise errors.RetryNotAllowed(f"The order is already {order.status}")
    return CheckoutOut.of(view)


@router.post(
    "/{order_id}/check-payment",
    status_code=202,
    response_model=OrderOut,
    operation_id="check_payment",
    responses=responses(errors.OrderNotFound, errors.TemporalUnavailable),
)
async def check_payment(
    order_id: OrderIdPath, caller: CallerDep, sessions: SessionsDep, temporal: TemporalDep
) -> OrderOut:
    """The buyer is back from the payment page (the `return_url`) and says they paid, but
    the order still awaits payment: the checkout asks the gateway now, so a lost callback
    costs the buyer seconds, not the rest of the window. Accepted at once; the order as it
    stands is returned, `GET /v1/orders/{id}` shows it paid once the gateway says so. An
    order that no longer awaits payment is returned as it is."""
    order = await find_order(sessions, order_id)
    if order.status == OrderStatus.AWAITING_PAYMENT:
        audit.info("%s asks for the payment of order %s to be checked", caller.who, order_id)
        await ask_checkout_to_check(temporal, order_id)
    async with sessions() as session:
        return OrderOut.of(order, await refunds.of_order(session, order_id, MAX_LISTED + 1))
