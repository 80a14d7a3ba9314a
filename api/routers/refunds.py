"""Refunds: POST /v1/orders/{order_id}/refunds, GET /v1/refunds/{refund_id}.

The request is checked and its amount reserved in one database transaction with the order
row locked (kassa/refunds.py), so racing requests cannot refund more than was captured; the
money then moves in the refund's own workflow. Storefront refunds are accepted within the
refund window after payment; the support key may refund outside it.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

from fastapi import APIRouter, Response
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api import idempotency
from api.deps import (
    CallerDep,
    OrderIdPath,
    RefundIdPath,
    SessionDep,
    SessionsDep,
    SettingsDep,
    TemporalDep,
)
from api.idempotency import IDEMPOTENCY_KEY, require_idempotency_key
from api.problems import Problem
from api.schemas import RefundIn, RefundOut
from kassa import refunds
from kassa.contracts import Caller, OrderStatus, checkout_workflow_id
from kassa.models import Order, Refund

router = APIRouter(prefix="/v1", tags=["refunds"])


def refund_out(refund: Refund) -> RefundOut:
    return RefundOut.model_validate(refund, from_attributes=True)


@router.post(
    "/orders/{order_id}/refunds",
    status_code=202,
    response_model=RefundOut,
    operation_id="create_refund",
    responses={
        403: {"description": "outside the refund window (storefront key)"},
        409: {"description": "the order is not paid, or nothing is left to refund"},
        422: {"description": "amount over what can still be refunded"},
    },
)
async def create_refund(
    order_id: OrderIdPath,
    body: RefundIn,
    caller: CallerDep,
    response: Response,
    settings: SettingsDep,
    sessions: SessionsDep,
    temporal: TemporalDep,
    idempotency_key: IDEMPOTENCY_KEY = None,
) -> RefundOut:
    key = require_idempotency_key(idempotency_key)
    request_hash = hashlib.sha256(f"{order_id}:{body.model_dump_json()}".encode()).hexdigest()
    window = None if caller == Caller.SUPPORT else timedelta(days=settings.refund_window_days)
    async with sessions() as session:
        order = (
            await session.execute(
                select(Order.status, Order.gateway).where(Order.order_id == order_id)
            )
        ).first()
    # Support may refund an order its checkout left `paid`, once that checkout has ended:
    # only then is Temporal asked.
    checkout_ended = (
        caller == Caller.SUPPORT
        and order is not None
        and order.status == OrderStatus.PAID
        and not await _checkout_runs(temporal, order_id)
    )
    async with sessions.begin() as session:
        bound = await idempotency.claim(
            session,
            response,
            caller,
            key,
            request_hash,
            order_id,
            refund_id=f"rf_{uuid.uuid4().hex}",
        )
        refund_id = bound.refund_id
        try:
            refund = await refunds.reserve(
                session,
                refund_id=refund_id,
                order_id=order_id,
                amount=body.amount,
                reason=body.reason or f"requested by {caller}",
                requested_by=caller,
                window=window,
                checkout_ended=checkout_ended,
            )
        except refunds.RefundRefused as err:
            raise Problem(err.status, err.slug, err.message, field=err.field) from err

    try:
        await refunds.start(temporal, settings.task_queue, refund, order.gateway)
    except RPCError as err:  # the reservation stands; the same request again starts it
        raise Problem(
            503,
            "refund-not-started",
            "Retry with the same Idempotency-Key",
            headers={"Retry-After": "2"},
        ) from err
    return refund_out(refund)


@router.get("/refunds/{refund_id}", response_model=RefundOut, operation_id="get_refund")
async def get_refund(refund_id: RefundIdPath, caller: CallerDep, session: SessionDep) -> RefundOut:
    refund = await session.get(Refund, refund_id)
    if refund is None:
        raise Problem(404, "refund-not-found", f"No refund {refund_id}", field="refund_id")
    return refund_out(refund)


async def _checkout_runs(temporal, order_id: str) -> bool:
    """Whether the order's checkout workflow still runs (support may refund an order its
    checkout left `paid` only once it no longer does)."""
    try:
        described = await temporal.get_workflow_handle(checkout_workflow_id(order_id)).describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return False
    return described.status == WorkflowExecutionStatus.RUNNING
