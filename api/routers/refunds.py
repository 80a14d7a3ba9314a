"""Refunds: POST /v1/orders/{order_id}/refunds, GET /v1/refunds/{refund_id}.

The request is checked and its amount reserved in one database transaction with the order
row locked (db/refunds.py), so racing requests cannot refund more than was captured; the
money then moves in the refund's own workflow. Storefront refunds are accepted within the
refund window after payment; the support key may refund outside it.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Response
from temporalio.service import RPCError

from api import idempotency
from api.deps import (
    CallerDep,
    OrderIdPath,
    RefundIdPath,
    RequestIdDep,
    SessionsDep,
    SettingsDep,
    TemporalDep,
    audit,
    record_support_action,
)
from api.idempotency import REPLAYED_HEADER, IdempotencyKeyDep
from api.problems import responses
from api.schemas import RefundIn, RefundOut
from db import orders, refunds
from kassa import errors
from kassa.statuses import Caller, OrderStatus
from orchestration.client import checkout_runs, start_refund

router = APIRouter(prefix="/v1", tags=["refunds"])


@router.post(
    "/orders/{order_id}/refunds",
    status_code=202,
    response_model=RefundOut,
    operation_id="create_refund",
    responses={
        202: {"description": "The refund, pending", "headers": REPLAYED_HEADER},
        **responses(
            errors.IdempotencyKeyRequired,
            errors.ReasonRequired,
            errors.RefundWindowClosed,
            errors.OrderNotFound,
            errors.NothingToRefund,
            errors.OrderNotRefundable,
            errors.RefundExceedsRemaining,
            errors.TooManyRefunds,
            errors.IdempotencyKeyReused,
            errors.RefundNotStarted,
            errors.TemporalUnavailable,  # asking whether the checkout runs (support, paid)
        ),
    },
    openapi_extra=idempotency.OPENAPI,
)
async def create_refund(
    order_id: OrderIdPath,
    body: RefundIn,
    caller: CallerDep,
    key: IdempotencyKeyDep,
    response: Response,
    settings: SettingsDep,
    sessions: SessionsDep,
    temporal: TemporalDep,
    request_id: RequestIdDep,
) -> RefundOut:
    if caller.role == Caller.SUPPORT and body.reason is None:  # for the audit log
        raise errors.ReasonRequired("support's refund needs a reason")
    request_hash = hashlib.sha256(f"{order_id}:{body.model_dump_json()}".encode()).hexdigest()
    window = None if caller.role == Caller.SUPPORT else timedelta(days=settings.refund_window_days)
    async with sessions() as session:
        order = await orders.get(session, order_id)
    # Support may refund an order its checkout left `paid`, once that checkout has ended:
    # only then is Temporal asked.
    checkout_ended = (
        caller.role == Caller.SUPPORT
        and order is not None
        and order.status == OrderStatus.PAID
        and not await checkout_runs(temporal, order_id)
    )
    async with sessions.begin() as session:
        bound = await idempotency.claim(
            session,
            response,
            caller.role,
            key,
            request_hash,
            order_id,
            refund_id=f"rf_{uuid.uuid4().hex}",
        )
        refund = await refunds.reserve(
            session,
            refund_id=bound.refund_id,
            order_id=order_id,
            amount=body.amount,
            reason=body.reason or f"requested by {caller.who}",
            requested_by=caller.role,
            window=window,
            checkout_ended=checkout_ended,
            max_refunds=settings.max_refunds_per_order,
        )

    audit.info("%s asks refund %s of order %s", caller.who, refund.refund_id, order_id)
    if caller.role == Caller.SUPPORT:  # once per refund: a replay adds no row
        await record_support_action(
            sessions,
            caller,
            "refund",
            f"refund:{refund.refund_id}",
            order_id,
            body.reason,
            {"status": order.status, "refunded_amount": int(order.refunded_amount)},
            {
                "status": order.status,
                "refund_id": refund.refund_id,
                "amount": int(refund.amount),  # may be a Decimal computed by SQL
                "outside_window": _outside_window(order, settings),
            },
            request_id,
        )
    try:
        await start_refund(
            temporal,
            settings.task_queue,
            refunds.as_input(refund, order.gateway, order.customer_id),
        )
    except RPCError as err:  # the reservation stands; the same request again starts it
        raise errors.RefundNotStarted() from err
    return RefundOut.of(refund)


def _outside_window(order, settings) -> bool:
    """Past the storefront's refund window: only support may refund it."""
    limit = timedelta(days=settings.refund_window_days)
    return order.paid_at is not None and datetime.now(UTC) - order.paid_at > limit


@router.get(
    "/refunds/{refund_id}",
    response_model=RefundOut,
    operation_id="get_refund",
    responses=responses(errors.RefundNotFound),
)
async def get_refund(
    refund_id: RefundIdPath, caller: CallerDep, sessions: SessionsDep
) -> RefundOut:
    async with sessions() as session:
        refund = await refunds.get(session, refund_id)
    if refund is None:
        raise errors.RefundNotFound(f"No refund {refund_id}")
    return RefundOut.of(refund)
