"""GET /v1/orders/{order_id} and POST /v1/orders/{order_id}/cancel."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import CallerDep, SessionDep, SettingsDep, TemporalDep
from api.problems import Problem
from api.schemas import CancelIn, OrderOut
from kassa.contracts import CancelRequest, OrderStatus, checkout_workflow_id
from kassa.models import Order
from workflows.checkout import CheckoutWorkflow

router = APIRouter(prefix="/v1/orders", tags=["orders"])


async def _order(session, order_id: str) -> Order:
    order = await session.get(Order, order_id)
    if order is None:
        raise Problem(404, "order-not-found", f"No order {order_id}", field="order_id")
    return order


def _out(order: Order) -> OrderOut:
    return OrderOut(
        order_id=order.order_id,
        status=OrderStatus(order.status),
        reason=order.status_reason,
        amount=order.amount,
        currency=order.currency,
        customer_id=order.customer_id,
        gateway=order.gateway,
        payment_url=order.payment_url,
        expires_at=order.expires_at,
        refunded_amount=order.refunded_amount,
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


@router.get("/{order_id}", response_model=OrderOut, operation_id="get_order")
async def get_order(order_id: str, caller: CallerDep, session: SessionDep) -> OrderOut:
    return _out(await _order(session, order_id))


@router.post(
    "/{order_id}/cancel",
    response_model=OrderOut,
    operation_id="cancel_order",
    responses={409: {"description": "the order is paid or already ended"}},
)
async def cancel_order(
    order_id: str,
    caller: CallerDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    body: CancelIn | None = None,
) -> OrderOut:
    """Cancel an unpaid checkout: the gateway payment is closed first; if the buyer paid in
    the meantime the order is paid, and the answer is 409."""
    await _order(session, order_id)
    handle = temporal.get_workflow_handle(checkout_workflow_id(order_id))
    request = CancelRequest(reason=(body or CancelIn()).reason, requested_by=str(caller))
    try:
        async with asyncio.timeout(settings.checkout_start_timeout_seconds):
            view = await handle.execute_update(CheckoutWorkflow.cancel, request, id="cancel")
    except TimeoutError as err:  # no worker picked it up in time; the same call is safe again
        raise Problem(
            503,
            "cancel-pending",
            "The cancellation is not finished yet; retry",
            headers={"Retry-After": "2"},
        ) from err
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        kind = cause.type if isinstance(cause, ApplicationError) else None
        if kind not in ("OrderAlreadyPaid", "OrderClosed"):
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
